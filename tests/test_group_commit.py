"""Group commit: concurrent commands of one process share one transaction.

Each test holds the group's leader in a slow first command until the other
threads have queued behind it, so the next group is known: all of them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from scenario import Scenario, deposited, opened

from bank import Account, BankApplication, InsufficientFundsError
from bank.commands import Accounts, CommandResult, Deposit, Withdraw
from web.testing import libpq_url

if TYPE_CHECKING:
    from conftest import BankEnv

    from bank.commands import Command
    from bank.groupcommit import GroupCommit

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class HeldDeposit:
    """A deposit that waits, once it runs, until the test lets it go."""

    account_id: str
    amount_in_cents: int
    running: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def run(self, accounts: Accounts) -> CommandResult:
        """Signal that the leader is busy, wait for release, then deposit."""
        self.running.set()
        self.release.wait(10)
        return Deposit(self.account_id, self.amount_in_cents).run(accounts)


def group_of(app: BankApplication) -> GroupCommit[object, object]:
    """The application's group commit (every SQL database has one)."""
    assert app.group_commit is not None
    return app.group_commit  # type: ignore[return-value]


@dataclass
class GroupRun:
    """What became of commands queued behind a held leader."""

    outcomes: list[CommandResult | Exception]
    transactions: int  # committed while they ran, the leader's included
    commands: int  # run in those transactions, the leader included


def run_as_one_group(app: BankApplication, commands: list[Command]) -> GroupRun:
    """Queue the commands behind a held leader, so that they form the next group."""
    group = group_of(app)
    app.open_account("leader@example.com", "LEADER")
    held = HeldDeposit("LEADER", 1)
    outcomes: list[CommandResult | Exception] = [ValueError("not run")] * len(commands)

    def execute(index: int, command: Command) -> None:
        try:
            outcomes[index] = app.execute(command)[0]
        except Exception as error:  # reported to the test
            outcomes[index] = error

    leader = threading.Thread(target=app.execute, args=(held,))
    leader.start()
    assert held.running.wait(10)
    threads = [
        threading.Thread(target=execute, args=(index, command))
        for index, command in enumerate(commands)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while group.queued < len(commands) + 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    transactions, queued_commands = group.transactions, group.commands
    held.release.set()
    for thread in [leader, *threads]:
        thread.join(20)
    return GroupRun(
        outcomes, group.transactions - transactions, group.commands - queued_commands
    )


def test_concurrent_deposits_commit_together_and_each_is_stored_once(
    stored_bank: Scenario,
) -> None:
    accounts = [f"A{index}" for index in range(12)]
    stored_bank.given(*(opened(account) for account in accounts))

    run = run_as_one_group(
        stored_bank.app, [Deposit(account, 100) for account in accounts]
    )

    assert all(isinstance(outcome, CommandResult) for outcome in run.outcomes)
    # The held leader committed alone; the twelve others together.
    assert (run.transactions, run.commands) == (2, 13)
    new = Counter(map(repr, stored_bank.new_events()))
    expected = [opened("LEADER", "leader@example.com"), deposited("LEADER", 1)]
    expected += [deposited(account, 100) for account in accounts]
    assert new == Counter(map(repr, expected))


def test_a_refused_command_in_a_group_stores_nothing_and_the_others_commit(
    stored_bank: Scenario,
) -> None:
    stored_bank.given(opened("A"), deposited("A", 50), opened("B"))

    run = run_as_one_group(
        stored_bank.app, [Deposit("B", 10), Withdraw("A", 80), Deposit("B", 20)]
    )

    refusal = run.outcomes[1]
    assert isinstance(refusal, InsufficientFundsError)
    assert refusal.details["available_in_cents"] == 50
    assert (run.transactions, run.commands) == (2, 4)
    new = Counter(map(repr, stored_bank.new_events()))
    assert new == Counter(
        map(
            repr,
            [
                opened("LEADER", "leader@example.com"),
                deposited("LEADER", 1),
                deposited("B", 10),
                deposited("B", 20),
            ],
        )
    )
    assert stored_bank.app.get_balance("A") == 50


def test_commands_on_one_account_in_a_group_build_on_each_other(
    stored_bank: Scenario,
) -> None:
    stored_bank.given(opened("HOT"), deposited("HOT", 100))

    run = run_as_one_group(
        stored_bank.app,
        [Deposit("HOT", 10) for _ in range(8)] + [Withdraw("HOT", 150)],
    )

    assert (run.transactions, run.commands) == (2, 10)
    # The withdrawal ran after some deposits; whether it was refused depends
    # on how many came first, and either way the ledger must add up.
    deposits = [repr(fact) for fact in stored_bank.new_events()]
    assert deposits.count(repr(deposited("HOT", 10))) == 8
    withdrawn = 0 if isinstance(run.outcomes[-1], InsufficientFundsError) else 150
    assert stored_bank.app.get_balance("HOT") == 100 + 80 - withdrawn
    versions = [
        event.originator_version for event in stored_bank.app.get_history("HOT")
    ]
    assert versions == list(range(1, len(versions) + 1))


def test_a_command_that_lost_a_race_in_a_group_is_undone_alone_and_retried(
    db_env: BankEnv,
) -> None:
    with BankApplication(env=db_env) as app, BankApplication(env=db_env) as rival:
        app.open_account("a@example.com", "A")
        app.open_account("b@example.com", "B")
        # The rival's deposit makes this process's cached copy of A stale, so
        # A's deposit in the group conflicts on its version and is undone.
        rival.deposit("A", 5)

        run = run_as_one_group(app, [Deposit("A", 100), Deposit("B", 200)])

        assert all(isinstance(outcome, CommandResult) for outcome in run.outcomes)
        # The leader; B with A undone to its savepoint; A again, alone.
        assert (run.transactions, run.commands) == (3, 4)
        assert app.get_balance("A") == 105
        assert app.get_balance("B") == 200
        assert [type(event).__name__ for event in app.get_history("A")] == [
            "Opened",
            "Deposited",
            "Deposited",
        ]


@pytest.mark.postgres
def test_when_a_groups_commit_fails_each_of_its_commands_fails_and_none_is_stored(
    postgres_env: BankEnv,
) -> None:
    schema = postgres_env["SQLALCHEMY_SCHEMA"]
    with BankApplication(env=postgres_env) as app:
        app.open_account("a@example.com", "A")
        app.open_account("b@example.com", "B")
        # A deferred constraint trigger runs at COMMIT, after every command of
        # the group has run in its savepoint: so the commit itself fails.
        doomed = ", ".join(f"'{Account.create_id(name)}'" for name in ("A", "B"))
        with psycopg.connect(libpq_url(postgres_env["SQLALCHEMY_URL"])) as db:
            db.execute(f"""
                CREATE FUNCTION {schema}.refuse_commit() RETURNS trigger
                LANGUAGE plpgsql AS $$ BEGIN
                    RAISE EXCEPTION 'the disk is full' USING ERRCODE = '53100';
                END $$;
                CREATE CONSTRAINT TRIGGER refuse_commit
                AFTER INSERT ON {schema}.bank_events
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                WHEN (NEW.originator_id IN ({doomed}))
                EXECUTE FUNCTION {schema}.refuse_commit();
            """)
        head = app.recorder.max_notification_id()

        run = run_as_one_group(app, [Deposit("A", 100), Deposit("B", 200)])

        assert [type(outcome) for outcome in run.outcomes] == [OperationalError] * 2
        assert (run.transactions, run.commands) == (1, 1)  # the leader alone
        stored = app.recorder.select_notifications(start=head, limit=10)
        assert len(stored) == 3  # the last event before, and the leader's two
        with psycopg.connect(libpq_url(postgres_env["SQLALCHEMY_URL"])) as db:
            db.execute(f"DROP TRIGGER refuse_commit ON {schema}.bank_events")
        app.deposit("A", 7)
        history = app.get_history("A")
        assert [event.originator_version for event in history] == [1, 2]
        assert app.get_balance("A") == 7


@dataclass(frozen=True)
class DepositThroughTheApplicationToo:
    """A command that, while it runs, has the application run another."""

    app: BankApplication
    account_id: str
    other_account_id: str

    def run(self, accounts: Accounts) -> CommandResult:
        """Deposit 1 on the other account through the application, then 2 here."""
        self.app.deposit(self.other_account_id, 1)
        return Deposit(self.account_id, 2).run(accounts)


def test_a_command_that_runs_another_while_it_runs_does_not_wait_for_itself(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")

    app.execute(DepositThroughTheApplicationToo(app, "B", "A"))

    assert (app.get_balance("A"), app.get_balance("B")) == (1, 2)
