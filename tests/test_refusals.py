"""Every refusal's whole answer: its code, its sentence and its details.

Clients show the sentence and act on the code and details, so each is part of
the contract; and a refused command stores nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from scenario import (
    BACK,
    HELD,
    PAID,
    closed,
    deposited,
    moved,
    opened,
    overdraft_limit_set,
    pending,
    reversal,
    voided,
)

from bank import Account, BankError
from bank.commands import (
    Accounts,
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
from bank.transfers import Transfer as TransferAggregate

if TYPE_CHECKING:
    from scenario import Fact, Scenario

    from bank.commands import Command

FUNDED = [opened("A"), opened("B"), deposited("A", 100)]
HOLDING = [*FUNDED, *pending(HELD, "A", "B", 40)]
PAID_40 = [*FUNDED, *moved(PAID, "A", "B", 40)]
ALL_BACK = [*PAID_40, *reversal(PAID, BACK, "A", "B", 40)]
IN_AN_HOUR = datetime_now_with_tzinfo() + timedelta(hours=1)


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
    "reversing a pending transfer that has a timeout": (
        [*FUNDED, *pending(HELD, "A", "B", 40, expires_at=IN_AN_HOUR)],
        ReverseTransfer(HELD),
        (
            "transfer_not_posted",
            f"Transfer {HELD} is pending; only a posted transfer can be reversed.",
            {"transfer_id": HELD, "status": "pending"},
        ),
    ),
    "reversing the rest of a transfer reversed in full": (
        ALL_BACK,
        ReverseTransfer(PAID),
        (
            "amount_exceeds_transfer",
            f"Transfer {PAID} has 0 cents left to move; 0 were asked for.",
            {"transfer_id": PAID, "amount_in_cents": 0, "remaining_in_cents": 0},
        ),
    ),
    "reversing 0 cents of a transfer reversed in full": (
        ALL_BACK,
        ReverseTransfer(PAID, 0),
        invalid(
            "amount_in_cents", "An amount is between 1 and 1000000000000000 cents."
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


def test_an_account_read_before_it_was_opened_names_that_moment(
    bank: Scenario,
) -> None:
    bank.given(opened("A"))
    moment = datetime_now_with_tzinfo() - timedelta(days=1)

    with pytest.raises(BankError) as refused:
        bank.app.version_at("A", moment)

    error = refused.value
    assert (error.code, error.message, error.details) == (
        "account_not_found",
        f"There was no account A at {moment.isoformat()}.",
        {"account_id": "A"},
    )


def test_an_empty_batch_is_refused_naming_the_batch(bank: Scenario) -> None:
    with pytest.raises(BankError) as refused:
        bank.app.execute_batch([])

    error = refused.value
    assert (error.code, error.message, error.details) == (
        "validation_error",
        "A batch holds 1 to 1000 commands.",
        {"field": "batch"},
    )
    assert bank.new_events() == []


def test_a_malformed_idempotency_key_is_refused_naming_it(bank: Scenario) -> None:
    bank.given(opened("A"))

    with pytest.raises(BankError) as refused:
        bank.app.execute(Deposit("A", 5), idempotency_key="has space")

    error = refused.value
    assert (error.code, error.message, error.details) == (
        "validation_error",
        "An idempotency key is 1 to 255 visible ASCII characters.",
        {"field": "idempotency_key"},
    )
    assert bank.new_events() == []


def test_a_key_reused_for_another_command_is_refused_naming_the_key(
    bank: Scenario,
) -> None:
    bank.given(opened("A"))
    bank.app.execute(Deposit("A", 5), idempotency_key="k-7")
    bank.given()

    with pytest.raises(BankError) as refused:
        bank.app.execute(Withdraw("A", 5), idempotency_key="k-7")

    error = refused.value
    assert (error.code, error.message, error.details) == (
        "idempotency_key_reused",
        "This idempotency key was already used for a different request.",
        {"idempotency_key": "k-7"},
    )
    assert bank.new_events() == []


def test_a_transfer_that_has_not_lapsed_cannot_be_recorded_as_expired() -> None:
    posted = TransferAggregate.make(PAID, "A", "B", "USD", 40)
    held = TransferAggregate.make(
        HELD, "A", "B", "USD", 40, is_pending=True, expires_at=IN_AN_HOUR
    )

    refusals = []
    for transfer in (posted, held):
        with pytest.raises(BankError) as refused:
            transfer.expire(datetime_now_with_tzinfo())
        refusals.append((refused.value.message, refused.value.details))

    assert refusals == [
        (
            f"Transfer {PAID} is posted, not pending.",
            {"transfer_id": PAID, "status": "posted"},
        ),
        (
            f"Transfer {HELD} is pending, not pending.",
            {"transfer_id": HELD, "status": "pending"},
        ),
    ]
    assert [len(t.pending_events) for t in (posted, held)] == [1, 1]


def test_a_unit_of_work_without_a_transfer_store_finds_no_transfer() -> None:
    accounts = Accounts(
        load=lambda account_id: Account.open("a@example.com", account_id)
    )

    with pytest.raises(BankError) as refused:
        accounts.transfer(HELD)

    assert (refused.value.code, refused.value.details) == (
        "transfer_not_found",
        {"transfer_id": HELD},
    )
