"""The bank's rules, as given events / when a command / then new events."""

from __future__ import annotations

import copy
import uuid
from typing import Any
from unittest.mock import ANY

import pytest
from scenario import (
    Scenario,
    closed,
    deposited,
    opened,
    overdraft_limit_set,
    transfer_created,
    transfer_received,
    transfer_sent,
    withdrawn,
)

from bank import (
    Account,
    AccountAlreadyExistsError,
    AccountClosedError,
    AccountNotEmptyError,
    AccountNotFoundError,
    BankApplication,
    ConfigurationError,
    InsufficientFundsError,
    InvalidCommandError,
)
from bank.commands import (
    CloseAccount,
    Deposit,
    OpenAccount,
    SetOverdraftLimit,
    Transfer,
    Withdraw,
)
from bank.domain import CurrencyMismatchError

BAD_AMOUNTS = [0, -1, 10**15 + 1, 1.5, 100.0, True, "100", None]


# Opening accounts.


def test_opening_an_account_records_opened_with_the_owner(bank: Scenario) -> None:
    result = bank.when(OpenAccount("a@example.com", "123"))

    assert bank.new_events() == [opened("123", "a@example.com")]
    assert result.account.balance_in_cents == 0
    assert result.account.version == 1


def test_an_integer_account_id_means_its_decimal_string(bank: Scenario) -> None:
    result = bank.when(OpenAccount("a@example.com", 456))

    assert result.account.account_id == "456"
    assert bank.new_events() == [opened("456", "a@example.com")]


def test_opening_without_an_id_assigns_a_fresh_uuid(bank: Scenario) -> None:
    result = bank.when(OpenAccount("a@example.com"))

    assert uuid.UUID(result.account.account_id).version == 4
    assert bank.new_events() == [opened(result.account.account_id, "a@example.com")]


def test_a_copy_of_an_account_takes_events_without_changing_the_original() -> None:
    account = Account.open("a@example.com", "123")
    account.collect_events()

    copied = copy.deepcopy(account)
    copied.deposit(100)

    assert (copied.balance_in_cents, copied.version, len(copied.pending_events)) == (
        100,
        2,
        1,
    )
    assert (account.balance_in_cents, account.version, account.pending_events) == (
        0,
        1,
        [],
    )


def test_the_same_public_id_always_names_the_same_aggregate() -> None:
    assert Account.create_id("123") == Account.create_id("123")
    assert Account.create_id("123") != Account.create_id("124")
    # In every process and release: stored accounts are found by it.
    assert str(Account.create_id("123")) == "0f29d29e-aea2-55b5-bf5f-b417f6f7d7be"


def test_opening_an_id_that_exists_is_refused_and_stores_nothing(
    bank: Scenario,
) -> None:
    bank.given(opened("123"))

    with pytest.raises(AccountAlreadyExistsError) as refusal:
        bank.when(OpenAccount("other@example.com", 123))

    assert refusal.value.code == "account_already_exists"
    assert bank.new_events() == []


@pytest.mark.parametrize(
    "email",
    [
        "",
        "no-at-sign",
        "two@@example.com",
        "a@b@example.com",
        "spaced name@example.com",
        "tab\t@example.com",
        "nul\x00@example.com",
        "bell\x07@example.com",
        "@example.com",
        "name@",
        "x" * 243 + "@example.com",
        None,
        42,
    ],
)
def test_an_owner_email_that_is_not_an_address_is_refused(
    bank: Scenario, email: Any
) -> None:
    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(OpenAccount(email, "123"))

    assert refusal.value.details["field"] == "account_owner_email"
    assert bank.new_events() == []


def test_an_owner_email_of_254_characters_is_accepted(bank: Scenario) -> None:
    email = "x" * 242 + "@example.com"

    bank.when(OpenAccount(email, "123"))

    assert bank.new_events() == [opened("123", email)]


@pytest.mark.parametrize(
    "account_id", ["", "x" * 65, "has space", "semi;colon", "ünïcode", "a/b", True, 1.5]
)
def test_a_malformed_account_id_is_refused(bank: Scenario, account_id: Any) -> None:
    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(OpenAccount("a@example.com", account_id))

    assert refusal.value.code == "validation_error"
    assert bank.new_events() == []


def test_an_account_id_may_use_letters_digits_and_dash_underscore_dot_colon(
    bank: Scenario,
) -> None:
    account_id = "Acc-1_2.3:" + "x" * 54

    bank.when(OpenAccount("a@example.com", account_id))

    assert bank.new_events() == [opened(account_id, "a@example.com")]


# Deposits.


def test_a_deposit_records_deposited_and_raises_the_balance(bank: Scenario) -> None:
    bank.given(opened("123"), deposited("123", 1000))

    result = bank.when(Deposit("123", 525))

    assert bank.new_events() == [deposited("123", 525)]
    assert result.account.balance_in_cents == 1525
    assert result.account.version == 3


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_a_deposit_of_anything_but_1_to_10_to_the_15_whole_cents_is_refused(
    bank: Scenario, amount: Any
) -> None:
    bank.given(opened("123"))

    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(Deposit("123", amount))

    assert refusal.value.details["field"] == "amount_in_cents"
    assert bank.new_events() == []


def test_the_largest_single_amount_is_10_to_the_15_cents(bank: Scenario) -> None:
    bank.given(opened("123"))

    bank.when(Deposit("123", 10**15))

    assert bank.new_events() == [deposited("123", 10**15)]


def test_a_deposit_to_an_unknown_account_is_refused(bank: Scenario) -> None:
    with pytest.raises(AccountNotFoundError) as refusal:
        bank.when(Deposit("nobody", 100))

    assert refusal.value.code == "account_not_found"
    assert bank.new_events() == []


# Withdrawals and the overdraft limit.


def test_a_withdrawal_within_the_balance_records_withdrawn(bank: Scenario) -> None:
    bank.given(opened("123"), deposited("123", 1000))

    result = bank.when(Withdraw("123", 1000))

    assert bank.new_events() == [withdrawn("123", 1000)]
    assert result.account.balance_in_cents == 0


def test_a_withdrawal_beyond_the_balance_is_refused_and_stores_nothing(
    bank: Scenario,
) -> None:
    bank.given(opened("123"), deposited("123", 1000))

    with pytest.raises(InsufficientFundsError) as refusal:
        bank.when(Withdraw("123", 1001))

    assert refusal.value.code == "insufficient_funds"
    assert refusal.value.details["available_in_cents"] == 1000
    assert bank.new_events() == []
    assert bank.app.get_balance("123") == 1000


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_a_withdrawal_of_a_bad_amount_is_refused(bank: Scenario, amount: Any) -> None:
    bank.given(opened("123"), deposited("123", 1000))

    with pytest.raises(InvalidCommandError):
        bank.when(Withdraw("123", amount))

    assert bank.new_events() == []


def test_a_withdrawal_may_use_the_overdraft_limit(bank: Scenario) -> None:
    bank.given(opened("123"), deposited("123", 100), overdraft_limit_set("123", 500))

    result = bank.when(Withdraw("123", 600))

    assert bank.new_events() == [withdrawn("123", 600)]
    assert result.account.balance_in_cents == -500


def test_a_withdrawal_beyond_the_overdraft_limit_is_refused_and_stores_nothing(
    bank: Scenario,
) -> None:
    bank.given(opened("123"), deposited("123", 100), overdraft_limit_set("123", 500))

    with pytest.raises(InsufficientFundsError):
        bank.when(Withdraw("123", 601))

    assert bank.new_events() == []


def test_setting_an_overdraft_limit_records_overdraft_limit_set(
    bank: Scenario,
) -> None:
    bank.given(opened("123"))

    result = bank.when(SetOverdraftLimit("123", 5000))

    assert bank.new_events() == [overdraft_limit_set("123", 5000)]
    assert result.account.overdraft_limit_in_cents == 5000


def test_the_overdraft_limit_starts_at_zero(bank: Scenario) -> None:
    bank.given(opened("123"))

    assert bank.app.get_account("123").overdraft_limit_in_cents == 0


@pytest.mark.parametrize("limit", [-1, 10**15 + 1, 1.0, True, "5", None])
def test_an_overdraft_limit_must_be_0_to_10_to_the_15_whole_cents(
    bank: Scenario, limit: Any
) -> None:
    bank.given(opened("123"))

    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(SetOverdraftLimit("123", limit))

    assert refusal.value.details["field"] == "overdraft_limit_in_cents"
    assert bank.new_events() == []


def test_an_overdraft_limit_can_be_set_back_to_zero(bank: Scenario) -> None:
    bank.given(opened("123"), overdraft_limit_set("123", 500))

    bank.when(SetOverdraftLimit("123", 0))

    assert bank.new_events() == [overdraft_limit_set("123", 0)]


def test_lowering_the_limit_below_the_current_debt_blocks_further_debits(
    bank: Scenario,
) -> None:
    bank.given(opened("123"), overdraft_limit_set("123", 500), withdrawn("123", 400))

    bank.when(SetOverdraftLimit("123", 100))
    with pytest.raises(InsufficientFundsError):
        bank.when(Withdraw("123", 1))

    assert bank.new_events() == [overdraft_limit_set("123", 100)]


# Transfers.


def test_a_transfer_records_both_halves_with_one_transfer_id(bank: Scenario) -> None:
    bank.given(opened("A"), deposited("A", 1000), opened("B"))

    result = bank.when(Transfer("A", "B", 300))

    transfer_id = result.transfer_id
    assert transfer_id is not None
    assert bank.new_events() == [
        transfer_created(transfer_id, "A", "B", 300),
        transfer_sent("A", to_account_id="B", amount_in_cents=300, transfer_id=ANY),
        transfer_received(
            "B", from_account_id="A", amount_in_cents=300, transfer_id=ANY
        ),
    ]
    _, sent, received = bank.new_events()
    assert sent.fields["transfer_id"] == received.fields["transfer_id"]
    assert sent.fields["transfer_id"] == transfer_id
    assert [state.balance_in_cents for state in result.accounts] == [700, 300]


def test_a_transfer_beyond_the_balance_is_refused_and_stores_nothing(
    bank: Scenario,
) -> None:
    bank.given(opened("A"), deposited("A", 1000), opened("B"))

    with pytest.raises(InsufficientFundsError):
        bank.when(Transfer("A", "B", 1001))

    assert bank.new_events() == []


def test_a_transfer_may_use_the_senders_overdraft_limit(bank: Scenario) -> None:
    bank.given(opened("A"), overdraft_limit_set("A", 200), opened("B"))

    result = bank.when(Transfer("A", "B", 200))

    assert [state.balance_in_cents for state in result.accounts] == [-200, 200]


def test_a_transfer_to_the_same_account_is_refused(bank: Scenario) -> None:
    bank.given(opened("A"), deposited("A", 1000))

    with pytest.raises(InvalidCommandError):
        bank.when(Transfer("A", "A", 100))

    assert bank.new_events() == []


@pytest.mark.parametrize(("source", "target"), [("nobody", "B"), ("A", "nobody")])
def test_a_transfer_with_an_unknown_account_is_refused(
    bank: Scenario, source: str, target: str
) -> None:
    bank.given(opened("A"), deposited("A", 1000), opened("B"))

    with pytest.raises(AccountNotFoundError) as refusal:
        bank.when(Transfer(source, target, 100))

    assert refusal.value.details["account_id"] == "nobody"
    assert bank.new_events() == []


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_a_transfer_of_a_bad_amount_is_refused(bank: Scenario, amount: Any) -> None:
    bank.given(opened("A"), deposited("A", 1000), opened("B"))

    with pytest.raises(InvalidCommandError):
        bank.when(Transfer("A", "B", amount))

    assert bank.new_events() == []


# Closing accounts.


def test_closing_an_empty_account_records_closed(bank: Scenario) -> None:
    bank.given(opened("123"), deposited("123", 100), withdrawn("123", 100))

    result = bank.when(CloseAccount("123"))

    assert bank.new_events() == [closed("123")]
    assert result.account.is_closed


@pytest.mark.parametrize(
    "balance_events", [[deposited("123", 1)], [withdrawn("123", 1)]]
)
def test_closing_an_account_that_is_not_exactly_zero_is_refused(
    bank: Scenario, balance_events: list[Any]
) -> None:
    bank.given(opened("123"), overdraft_limit_set("123", 10), *balance_events)

    with pytest.raises(AccountNotEmptyError) as refusal:
        bank.when(CloseAccount("123"))

    assert refusal.value.code == "account_not_empty"
    assert bank.new_events() == []


CLOSED_ACCOUNT_COMMANDS = {
    "deposit": Deposit("123", 100),
    "withdraw": Withdraw("123", 100),
    "transfer from": Transfer("123", "B", 100),
    "transfer to": Transfer("B", "123", 100),
    "overdraft limit": SetOverdraftLimit("123", 100),
    "close again": CloseAccount("123"),
}


@pytest.mark.parametrize(
    "command", CLOSED_ACCOUNT_COMMANDS.values(), ids=CLOSED_ACCOUNT_COMMANDS.keys()
)
def test_a_closed_account_refuses_every_change(bank: Scenario, command: Any) -> None:
    bank.given(
        opened("123"),
        closed("123"),
        opened("B"),
        deposited("B", 1000),
        overdraft_limit_set("B", 1000),
    )

    with pytest.raises(AccountClosedError) as refusal:
        bank.when(command)

    assert refusal.value.code == "account_closed"
    assert bank.new_events() == []


# Replay.


def test_replaying_the_seed_scenario_rebuilds_both_accounts(bank: Scenario) -> None:
    bank.given(
        opened("123"),
        deposited("123", 1000),
        deposited("123", 525),
        opened("456"),
        deposited("456", 25000),
    )

    assert bank.app.get_balance("123") == 1525
    assert bank.app.get_balance(456) == 25000
    assert bank.event_count() == 5


def test_an_account_can_be_read_as_it_was_at_any_past_version(bank: Scenario) -> None:
    bank.given(
        opened("123"), deposited("123", 1000), withdrawn("123", 300), closed("123")
    )

    balances = [
        bank.app.get_account("123", version=v).balance_in_cents for v in (1, 2, 3)
    ]

    assert balances == [0, 1000, 700]
    assert not bank.app.get_account("123", version=3).is_closed
    assert bank.app.get_account("123").is_closed


def test_the_history_lists_an_accounts_events_in_order(bank: Scenario) -> None:
    bank.given(opened("123"), deposited("123", 1000), withdrawn("123", 300))

    history = bank.app.get_history(123)

    assert [type(event) for event in history] == [
        Account.Opened,
        Account.Deposited,
        Account.Withdrawn,
    ]
    assert [event.originator_version for event in history] == [1, 2, 3]


def test_reading_an_unknown_account_is_refused(bank: Scenario) -> None:
    with pytest.raises(AccountNotFoundError):
        bank.app.get_account("nobody")
    with pytest.raises(AccountNotFoundError):
        bank.app.get_history("nobody")


# Currencies.


def test_an_account_opens_in_the_currency_asked_for(bank: Scenario) -> None:
    result = bank.when(OpenAccount("a@example.com", "A", currency="JPY"))

    assert bank.new_events() == [opened("A", "a@example.com", currency="JPY")]
    assert result.account.currency == "JPY"


def test_an_account_opens_in_the_default_currency_unless_told(bank: Scenario) -> None:
    result = bank.when(OpenAccount("a@example.com", "A"))

    assert bank.new_events() == [opened("A", "a@example.com", currency="USD")]
    assert result.account.currency == "USD"


def test_the_default_currency_is_a_setting(memory_env: dict[str, str]) -> None:
    with BankApplication(env={**memory_env, "BANK_DEFAULT_CURRENCY": "EUR"}) as app:
        app.open_account("a@example.com", "A")

        assert app.get_account("A").currency == "EUR"


def test_a_default_currency_that_is_no_iso_4217_code_stops_the_bank(
    memory_env: dict[str, str],
) -> None:
    with pytest.raises(ConfigurationError, match="BANK_DEFAULT_CURRENCY"):
        BankApplication(env={**memory_env, "BANK_DEFAULT_CURRENCY": "XYZ"})


@pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "", "USDX", 840, None])
def test_a_currency_that_is_no_iso_4217_code_is_refused_and_stores_nothing(
    bank: Scenario, currency: Any
) -> None:
    with pytest.raises(InvalidCommandError) as refused:
        bank.when(OpenAccount("a@example.com", "A", currency=currency or "?"))

    assert refused.value.details["field"] == "currency"
    assert bank.new_events() == []


def test_a_transfer_between_currencies_is_refused_with_currency_mismatch(
    bank: Scenario,
) -> None:
    bank.given(
        opened("A", currency="EUR"), deposited("A", 1000), opened("B", currency="USD")
    )

    with pytest.raises(CurrencyMismatchError) as refused:
        bank.when(Transfer("A", "B", 100))
    with pytest.raises(CurrencyMismatchError):
        bank.when(Transfer("A", "B", 100, pending=True))

    assert refused.value.code == "currency_mismatch"
    assert refused.value.details == {
        "from_account_id": "A",
        "from_currency": "EUR",
        "to_account_id": "B",
        "to_currency": "USD",
    }
    assert bank.new_events() == []


def test_a_transfer_within_one_currency_carries_it(bank: Scenario) -> None:
    bank.given(
        opened("A", currency="EUR"), deposited("A", 1000), opened("B", currency="EUR")
    )

    result = bank.when(Transfer("A", "B", 100))

    assert result.transfer is not None
    assert result.transfer.currency == "EUR"
    assert [account.currency for account in result.accounts] == ["EUR", "EUR"]


# Metadata.

METADATA = {"invoice": "INV-42", "order.id": "7", "a_b-c": ""}


def test_deposits_withdrawals_and_transfers_record_their_metadata(
    bank: Scenario,
) -> None:
    bank.given(opened("A"), opened("B"))

    bank.when(Deposit("A", 1000, metadata=METADATA))
    bank.when(Withdraw("A", 100, metadata={"atm": "12"}))
    result = bank.when(Transfer("A", "B", 300, metadata={"why": "rent"}))

    transfer_id = result.transfer_id
    assert transfer_id is not None
    assert bank.new_events() == [
        deposited("A", 1000, metadata=METADATA),
        withdrawn("A", 100, metadata={"atm": "12"}),
        transfer_created(transfer_id, "A", "B", 300, metadata={"why": "rent"}),
        transfer_sent("A", "B", 300, transfer_id, metadata={"why": "rent"}),
        transfer_received("B", "A", 300, transfer_id, metadata={"why": "rent"}),
    ]


def test_metadata_at_its_bounds_is_accepted(bank: Scenario) -> None:
    bank.given(opened("A"))
    largest = {f"k{n:02d}" + "x" * 37: "v" * 500 for n in range(16)}

    bank.when(Deposit("A", 1, metadata=largest))

    assert bank.new_events() == [deposited("A", 1, metadata=largest)]


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{n}": "v" for n in range(17)},
        {"k" * 41: "v"},
        {"": "v"},
        {"white space": "v"},
        {"k": "v" * 501},
        {"k": 1},
        {"k": None},
        {"k": {"nested": "v"}},
        ["k", "v"],
        "k=v",
    ],
)
def test_metadata_beyond_its_bounds_is_refused_and_stores_nothing(
    bank: Scenario, metadata: Any
) -> None:
    bank.given(opened("A"), deposited("A", 1000), opened("B"))

    for command in (
        Deposit("A", 1, metadata=metadata),
        Withdraw("A", 1, metadata=metadata),
        Transfer("A", "B", 1, metadata=metadata),
        Transfer("A", "B", 1, pending=True, metadata=metadata),
    ):
        with pytest.raises(InvalidCommandError) as refused:
            bank.when(command)
        assert refused.value.details["field"] == "metadata"

    assert bank.new_events() == []
