"""The Account aggregate used directly, as a Python caller of the domain would.

The application always passes the moment a command is decided; these are the
rules when a caller passes none (now), and at an expiry's exact moment.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo

from bank import Account, BankError, InvalidCommandError
from bank.commands import Accounts, OpenAccount
from bank.domain import in_utc

if TYPE_CHECKING:
    from scenario import Scenario

HOLD = "00000000-0000-4000-8000-00000000000a"


def account_holding(
    balance: int, hold: int, expires_at: datetime | None, *, is_debit: bool = True
) -> Account:
    """Account A with this balance and one hold to or from B, placed an hour ago."""
    account = Account.open("a@example.com", "A")
    if balance:
        account.deposit(balance)
    an_hour_ago = datetime_now_with_tzinfo() - timedelta(hours=1)
    account.place_hold(
        HOLD, "B", hold, is_debit=is_debit, expires_at=expires_at, now=an_hour_ago
    )
    return account


def lapsed_a_minute_ago() -> datetime:
    """A hold's expiry one minute in the past."""
    return datetime_now_with_tzinfo() - timedelta(minutes=1)


def test_a_withdrawal_without_a_moment_is_judged_now_past_a_lapsed_hold() -> None:
    account = account_holding(100, 60, lapsed_a_minute_ago())

    account.withdraw(100)

    assert account.balance_in_cents == 0


def test_a_transfer_without_a_moment_is_judged_now_past_a_lapsed_hold() -> None:
    account = account_holding(100, 60, lapsed_a_minute_ago())

    account.send_transfer("t-1", "C", 100)

    assert account.balance_in_cents == 0


def test_a_hold_without_a_moment_is_judged_now_past_a_lapsed_hold() -> None:
    account = account_holding(100, 60, lapsed_a_minute_ago())

    account.place_hold("t-2", "C", 100, is_debit=True, expires_at=None)

    assert account.pending_at(datetime_now_with_tzinfo(), is_debit=True) == 100


def test_closing_without_a_moment_is_judged_now_past_a_lapsed_hold() -> None:
    account = account_holding(0, 60, lapsed_a_minute_ago(), is_debit=False)

    account.close()

    assert account.is_closed


def test_a_hold_lapses_at_its_expiry_exactly_and_holds_until_then() -> None:
    expires_at = datetime_now_with_tzinfo() + timedelta(hours=1)
    account = account_holding(100, 60, expires_at)
    just_before = expires_at - timedelta(microseconds=1)

    assert account.available_at(just_before) == 40
    assert account.pending_transfer_ids(just_before) == [HOLD]
    assert account.lapsed_transfer_ids(just_before) == []
    assert account.available_at(expires_at) == 100
    assert account.pending_transfer_ids(expires_at) == []
    assert account.lapsed_transfer_ids(expires_at) == [HOLD]


def test_an_account_refuses_to_send_money_or_hold_it_for_itself() -> None:
    account = Account.open("a@example.com", "A")
    account.deposit(100)

    with pytest.raises(InvalidCommandError) as transfer:
        account.send_transfer("t-1", "A", 10)
    with pytest.raises(InvalidCommandError) as hold:
        account.place_hold("t-2", "A", 10, is_debit=True, expires_at=None)

    assert transfer.value.details == hold.value.details == {"field": "to_account_id"}
    assert account.balance_in_cents == 100
    assert account.holds == {}


def test_a_moment_is_read_in_utc_whatever_the_servers_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        moment = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))

        read = in_utc(moment)
    finally:
        monkeypatch.undo()
        time.tzset()

    assert read == moment
    assert (read.hour, read.utcoffset(), read.tzinfo) == (14, timedelta(0), UTC)


def test_a_copy_of_an_account_places_holds_without_changing_the_originals() -> None:
    account = account_holding(100, 60, None)

    copied = copy.deepcopy(account)
    copied.place_hold("t-2", "C", 40, is_debit=True, expires_at=None)

    assert sorted(copied.holds) == sorted([HOLD, "t-2"])
    assert list(account.holds) == [HOLD]
    now = datetime_now_with_tzinfo()
    assert (copied.available_at(now), account.available_at(now)) == (0, 40)


def test_a_refused_account_id_is_echoed_in_its_first_100_characters() -> None:
    with pytest.raises(InvalidCommandError) as refusal:
        Account.open("a@example.com", "x" * 1000)

    assert refusal.value.details == {"field": "account_id", "value": "'" + "x" * 99}


# The unit of work the commands run in.


def test_a_unit_of_work_decides_at_the_moment_it_is_given() -> None:
    moment = datetime(2026, 12, 1, 12, tzinfo=UTC)

    accounts = Accounts(
        load=lambda account_id: Account.open("a@example.com", account_id)
    )

    assert Accounts(accounts.get, now=moment).now == moment
    assert accounts.now == accounts.now  # read from the clock once


def test_opening_one_id_twice_in_a_batch_is_refused_naming_it(bank: Scenario) -> None:
    batch = [OpenAccount("a@example.com", "A"), OpenAccount("b@example.com", "A")]

    with pytest.raises(BankError) as refused:
        bank.app.execute_batch(batch)

    assert (refused.value.code, refused.value.details, refused.value.command_index) == (
        "account_already_exists",
        {"account_id": "A"},
        1,
    )
    assert bank.new_events() == []
