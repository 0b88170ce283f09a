"""BankApplication on real databases: persistence, replay, snapshots, atomicity."""

from __future__ import annotations

import copy
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from eventsourcing.persistence import IntegrityError
from scenario import (
    Scenario,
    deposited,
    opened,
    transfer_created,
    transfer_received,
    transfer_sent,
)

from bank import (
    Account,
    AccountAlreadyExistsError,
    AccountNotFoundError,
    BankApplication,
    ConcurrencyError,
    InsufficientFundsError,
)
from bank.commands import Accounts, CommandResult
from bank.settings import with_sqlite_busy_timeout

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import BankEnv


def test_the_python_api_round_trip(app: BankApplication) -> None:
    alice = app.open_account("alice@example.com", 123)
    bob = app.open_account("bob@example.com")

    assert app.deposit(alice, 1000) == 1000
    assert app.withdraw("123", 250) == 750
    transfer_id = app.transfer(alice, bob, 500)
    app.set_overdraft_limit(bob, 100)
    assert app.withdraw(bob, 600) == -100

    assert alice == "123"
    assert isinstance(transfer_id, str)
    assert app.get_balance(alice) == 250
    assert app.get_account(bob).overdraft_limit_in_cents == 100
    assert app.get_account(bob).owner_email == "bob@example.com"
    assert app.get_account(alice).account_id == "123"


def test_require_account_answers_the_id_of_an_opened_account(
    stored_bank: Scenario,
) -> None:
    stored_bank.given(opened("123"))

    assert stored_bank.app.require_account(123) == "123"


def test_require_account_refuses_an_account_never_opened(stored_bank: Scenario) -> None:
    stored_bank.given(opened("123"))

    with pytest.raises(AccountNotFoundError) as refused:
        stored_bank.app.require_account("456")

    assert refused.value.details == {"account_id": "456"}
    assert stored_bank.new_events() == []


def test_a_refused_command_stores_nothing(stored_bank: Scenario) -> None:
    stored_bank.given(opened("123"), deposited("123", 1000))

    with pytest.raises(InsufficientFundsError):
        stored_bank.app.withdraw("123", 1001)

    assert stored_bank.new_events() == []


def test_opening_an_existing_id_is_refused_by_the_stores_unique_constraint(
    stored_bank: Scenario,
) -> None:
    stored_bank.given(opened("123", "first@example.com"))

    with pytest.raises(AccountAlreadyExistsError):
        stored_bank.app.open_account("second@example.com", "123")

    assert stored_bank.new_events() == []
    assert stored_bank.app.get_account("123").owner_email == "first@example.com"


def test_a_new_application_on_the_same_database_sees_every_account(
    db_env: BankEnv,
) -> None:
    with BankApplication(env=db_env) as writer:
        writer.open_account("a@example.com", 123)
        writer.deposit(123, 1000)
        writer.deposit(123, 525)
        writer.open_account("b@example.com", 456)
        writer.deposit(456, 25000)

    with BankApplication(env=db_env) as reader:
        assert reader.get_balance(123) == 1525
        assert reader.get_balance(456) == 25000
        assert reader.recorder.max_notification_id() == 5
        assert reader.get_account(123, version=2).balance_in_cents == 1000


def test_snapshots_are_written_every_interval_and_used_to_load(
    db_env: BankEnv,
) -> None:
    env = {**db_env, "SNAPSHOT_INTERVAL": "10"}
    with BankApplication(env=env) as writer:
        writer.open_account("a@example.com", "A")
        for _ in range(24):
            writer.deposit("A", 1)

    # A fresh, cache-less application must start from the latest snapshot.
    with BankApplication(env={**env, "AGGREGATE_CACHE_MAXSIZE": ""}) as reader:
        assert reader.snapshots is not None
        aggregate_id = reader.get_account("A").id
        snapshots = list(reader.snapshots.get(aggregate_id))
        read_after = _versions_read_after_snapshot(reader, "A")

    assert [snapshot.originator_version for snapshot in snapshots] == [10, 20]
    assert read_after == [21, 22, 23, 24, 25]


def _versions_read_after_snapshot(app: BankApplication, account_id: str) -> list[int]:
    read: list[int] = []
    original_get = app.events.get

    def recording_get(*args: object, **kwargs: object) -> object:
        events = list(original_get(*args, **kwargs))  # type: ignore[arg-type]
        read.extend(event.originator_version for event in events)
        return iter(events)

    app.events.get = recording_get  # type: ignore[method-assign,assignment]
    assert app.get_balance(account_id) == 24
    return read


def test_snapshots_can_be_turned_off(db_env: BankEnv) -> None:
    with BankApplication(env={**db_env, "SNAPSHOT_INTERVAL": "0"}) as app:
        app.open_account("a@example.com", "A")
        for _ in range(120):
            app.deposit("A", 1)

        assert app.snapshots is not None
        assert list(app.snapshots.get(app.get_account("A").id)) == []


def test_a_transfer_is_all_or_nothing_when_the_second_account_conflicts(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    app.deposit("A", 1000)
    source, stale_target = app.get_account("A"), app.get_account("B")
    app.deposit("B", 1)  # another writer moves B on

    source.send_transfer("t-1", "B", 300)
    stale_target.receive_transfer("t-1", "A", 300)
    with pytest.raises(IntegrityError):
        app.save(source, stale_target)

    assert [type(event).__name__ for event in app.get_history("A")] == [
        "Opened",
        "Deposited",
    ]
    assert app.get_balance("A") == 1000
    assert app.get_balance("B") == 1


@dataclass(frozen=True)
class DepositWhileAnotherWriterWins:
    """A deposit whose first attempts lose the race to another application."""

    rival: BankApplication
    account_id: str
    amount_in_cents: int
    losses: list[int]

    def run(self, accounts: Accounts) -> CommandResult:
        """Load, let the rival write, then deposit on the now stale account."""
        account = accounts.get(self.account_id)
        if self.losses:
            self.losses.pop()
            self.rival.deposit(self.account_id, 1)
        account.deposit(self.amount_in_cents)
        return CommandResult(())


def test_a_lost_write_race_is_retried_against_the_new_state(
    db_env: BankEnv,
) -> None:
    with BankApplication(env=db_env) as app, BankApplication(env=db_env) as rival:
        app.open_account("a@example.com", "A")

        app.execute(DepositWhileAnotherWriterWins(rival, "A", 100, losses=[1, 1]))

        assert app.get_balance("A") == 102
        assert [type(e).__name__ for e in app.get_history("A")] == [
            "Opened",
            "Deposited",
            "Deposited",
            "Deposited",
        ]


def test_when_retries_run_out_the_command_is_refused_and_stores_nothing(
    db_env: BankEnv,
) -> None:
    env = {**db_env, "COMMAND_MAX_ATTEMPTS": "2"}
    with BankApplication(env=env) as app, BankApplication(env=db_env) as rival:
        app.open_account("a@example.com", "A")

        with pytest.raises(ConcurrencyError) as refusal:
            app.execute(DepositWhileAnotherWriterWins(rival, "A", 100, losses=[1, 1]))

        assert refusal.value.code == "concurrency_conflict"
        assert app.get_balance("A") == 2


def test_a_transfer_is_stored_as_its_transfer_and_both_halves_in_one_write(
    stored_bank: Scenario,
) -> None:
    stored_bank.given(opened("A"), deposited("A", 1000), opened("B"))

    transfer_id = stored_bank.app.transfer("A", "B", 400)

    assert stored_bank.new_events() == [
        transfer_created(transfer_id, "A", "B", 400),
        transfer_sent("A", "B", 400, transfer_id),
        transfer_received("B", "A", 400, transfer_id),
    ]


def test_history_can_be_paged_by_version(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")
    for amount in (1, 2, 3, 4):
        app.deposit("A", amount)

    page = app.get_history("A", after_version=2, limit=2)

    assert [event.originator_version for event in page] == [3, 4]
    assert app.get_history("A", after_version=5) == []
    with pytest.raises(AccountNotFoundError):
        app.get_history("nobody", after_version=5)


def test_by_default_the_bank_lives_in_bank_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("PERSISTENCE_MODULE", "SQLALCHEMY_URL", "SQLALCHEMY_SCHEMA"):
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(f"BANK_{key}", raising=False)

    with BankApplication() as app:
        app.open_account("a@example.com", "A")

    rows = sqlite3.connect(tmp_path / "bank.db").execute(
        "SELECT count(*) FROM bank_events"
    )
    assert rows.fetchone() == (1,)


def test_sqlite_file_urls_get_a_busy_timeout_unless_they_set_one() -> None:
    assert with_sqlite_busy_timeout("sqlite:///bank.db", "15") == (
        "sqlite:///bank.db?timeout=15"
    )
    assert with_sqlite_busy_timeout("sqlite:///bank.db?timeout=2", "15") == (
        "sqlite:///bank.db?timeout=2"
    )
    assert with_sqlite_busy_timeout("sqlite:///:memory:", "15") == "sqlite:///:memory:"
    assert with_sqlite_busy_timeout("postgresql://x/y", "15") == "postgresql://x/y"


def test_an_empty_schema_setting_is_ignored(sqlite_env: BankEnv) -> None:
    with BankApplication(env={**sqlite_env, "SQLALCHEMY_SCHEMA": ""}) as app:
        app.open_account("a@example.com", "A")

        assert app.get_balance("A") == 0


def test_a_refusal_is_decided_again_on_the_stored_state_not_a_stale_cache(
    db_env: BankEnv,
) -> None:
    with BankApplication(env=db_env) as app, BankApplication(env=db_env) as rival:
        app.open_account("a@example.com", "A")  # app now caches A with 0 cents
        rival.deposit("A", 100)

        balance = app.withdraw("A", 60)

        assert balance == 40


def test_a_debit_decided_on_a_stale_cache_is_not_saved(db_env: BankEnv) -> None:
    with BankApplication(env=db_env) as app, BankApplication(env=db_env) as rival:
        app.open_account("a@example.com", "A")
        app.deposit("A", 100)  # app now caches A with 100 cents
        rival.withdraw("A", 100)

        with pytest.raises(InsufficientFundsError):
            app.withdraw("A", 60)

        assert rival.get_balance("A") == 0
        assert [type(e).__name__ for e in rival.get_history("A")] == [
            "Opened",
            "Deposited",
            "Withdrawn",
        ]


def test_a_setting_given_explicitly_beats_its_bank_prefixed_twin_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANK_SQLALCHEMY_URL", f"sqlite:///{tmp_path / 'stray.db'}")

    with BankApplication(
        env={"SQLALCHEMY_URL": f"sqlite:///{tmp_path / 'wanted.db'}"}
    ) as app:
        app.open_account("a@example.com", "A")

    assert (tmp_path / "wanted.db").exists()
    assert not (tmp_path / "stray.db").exists()


def test_a_post_decided_on_a_cached_account_older_than_its_hold_is_decided_again(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    app.deposit("A", 100)
    assert app.repository.cache is not None
    before_the_hold = copy.deepcopy(app.repository.cache.get(Account.create_id("A")))
    hold = app.transfer("A", "B", 10, pending=True)
    # What a query in another thread may leave behind: a late put of the copy
    # it loaded before the hold was placed.
    app.repository.cache.put(before_the_hold.id, before_the_hold)

    posted = app.post_transfer(hold)

    assert posted.status == "posted"
    assert app.get_balance("A") == 90
    assert app.get_balance("B") == 10
