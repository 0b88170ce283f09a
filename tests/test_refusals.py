"""Every refusal's whole answer: its code, its sentence and its details.

Clients show the sentence and act on the code and details, so each is part of
the contract; and a refused command stores nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from scenario import (
    HELD,
    PAID,
    closed,
    deposited,
    moved,
    opened,
    overdraft_limit_set,
    pending,
    voided,
)

from bank import BankError
from bank.commands import (
    CloseAccount,
    Deposit,
    OpenAccount,
    PostTransfer,
    ReverseTransfer,
    SetOverdraftLimit,
    Transfer,
    VoidTransfer,
    Withdraw,
)
from bank.domain import ConcurrencyError

if TYPE_CHECKING:
    from scenario import Fact, Scenario

    from bank.commands import Command

FUNDED = [opened("A"), opened("B"), deposited("A", 100)]
HOLDING = [*FUNDED, *pending(HELD, "A", "B", 40)]
PAID_40 = [*FUNDED, *moved(PAID, "A", "B", 40)]


def invalid(field: str, message: str) -> tuple[str, str, dict[str, Any]]:
    """A validation refusal: the field it names and its sentence."""
    return "validation_error", message, {"field": field}


REFUSALS: dict[str, tuple[list[Fact], Command, tuple[str, str, dict[str, Any]]]] = {
    "an id that exists": (
        [opened("A")],
        OpenAccount("o@example.com", "A"),
        ("account_already_exists", "Account A already exists.", {"account_id": "A"}),
    ),
    "an unknown account": (
        [],
        Deposit("A", 1),
        ("account_not_found", "There is no account A.", {"account_id": "A"}),
    ),
    "a withdrawal past the overdraft limit": (
        [opened("A"), deposited("A", 100), overdraft_limit_set("A", 50)],
        Withdraw("A", 151),
        (
            "insufficient_funds",
            "Account A has 150 cents available; 151 were asked for.",
            {
                "account_id": "A",
                "balance_in_cents": 100,
                "overdraft_limit_in_cents": 50,
                "available_in_cents": 150,
                "amount_in_cents": 151,
            },
        ),
    ),
    "a transfer past what is available after a hold": (
        HOLDING,
        Transfer("A", "B", 61),
        (
            "insufficient_funds",
            "Account A has 60 cents available; 61 were asked for.",
            {
                "account_id": "A",
                "balance_in_cents": 100,
                "overdraft_limit_in_cents": 0,
                "available_in_cents": 60,
                "amount_in_cents": 61,
            },
        ),
    ),
    "a deposit to a closed account": (
        [opened("A"), closed("A")],
        Deposit("A", 5),
        ("account_closed", "Account A is closed.", {"account_id": "A"}),
    ),
    "closing an account that holds money": (
        [opened("A"), deposited("A", 7)],
        CloseAccount("A"),
        (
            "account_not_empty",
            "Account A still holds 7 cents; only an empty account can be closed.",
            {"account_id": "A", "balance_in_cents": 7},
        ),
    ),
    "closing an account with a hold": (
        [opened("A"), opened("B"), *pending(HELD, "A", "B", 40, expires_at=None)],
        CloseAccount("B"),
        (
            "account_has_pending_transfers",
            "Account B has 1 pending transfer(s); post or void them first.",
            {"account_id": "B", "transfer_ids": [HELD]},
        ),
    ),
    "a transfer between currencies": (
        [opened("A"), opened("E", currency="EUR"), deposited("A", 100)],
        Transfer("A", "E", 10),
        (
            "currency_mismatch",
            "Account A holds USD and account E holds EUR; a transfer needs one "
            "currency.",
            {
                "from_account_id": "A",
                "from_currency": "USD",
                "to_account_id": "E",
                "to_currency": "EUR",
            },
        ),
    ),
    "a transfer to itself": (
        FUNDED,
        Transfer("A", "A", 10),
        invalid("to_account_id", "A transfer needs two different accounts."),
    ),
    "an amount that is not an integer": (
        [opened("A")],
        Deposit("A", "12"),  # type: ignore[arg-type]
        invalid(
            "amount_in_cents", "An amount is a whole number of cents (an integer)."
        ),
    ),
    "an amount past 10**15": (
        [opened("A")],
        Deposit("A", 10**15 + 1),
        invalid(
            "amount_in_cents", "An amount is between 1 and 1000000000000000 cents."
        ),
    ),
    "an overdraft limit past 10**15": (
        [opened("A")],
        SetOverdraftLimit("A", 10**15 + 1),
        invalid(
            "overdraft_limit_in_cents",
            "An overdraft limit is a whole number of cents from 0 to 1000000000000000.",
        ),
    ),
    "an email without an @": (
        [],
        OpenAccount("nope"),
        invalid(
            "account_owner_email",
            "The owner email must look like name@example.com (one '@', no spaces or "
            "control characters, at most 254 characters).",
        ),
    ),
    "a reference of 141 characters": (
        [opened("A")],
        Deposit("A", 1, reference="x" * 141),
        invalid(
            "reference", "A reference is printable text of at most 140 characters."
        ),
    ),
    "a currency that is not ISO 4217": (
        [],
        OpenAccount("o@example.com", "A", currency="XYZ"),
        invalid(
            "currency",
            "A currency is an ISO 4217 alphabetic code, such as USD, EUR or JPY.",
        ),
    ),
    "metadata of 17 keys": (
        [opened("A")],
        Deposit("A", 1, metadata={f"k{i}": "v" for i in range(17)}),
        invalid("metadata", "Metadata is an object of at most 16 keys."),
    ),
    "a metadata key with a space": (
        [opened("A")],
        Deposit("A", 1, metadata={"bad key": "v"}),
        invalid(
            "metadata", "A metadata key is 1 to 40 letters, digits or any of '_.-'."
        ),
    ),
    "a metadata value of 501 characters": (
        [opened("A")],
        Deposit("A", 1, metadata={"k": "v" * 501}),
        invalid("metadata", "A metadata value is text of at most 500 characters."),
    ),
    "a hold's timeout of 0 seconds": (
        FUNDED,
        Transfer("A", "B", 1, pending=True, timeout_seconds=0),
        invalid(
            "timeout_seconds",
            "A timeout is a whole number of seconds from 1 to 2,592,000.",
        ),
    ),
    "a pending flag that is not a boolean": (
        FUNDED,
        Transfer("A", "B", 1, pending="yes"),  # type: ignore[arg-type]
        invalid("pending", "'pending' is true or false."),
    ),
    "an account id with a space": (
        [],
        Deposit("bad id!", 1),
        (
            "validation_error",
            "An account id is 1 to 64 letters, digits or any of '-_.:'.",
            {"field": "account_id", "value": "'bad id!'"},
        ),
    ),
    "posting an unknown transfer": (
        [],
        PostTransfer(HELD),
        (
            "transfer_not_found",
            f"There is no transfer {HELD}.",
            {"transfer_id": HELD},
        ),
    ),
    "posting a voided transfer": (
        [*HOLDING, *voided(HELD, "A", "B", 40)],
        PostTransfer(HELD),
        (
            "transfer_not_pending",
            f"Transfer {HELD} is voided, not pending.",
            {"transfer_id": HELD, "status": "voided"},
        ),
    ),
    "voiding a posted transfer": (
        PAID_40,
        VoidTransfer(PAID),
        (
            "transfer_not_pending",
            f"Transfer {PAID} is posted, not pending.",
            {"transfer_id": PAID, "status": "posted"},
        ),
    ),
    "posting more than is held": (
        HOLDING,
        PostTransfer(HELD, 41),
        (
            "amount_exceeds_transfer",
            f"Transfer {HELD} has 40 cents left to move; 41 were asked for.",
            {"transfer_id": HELD, "amount_in_cents": 41, "remaining_in_cents": 40},
        ),
    ),
    "reversing a pending transfer": (
        HOLDING,
        ReverseTransfer(HELD),
        (
            "transfer_not_posted",
            f"Transfer {HELD} is pending; only a posted transfer can be reversed.",
            {"transfer_id": HELD, "status": "pending"},
        ),
    ),
    "reversing more than was moved": (
        PAID_40,
        ReverseTransfer(PAID, 41),
        (
            "amount_exceeds_transfer",
            f"Transfer {PAID} has 40 cents left to move; 41 were asked for.",
            {"transfer_id": PAID, "amount_in_cents": 41, "remaining_in_cents": 40},
        ),
    ),
}


@pytest.mark.parametrize(
    ("given", "command", "refusal"), REFUSALS.values(), ids=REFUSALS.keys()
)
def test_a_refusal_answers_its_code_sentence_and_details_and_stores_nothing(
    bank: Scenario,
    given: list[Fact],
    command: Command,
    refusal: tuple[str, str, dict[str, Any]],
) -> None:
    bank.given(*given)

    with pytest.raises(BankError) as refused:
        bank.when(command)

    error = refused.value
    assert (error.code, error.message, error.details) == refusal
    assert str(error) == error.message
    assert bank.new_events() == []


def test_a_concurrency_conflict_says_how_many_attempts_were_made() -> None:
    error = ConcurrencyError(3)

    assert (error.code, error.message, error.details) == (
        "concurrency_conflict",
        "The accounts kept changing under this command; gave up after 3 attempts. "
        "Retry later.",
        {"attempts": 3},
    )
