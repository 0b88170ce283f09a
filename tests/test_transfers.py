"""Transfers as a payments team needs them: holds, posting, voiding, expiry, reversals.

Given these events, when this command, then these new events (or a refusal
that stores nothing). The past and the future are given as real moments.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from unittest.mock import ANY

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from scenario import (
    Scenario,
    closed,
    deposited,
    expired,
    hold_expired,
    hold_placed,
    hold_posted,
    hold_voided,
    moved,
    opened,
    pending,
    per_stream,
    posted,
    transfer_created,
    transfer_expired,
    transfer_posted,
    transfer_received,
    transfer_reversed,
    transfer_sent,
    transfer_voided,
    voided,
    withdrawn,
)

from bank import InsufficientFundsError, InvalidCommandError
from bank.commands import (
    CloseAccount,
    Deposit,
    PostTransfer,
    ReverseTransfer,
    Transfer,
    VoidTransfer,
    Withdraw,
)
from bank.domain import MAX_HOLD_SECONDS, AccountHasPendingTransfersError
from bank.transfers import (
    AmountExceedsTransferError,
    TransferNotFoundError,
    TransferNotPendingError,
    TransferNotPostedError,
)
from bank.transfers import Transfer as TransferAggregate

if TYPE_CHECKING:
    from datetime import datetime

    from bank.commands import CommandResult

T = "0b3c5a8e-4a57-4c1e-9d1e-2f5f3d6a7b81"  # a transfer made before the test
LATER = "9c1d2e3f-0a1b-4c2d-8e3f-405162738495"


def funded(bank: Scenario, *more: Any) -> None:
    """A holds 1,000 and B nothing; then `more`."""
    bank.given(opened("A"), deposited("A", 1000), opened("B"), *more)


def past() -> datetime:
    """A moment a minute ago."""
    return datetime_now_with_tzinfo() - timedelta(minutes=1)


def future() -> datetime:
    """A moment an hour ahead."""
    return datetime_now_with_tzinfo() + timedelta(hours=1)


def states(result: CommandResult) -> list[tuple[int, int, int, int]]:
    """(balance, pending debits, pending credits, available) of each account."""
    return [
        (
            a.balance_in_cents,
            a.pending_debits_in_cents,
            a.pending_credits_in_cents,
            a.available_in_cents,
        )
        for a in result.accounts
    ]


# Holds.


def test_a_pending_transfer_holds_the_amount_on_both_accounts_and_moves_nothing(
    bank: Scenario,
) -> None:
    funded(bank)

    result = bank.when(Transfer("A", "B", 700, pending=True))

    assert result.transfer is not None
    assert bank.new_events() == [
        transfer_created(result.transfer.transfer_id, "A", "B", 700, is_pending=True),
        hold_placed("A", "B", 700, ANY, is_debit=True),
        hold_placed("B", "A", 700, ANY, is_debit=False),
    ]
    assert result.transfer.status == "pending"
    assert states(result) == [(1000, 700, 0, 300), (0, 0, 700, 0)]


def test_a_pending_transfer_with_a_timeout_expires_that_many_seconds_later(
    bank: Scenario,
) -> None:
    funded(bank)
    before = datetime_now_with_tzinfo()

    result = bank.when(Transfer("A", "B", 700, pending=True, timeout_seconds=60))

    assert result.transfer is not None
    expires_at = result.transfer.expires_at
    assert expires_at is not None
    assert before + timedelta(seconds=60) <= expires_at
    assert expires_at <= datetime_now_with_tzinfo() + timedelta(seconds=60)


@pytest.mark.parametrize("timeout", [1, MAX_HOLD_SECONDS])
def test_a_timeout_of_one_second_to_thirty_days_is_accepted(
    bank: Scenario, timeout: int
) -> None:
    funded(bank)

    result = bank.when(Transfer("A", "B", 1, pending=True, timeout_seconds=timeout))

    assert result.transfer is not None
    assert result.transfer.status == "pending"


@pytest.mark.parametrize("timeout", [0, -1, MAX_HOLD_SECONDS + 1, 1.5, True, "60"])
def test_any_other_timeout_is_refused_and_stores_nothing(
    bank: Scenario, timeout: Any
) -> None:
    funded(bank)

    with pytest.raises(InvalidCommandError) as refused:
        bank.when(Transfer("A", "B", 1, pending=True, timeout_seconds=timeout))

    assert refused.value.details["field"] == "timeout_seconds"
    assert bank.new_events() == []


def test_a_timeout_without_pending_is_refused_and_stores_nothing(
    bank: Scenario,
) -> None:
    funded(bank)

    with pytest.raises(InvalidCommandError) as refused:
        bank.when(Transfer("A", "B", 1, timeout_seconds=60))

    assert refused.value.details["field"] == "timeout_seconds"
    assert bank.new_events() == []


def test_a_withdrawal_beyond_what_the_holds_leave_available_is_refused(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    with pytest.raises(InsufficientFundsError) as refused:
        bank.when(Withdraw("A", 400))

    assert refused.value.details == {
        "account_id": "A",
        "balance_in_cents": 1000,
        "overdraft_limit_in_cents": 0,
        "available_in_cents": 300,
        "amount_in_cents": 400,
    }
    assert bank.new_events() == []


def test_a_withdrawal_within_what_the_holds_leave_is_accepted(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    bank.when(Withdraw("A", 300))

    assert bank.new_events() == [withdrawn("A", 300)]


def test_a_new_hold_or_transfer_beyond_what_is_available_is_refused(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    with pytest.raises(InsufficientFundsError):
        bank.when(Transfer("A", "B", 301, pending=True))
    with pytest.raises(InsufficientFundsError):
        bank.when(Transfer("A", "B", 301))

    assert bank.new_events() == []


def test_pending_credits_are_not_spendable(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    with pytest.raises(InsufficientFundsError) as refused:
        bank.when(Withdraw("B", 1))

    assert refused.value.details["available_in_cents"] == 0
    assert bank.new_events() == []


# Posting and voiding.


def test_posting_moves_the_whole_hold(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    result = bank.when(PostTransfer(T))

    assert bank.new_events() == [
        transfer_posted(T, 700),
        hold_posted("A", "B", 700, T, is_debit=True),
        hold_posted("B", "A", 700, T, is_debit=False),
    ]
    assert result.transfer is not None
    assert result.transfer.status == "posted"
    assert result.transfer.posted_amount_in_cents == 700
    assert states(result) == [(300, 0, 0, 300), (700, 0, 0, 700)]


def test_posting_less_moves_that_much_and_releases_the_rest(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    result = bank.when(PostTransfer(T, 500))

    assert bank.new_events() == [
        transfer_posted(T, 500),
        hold_posted("A", "B", 500, T, is_debit=True),
        hold_posted("B", "A", 500, T, is_debit=False),
    ]
    assert states(result) == [(500, 0, 0, 500), (500, 0, 0, 500)]


def test_posting_more_than_is_held_is_refused_with_amount_exceeds_transfer(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    with pytest.raises(AmountExceedsTransferError) as refused:
        bank.when(PostTransfer(T, 701))

    assert refused.value.code == "amount_exceeds_transfer"
    assert refused.value.details == {
        "transfer_id": T,
        "amount_in_cents": 701,
        "remaining_in_cents": 700,
    }
    assert bank.new_events() == []


def test_voiding_releases_the_whole_hold(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    result = bank.when(VoidTransfer(T))

    assert bank.new_events() == [
        transfer_voided(T),
        hold_voided("A", "B", 700, T, is_debit=True),
        hold_voided("B", "A", 700, T, is_debit=False),
    ]
    assert result.transfer is not None
    assert result.transfer.status == "voided"
    assert states(result) == [(1000, 0, 0, 1000), (0, 0, 0, 0)]


@pytest.mark.parametrize(
    ("ended", "status"),
    [
        (posted(T, "A", "B", 700), "posted"),
        (voided(T, "A", "B", 700), "voided"),
    ],
)
def test_posting_or_voiding_a_transfer_that_is_not_pending_is_refused_with_its_status(
    bank: Scenario, ended: list[Any], status: str
) -> None:
    funded(bank, *pending(T, "A", "B", 700), *ended)

    for command in (PostTransfer(T), VoidTransfer(T)):
        with pytest.raises(TransferNotPendingError) as refused:
            bank.when(command)
        assert refused.value.code == "transfer_not_pending"
        assert refused.value.details == {"transfer_id": T, "status": status}

    assert bank.new_events() == []


def test_a_plain_transfer_cannot_be_posted_or_voided(bank: Scenario) -> None:
    funded(bank)
    transfer_id = bank.when(Transfer("A", "B", 100)).transfer_id
    assert transfer_id is not None
    bank.given()

    with pytest.raises(TransferNotPendingError) as refused:
        bank.when(PostTransfer(transfer_id))

    assert refused.value.details["status"] == "posted"
    assert bank.new_events() == []


@pytest.mark.parametrize("transfer_id", [LATER, "not-a-transfer-id", ""])
def test_an_unknown_transfer_is_refused_with_transfer_not_found(
    bank: Scenario, transfer_id: str
) -> None:
    funded(bank, *pending(T, "A", "B", 700))

    for command in (
        PostTransfer(transfer_id),
        VoidTransfer(transfer_id),
        ReverseTransfer(transfer_id),
    ):
        with pytest.raises(TransferNotFoundError) as refused:
            bank.when(command)
        assert refused.value.code == "transfer_not_found"

    with pytest.raises(TransferNotFoundError):
        bank.app.get_transfer(transfer_id)
    assert bank.new_events() == []


# Expiry.


def test_a_lapsed_hold_reserves_nothing_even_before_its_expiry_is_recorded(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=past()))

    transfer = bank.app.load_transfer(T)
    account = bank.app.load_account("A")

    now = datetime_now_with_tzinfo()
    assert transfer.status_at(now) == "expired"
    assert account.available_at(now) == 1000
    assert bank.new_events() == []  # loading records nothing


def test_the_next_command_on_an_account_records_the_expiry_of_its_lapsed_holds(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=past()))

    result = bank.when(Withdraw("A", 1000))

    assert per_stream(bank.new_events()) == {
        T: [transfer_expired(T)],
        "A": [hold_expired("A", "B", 700, T, is_debit=True), withdrawn("A", 1000)],
        "B": [hold_expired("B", "A", 700, T, is_debit=False)],
    }
    assert states(result) == [(0, 0, 0, 0)]


def test_a_hold_that_has_not_lapsed_is_left_alone(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=future()))

    bank.when(Deposit("A", 1))

    assert bank.new_events() == [deposited("A", 1)]


def test_reading_an_account_records_the_expiry_of_its_lapsed_holds(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=past()))

    account = bank.app.get_account("B")

    assert account.holds == {}
    assert per_stream(bank.new_events()) == {
        T: [transfer_expired(T)],
        "A": [hold_expired("A", "B", 700, T, is_debit=True)],
        "B": [hold_expired("B", "A", 700, T, is_debit=False)],
    }


def test_reading_a_lapsed_transfer_records_its_expiry(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=past()))

    transfer = bank.app.get_transfer(T)

    assert transfer.status == "expired"
    assert per_stream(bank.new_events()) == {
        T: [transfer_expired(T)],
        "A": [hold_expired("A", "B", 700, T, is_debit=True)],
        "B": [hold_expired("B", "A", 700, T, is_debit=False)],
    }


def test_reading_the_past_records_nothing(bank: Scenario) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=past()))

    account = bank.app.get_account("A", version=3)

    assert account.holds[T]["amount_in_cents"] == 700
    assert bank.new_events() == []


def test_posting_or_voiding_a_lapsed_hold_is_refused_as_expired_and_stores_nothing(
    bank: Scenario,
) -> None:
    funded(bank, *pending(T, "A", "B", 700, expires_at=past()))

    for command in (PostTransfer(T), VoidTransfer(T)):
        with pytest.raises(TransferNotPendingError) as refused:
            bank.when(command)
        assert refused.value.details == {"transfer_id": T, "status": "expired"}

    assert bank.new_events() == []


def test_an_expired_transfer_stays_expired(bank: Scenario) -> None:
    funded(
        bank,
        *pending(T, "A", "B", 700, expires_at=past()),
        *expired(T, "A", "B", 700),
    )

    with pytest.raises(TransferNotPendingError) as refused:
        bank.when(PostTransfer(T))

    assert refused.value.details["status"] == "expired"
    assert bank.app.get_transfer(T).status == "expired"
    assert bank.new_events() == []


@pytest.mark.slow
def test_a_hold_with_a_one_second_timeout_lapses_by_itself(
    stored_bank: Scenario,
) -> None:
    funded(stored_bank)
    app = stored_bank.app
    transfer_id = app.transfer("A", "B", 700, pending=True, timeout_seconds=1)
    assert app.get_transfer(transfer_id).status == "pending"

    time.sleep(1.2)

    assert app.get_transfer(transfer_id).status == "expired"
    account = app.get_account("A")
    assert (account.balance_in_cents, account.holds) == (1000, {})
    assert [fact.kind.__qualname__ for fact in stored_bank.new_events()][-3:] == [
        "Transfer.Expired",
        "Account.HoldExpired",
        "Account.HoldExpired",
    ]
    with pytest.raises(TransferNotPendingError):
        app.post_transfer(transfer_id)


# Closing.


@pytest.mark.parametrize("account_id", ["A", "B"])
def test_closing_an_account_with_pending_holds_either_way_is_refused(
    bank: Scenario, account_id: str
) -> None:
    bank.given(
        opened("A"), opened("B"), deposited("A", 700), *pending(T, "A", "B", 700)
    )

    with pytest.raises(AccountHasPendingTransfersError) as refused:
        bank.when(CloseAccount(account_id))

    assert refused.value.code == "account_has_pending_transfers"
    assert refused.value.details == {"account_id": account_id, "transfer_ids": [T]}
    assert bank.new_events() == []


def test_closing_after_a_hold_lapsed_records_its_expiry_then_closes(
    bank: Scenario,
) -> None:
    bank.given(opened("A"), opened("B"), *pending(T, "A", "B", 1, expires_at=past()))

    bank.when(CloseAccount("B"))

    assert per_stream(bank.new_events()) == {
        T: [transfer_expired(T)],
        "A": [hold_expired("A", "B", 1, T, is_debit=True)],
        "B": [hold_expired("B", "A", 1, T, is_debit=False), closed("B")],
    }


# Transfers are first-class.


def test_a_plain_transfer_reads_as_posted(bank: Scenario) -> None:
    funded(bank)
    transfer_id = bank.app.transfer("A", "B", 300, metadata={"why": "rent"})

    transfer = bank.app.get_transfer(transfer_id)

    assert (transfer.from_account_id, transfer.to_account_id) == ("A", "B")
    assert (transfer.currency, transfer.amount_in_cents) == ("USD", 300)
    assert transfer.status == "posted"
    assert transfer.posted_amount_in_cents == 300
    assert transfer.reversed_amount_in_cents == 0
    assert transfer.reverses_transfer_id is None
    assert transfer.metadata == {"why": "rent"}
    assert transfer.expires_at is None
    assert transfer.created_at <= datetime_now_with_tzinfo()


def test_a_pending_transfer_reads_as_pending_until_it_ends(bank: Scenario) -> None:
    expires_at = future()
    funded(bank, *pending(T, "A", "B", 700, expires_at=expires_at))

    transfer = bank.app.get_transfer(T)

    assert (transfer.status, transfer.posted_amount_in_cents) == ("pending", 0)
    assert transfer.expires_at == expires_at


# Reversals.


def test_reversing_a_posted_transfer_moves_its_money_back_as_a_new_transfer(
    bank: Scenario,
) -> None:
    funded(bank, *moved(T, "A", "B", 600))

    result = bank.when(ReverseTransfer(T, metadata={"why": "refund"}))

    reversal = result.transfer
    assert reversal is not None
    assert reversal.reverses_transfer_id == T
    assert (reversal.from_account_id, reversal.to_account_id) == ("B", "A")
    r = reversal.transfer_id
    assert bank.new_events() == [
        transfer_reversed(T, 600, r),
        transfer_created(
            r, "B", "A", 600, reverses_transfer_id=T, metadata={"why": "refund"}
        ),
        transfer_sent("B", "A", 600, r, metadata={"why": "refund"}),
        transfer_received("A", "B", 600, r, metadata={"why": "refund"}),
    ]
    assert bank.app.get_transfer(T).reversed_amount_in_cents == 600
    assert [a.balance_in_cents for a in result.accounts] == [0, 1000]


def test_a_transfer_may_be_reversed_in_parts_up_to_what_was_posted(
    bank: Scenario,
) -> None:
    funded(bank, *moved(T, "A", "B", 600))

    bank.when(ReverseTransfer(T, 200))
    bank.when(ReverseTransfer(T, 400))
    with pytest.raises(AmountExceedsTransferError) as refused:
        bank.when(ReverseTransfer(T, 1))

    assert refused.value.details == {
        "transfer_id": T,
        "amount_in_cents": 1,
        "remaining_in_cents": 0,
    }
    assert bank.app.get_transfer(T).reversed_amount_in_cents == 600
    assert len(bank.new_events()) == 8


def test_reversing_more_than_is_left_is_refused_and_stores_nothing(
    bank: Scenario,
) -> None:
    funded(bank, *moved(T, "A", "B", 600))

    with pytest.raises(AmountExceedsTransferError):
        bank.when(ReverseTransfer(T, 601))

    assert bank.new_events() == []


def test_a_posted_hold_may_be_reversed_up_to_what_was_posted(bank: Scenario) -> None:
    funded(
        bank,
        *pending(T, "A", "B", 700),
        *posted(T, "A", "B", 500),
    )

    with pytest.raises(AmountExceedsTransferError):
        bank.when(ReverseTransfer(T, 501))
    result = bank.when(ReverseTransfer(T))

    assert result.transfer is not None
    assert result.transfer.amount_in_cents == 500


@pytest.mark.parametrize(
    "ended",
    [
        [],
        voided(T, "A", "B", 700),
    ],
    ids=["pending", "voided"],
)
def test_reversing_what_is_not_posted_is_refused_with_transfer_not_posted(
    bank: Scenario, ended: list[Any]
) -> None:
    funded(bank, *pending(T, "A", "B", 700), *ended)

    with pytest.raises(TransferNotPostedError) as refused:
        bank.when(ReverseTransfer(T))

    assert refused.value.code == "transfer_not_posted"
    assert refused.value.details["status"] in {"pending", "voided"}
    assert bank.new_events() == []


def test_a_reversal_needs_the_payees_funds(bank: Scenario) -> None:
    funded(bank, *moved(T, "A", "B", 600), withdrawn("B", 500))

    with pytest.raises(InsufficientFundsError) as refused:
        bank.when(ReverseTransfer(T))

    assert refused.value.details["account_id"] == "B"
    assert bank.new_events() == []


def test_a_transfer_id_names_the_same_aggregate_in_every_process_and_release() -> None:
    # Else a stored transfer would not be found after an upgrade.
    held = "00000000-0000-4000-8000-000000000002"
    assert str(TransferAggregate.create_id(held)) == (
        "56e3047e-60ce-5d51-b09a-141e9460419b"
    )


def test_a_pending_transfer_reads_expired_from_its_expiry_exactly() -> None:
    expires_at = datetime_now_with_tzinfo() + timedelta(hours=1)
    held = "00000000-0000-4000-8000-000000000002"
    transfer = TransferAggregate.make(
        held, "A", "B", "USD", 40, is_pending=True, expires_at=expires_at
    )
    just_before = expires_at - timedelta(microseconds=1)

    assert (transfer.is_lapsed(just_before), transfer.status_at(just_before)) == (
        False,
        "pending",
    )
    assert (transfer.is_lapsed(expires_at), transfer.status_at(expires_at)) == (
        True,
        "expired",
    )
