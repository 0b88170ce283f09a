"""The write path under load: 4 processes of 16 writers and a live projector.

Four OS processes, each with its own BankApplication on one database, run 16
writer threads each: deposits, withdrawals (some refused for funds), transfers
and holds posted or voided, all on a few shared accounts, so writers conflict
across threads and processes. A projector process catches the read models up
continuously meanwhile. Afterwards every account's view must equal its replay,
every event must have exactly one statement line, the audit must pass and the
money must add up to what the writers were told was done.

On PostgreSQL a trigger delays each insert's commit by a random few
milliseconds, so that a write path which let transactions commit out of the
order of their notification ids would make the projector skip an event.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import psycopg
import pytest
from sqlalchemy import select

from bank import (
    Account,
    BankApplication,
    BankError,
    ConcurrencyError,
    InsufficientFundsError,
)
from bank.audit import audit
from bank.commands import AccountState
from bank.domain import project_account
from bank.projections import Ledger
from web.testing import libpq_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Barrier, Event

    from conftest import BankEnv

pytestmark = pytest.mark.slow

PROCESSES = 4
THREADS = 16
COMMANDS_PER_THREAD = 30
SEED = 20_260_101
# account id -> (funding in cents, overdraft limit in cents)
ACCOUNTS: dict[str, tuple[int, int]] = {
    f"wp-{n:02}": (funding, limit)
    for n, (funding, limit) in enumerate(
        [(20_000, 0), (10_000, 5_000), (5_000, 0), (0, 3_000)] * 3
    )
}
ACCOUNT_IDS = sorted(ACCOUNTS)
# Withdrawals average a little more than deposits, so balances sink towards
# their limits and some debits are refused for insufficient funds.
KINDS = ("deposit", "withdraw", "transfer", "hold", "settle")
KIND_WEIGHTS = (25, 25, 30, 10, 10)
MAX_AMOUNT = {"deposit": 2_000, "withdraw": 2_400, "transfer": 3_000, "hold": 1_500}
# The projector's batches are small, so its position moves often.
PROJECTOR_BATCH = 50
PROJECTOR_PAUSE_SECONDS = 0.002
STARTUP_SECONDS = 60.0
LOAD_SECONDS = 150.0  # a hard bound: writers still running then are killed
SHUTDOWN_SECONDS = 30.0
# Up to this long, at random, between a write's INSERT and its COMMIT.
MAX_COMMIT_DELAY_SECONDS = 0.003
DELAY = "write_path_commit_delay"  # the trigger, its function and its counter


class Done(NamedTuple):
    """A command a writer was told succeeded.

    kind is deposit, withdraw, transfer, hold, post or void; `other` is the
    payee of a transfer or hold ("" otherwise), `transfer_id` "" if none.
    """

    kind: str
    account_id: str
    other: str
    amount: int
    transfer_id: str

    def effects(self) -> dict[str, int]:
        """What the command did to each account's balance."""
        if self.kind == "deposit":
            return {self.account_id: self.amount}
        if self.kind == "withdraw":
            return {self.account_id: -self.amount}
        if self.kind in ("transfer", "post"):
            return {self.account_id: -self.amount, self.other: self.amount}
        return {}  # a hold placed or voided moves no money


@dataclass
class Outcomes:
    """What one writer thread (or process) did: acknowledged, refused, broken."""

    acknowledged: list[Done] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def add(self, other: Outcomes) -> None:
        """Add another's outcomes to these."""
        self.acknowledged += other.acknowledged
        self.refused += other.refused
        self.unexpected += other.unexpected

    def to_json(self) -> str:
        """As written to a result file."""
        return json.dumps(
            {
                "acknowledged": self.acknowledged,
                "refused": self.refused,
                "unexpected": self.unexpected,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Outcomes:
        """As read back from a result file."""
        data = json.loads(text)
        return cls(
            [Done(*each) for each in data["acknowledged"]],
            Counter(data["refused"]),
            list(data["unexpected"]),
        )


class Writer(Protocol):
    """A writer process's target: (env, index, start barrier, result file)."""

    def __call__(self, env: BankEnv, index: int, start: Barrier, results: str) -> None:
        """Run one process's writer threads; write their outcomes to `results`."""


def write_mixed_load(env: BankEnv, index: int, start: Barrier, results: str) -> None:
    """One writer process: its own application, THREADS threads, a bounded run."""
    outcomes = Outcomes()
    try:
        with BankApplication(env=env) as app:
            for account_id in ACCOUNT_IDS:  # connect, and warm the cache
                app.get_balance(account_id)
            go = threading.Event()
            per_thread = [Outcomes() for _ in range(THREADS)]
            threads = [
                threading.Thread(
                    target=_write_commands,
                    args=(app, random.Random(SEED + index * THREADS + n), go, each),
                    daemon=True,
                )
                for n, each in enumerate(per_thread)
            ]
            for thread in threads:
                thread.start()
            start.wait(timeout=STARTUP_SECONDS)
            go.set()
            deadline = time.monotonic() + LOAD_SECONDS
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    outcomes.unexpected.append(f"{thread.name} of process {index} hung")
            for each in per_thread:
                outcomes.add(each)
    except BaseException:
        outcomes.unexpected.append(traceback.format_exc())
        raise
    finally:
        Path(results).write_text(outcomes.to_json())


def _write_commands(
    app: BankApplication, rng: random.Random, go: threading.Event, outcomes: Outcomes
) -> None:
    """One writer thread: COMMANDS_PER_THREAD commands on the shared accounts."""
    held: list[Done] = []  # holds this thread placed and has not settled
    if not go.wait(timeout=STARTUP_SECONDS):
        return  # the start was called off
    for _ in range(COMMANDS_PER_THREAD):
        kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
        if kind == "settle" and not held:
            kind = "deposit"
        try:
            done = _command(app, rng, kind, held)
        except InsufficientFundsError:
            outcomes.refused[kind] += 1
        except ConcurrencyError:  # a clean refusal too: lost every race, saved nothing
            outcomes.refused[f"{kind} (gave up)"] += 1
        except BankError as error:
            outcomes.unexpected.append(f"{kind}: {error.code}: {error}")
        except Exception as error:  # reported: the parent fails the test
            outcomes.unexpected.append(f"{kind}: {error!r}\n{traceback.format_exc()}")
        else:
            outcomes.acknowledged.append(done)
            if done.kind == "hold":
                held.append(done)


def _command(
    app: BankApplication, rng: random.Random, kind: str, held: list[Done]
) -> Done:
    """Run one command of this kind; what was done, if it was."""
    if kind == "settle":
        hold = held.pop(rng.randrange(len(held)))
        settled = "post" if rng.random() < 0.5 else "void"
        if settled == "post":
            app.post_transfer(hold.transfer_id)
        else:
            app.void_transfer(hold.transfer_id)
        return hold._replace(kind=settled)
    account_id, other = rng.sample(ACCOUNT_IDS, 2)
    amount = rng.randint(1, MAX_AMOUNT[kind])
    if kind == "deposit":
        app.deposit(account_id, amount)
        return Done(kind, account_id, "", amount, "")
    if kind == "withdraw":
        app.withdraw(account_id, amount)
        return Done(kind, account_id, "", amount, "")
    transfer_id = app.transfer(account_id, other, amount, pending=kind == "hold")
    return Done(kind, account_id, other, amount, transfer_id)


def project_continuously(env: BankEnv, stop: Event, results: str) -> None:
    """The projector: catch up, pause, again, until stopped; then once more."""
    report: dict[str, Any] = {"catch_ups": 0, "batches": 0, "applied": 0}

    def batch_applied(_: object) -> None:
        report["batches"] += 1

    try:
        with BankApplication(env=env) as app:
            projection = Ledger(app).projection
            while not stop.is_set():
                report["applied"] += projection.catch_up(
                    PROJECTOR_BATCH, progress=batch_applied
                )
                report["catch_ups"] += 1
                time.sleep(PROJECTOR_PAUSE_SECONDS)
            report["final"] = projection.catch_up(PROJECTOR_BATCH)
    except BaseException:
        report["error"] = traceback.format_exc()
        raise
    finally:
        Path(results).write_text(json.dumps(report))


@dataclass(frozen=True)
class Load:
    """What the writers and the projector reported, and how long the load took."""

    outcomes: Outcomes
    projector: dict[str, Any]
    seconds: float


def run_load(env: BankEnv, directory: Path, writer: Writer) -> Load:
    """Run the writer processes and the projector to the end; kill on overrun."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES + 1)
    stop = context.Event()
    projector_file = directory / "projector.json"
    writer_files = [directory / f"writer-{index}.json" for index in range(PROCESSES)]
    projector = context.Process(
        target=project_continuously,
        args=(env, stop, str(projector_file)),
        name="projector",
        daemon=True,
    )
    writers = [
        context.Process(
            target=writer,
            args=(env, index, start, str(path)),
            name=f"writer-{index}",
            daemon=True,
        )
        for index, path in enumerate(writer_files)
    ]
    everyone = [projector, *writers]
    try:
        for process in everyone:
            process.start()
        try:
            start.wait(timeout=STARTUP_SECONDS)
        except threading.BrokenBarrierError:
            codes = {process.name: process.exitcode for process in everyone}
            pytest.fail(f"the writers did not all start (exit codes {codes})")
        began = time.monotonic()
        _join(writers, LOAD_SECONDS)
        seconds = time.monotonic() - began
        stop.set()
        _join([projector], SHUTDOWN_SECONDS)
    finally:
        stop.set()
        for process in everyone:
            if process.pid is None:
                continue  # never started
            if process.is_alive():
                process.kill()
            process.join(timeout=SHUTDOWN_SECONDS)
    outcomes = Outcomes()
    for path in writer_files:
        outcomes.add(Outcomes.from_json(path.read_text()))
    return Load(outcomes, json.loads(projector_file.read_text()), seconds)


def _join(processes: Sequence[BaseProcess], seconds: float) -> None:
    """Wait for the processes to exit by themselves, cleanly, within the time."""
    deadline = time.monotonic() + seconds
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    overran = [process.name for process in processes if process.is_alive()]
    if overran:
        pytest.fail(f"{', '.join(overran)} still running after {seconds:.0f} s")
    failed = {process.name: process.exitcode for process in processes}
    assert all(code == 0 for code in failed.values()), f"exit codes {failed}"


# Commit delays on PostgreSQL.


@contextmanager
def delayed_commits(env: BankEnv, events_table: str) -> Iterator[Callable[[], int]]:
    """On PostgreSQL, delay every write's commit by a random few milliseconds.

    A write is handed its notification ids at its INSERT, and they become
    visible at its COMMIT. This trigger sleeps in between, for a random time,
    so that without the recorder's ordering (LOCK TABLE, which makes ids
    commit in the order they are handed out) writes whose ids came earlier
    would often commit later. A reader that keeps only the highest id it has
    read (as the projector's position does) would then be past an id still
    uncommitted, and skip that event for good. It is a real trigger on the
    events table of this test's own schema (conftest's postgres_env makes one
    per test), dropped afterwards. Yields a function that says how often it
    has fired. Nothing is injected on SQLite, whose writers hold the file's
    write lock from BEGIN IMMEDIATE to COMMIT.
    """
    if not env["SQLALCHEMY_URL"].startswith("postgresql"):
        yield lambda: 0
        return
    schema = env.get("SQLALCHEMY_SCHEMA")
    if not schema:
        pytest.fail("PostgreSQL tests here must run in a schema of their own")
    table = f"{schema}.{events_table}"
    counter = f"{schema}.{DELAY}_count"
    function = f"{schema}.{DELAY}"
    url = libpq_url(env["SQLALCHEMY_URL"])
    with psycopg.connect(url, autocommit=True) as db:
        if db.execute("SELECT to_regclass(%s) IS NULL", [table]).fetchone() != (False,):
            pytest.fail(f"no events table {table}")
        db.execute(f"CREATE SEQUENCE {counter}")
        db.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN PERFORM nextval('{counter}'); "
            f"PERFORM pg_sleep(random() * {MAX_COMMIT_DELAY_SECONDS}); "
            "RETURN NULL; END $$"
        )
        db.execute(
            f"CREATE TRIGGER {DELAY} AFTER INSERT ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )

        def fired() -> int:
            row = db.execute(f"SELECT last_value, is_called FROM {counter}").fetchone()
            assert row is not None
            return int(row[0]) if row[1] else 0

        try:
            yield fired
        finally:
            db.execute(f"DROP TRIGGER IF EXISTS {DELAY} ON {table}")
            db.execute(f"DROP FUNCTION IF EXISTS {function}()")
            db.execute(f"DROP SEQUENCE IF EXISTS {counter}")


# The proof.


def open_funded_accounts(app: BankApplication) -> None:
    """Open the shared accounts, set their limits and fund them."""
    for account_id, (funding, limit) in ACCOUNTS.items():
        app.open_account("write-path@example.com", account_id)
        if limit:
            app.set_overdraft_limit(account_id, limit)
        if funding:
            app.deposit(account_id, funding)


def prove_the_write_path(
    env: BankEnv, directory: Path, writer: Writer = write_mixed_load
) -> Load:
    """Set up, run the load with commit delays, and check everything afterwards."""
    with BankApplication(env=env) as app:
        open_funded_accounts(app)
        Ledger(app)  # the read-model tables, made before the race
        events_table = f"{app.name.lower()}_events"
    with delayed_commits(env, events_table) as delays:
        load = run_load(env, directory, writer)
        delays_fired = delays()
    outcomes = load.outcomes
    assert outcomes.unexpected == []
    assert len(outcomes.acknowledged) + sum(outcomes.refused.values()) == (
        PROCESSES * THREADS * COMMANDS_PER_THREAD
    )
    assert outcomes.refused["withdraw"] > 0, "some withdrawals should be refused"
    kinds = Counter(done.kind for done in outcomes.acknowledged)
    assert set(kinds) == {"deposit", "withdraw", "transfer", "hold", "post", "void"}
    if env["SQLALCHEMY_URL"].startswith("postgresql"):
        assert delays_fired > 0, "the commit delays should have been injected"
    assert "error" not in load.projector, load.projector["error"]
    assert load.projector["batches"] >= 10, "the projector should have been live"
    with BankApplication(env=env) as app:
        _assert_every_view_equals_its_replay(app, load)
    return load


def _assert_every_view_equals_its_replay(app: BankApplication, load: Load) -> None:
    """The read models, the audit and the money, each against the events."""
    ledger = Ledger(app)
    projection = ledger.projection
    histories = {account_id: app.get_history(account_id) for account_id in ACCOUNTS}

    # Every account event has exactly one statement line, and no line more.
    events = {
        (account_id, event.originator_version)
        for account_id, history in histories.items()
        for event in history
    }
    lines_table = projection.statement_lines
    with projection.engine.connect() as db:
        lines = db.execute(
            select(lines_table.c.account_id, lines_table.c.version)
        ).all()
    counted = Counter((account_id, version) for account_id, version in lines)
    assert [key for key, times in counted.items() if times > 1] == []
    missing = sorted(events - set(counted))
    assert missing == [], f"{len(missing)} events have no statement line: {missing}"
    assert sorted(set(counted) - events) == []

    # Each account's view equals the account replayed from its events alone.
    expected = _expected_from(load.outcomes.acknowledged)
    for account_id, (_, limit) in ACCOUNTS.items():
        history = histories[account_id]
        replayed = project_account(None, history)
        assert replayed is not None
        state = AccountState.of(replayed)
        assert [event.originator_version for event in history] == list(
            range(1, state.version + 1)
        )
        assert AccountState.of(app.load_account(account_id)) == state  # snapshots
        view = ledger.account_view(account_id)
        assert view is not None
        assert _state_of_view(view) == state
        assert sum(key[0] == account_id for key in counted) == state.version
        assert (
            state.balance_in_cents,
            state.pending_debits_in_cents,
            state.pending_credits_in_cents,
        ) == expected[account_id], account_id
        _assert_never_below_the_limit(history, limit)
        assert state.balance_in_cents >= -limit

    # Every acknowledged transfer and hold was recorded.
    transfer_ids = {
        done.transfer_id
        for done in load.outcomes.acknowledged
        if done.kind in ("transfer", "hold")
    }
    for transfer_id in transfer_ids:
        app.load_transfer(transfer_id)

    # `bank audit` passes, and the money adds up to what the writers were told.
    report = audit(app, ledger)
    by_check = Counter(violation.check for violation in report.violations)
    assert report.violations == [], (
        f"audit violations by check: {dict(by_check)}; the first: "
        + "; ".join(violation.message for violation in report.violations[:5])
    )
    assert [check.name for check in report.checks if not check.passed] == []
    funding = sum(funding for funding, _ in ACCOUNTS.values())
    deposited = funding + sum(
        done.amount for done in load.outcomes.acknowledged if done.kind == "deposit"
    )
    withdrawn = sum(
        done.amount for done in load.outcomes.acknowledged if done.kind == "withdraw"
    )
    assert (report.total_deposits_in_cents, report.total_withdrawals_in_cents) == (
        deposited,
        withdrawn,
    )
    balances = sum(expected[account_id][0] for account_id in ACCOUNTS)
    assert report.total_balance_in_cents == balances == deposited - withdrawn
    assert report.events == len(events)
    assert report.transfers == len(transfer_ids)  # and no other


def _expected_from(acknowledged: Sequence[Done]) -> dict[str, tuple[int, int, int]]:
    """Each account's (balance, pending debits, pending credits) by the writers."""
    balances = {account_id: funding for account_id, (funding, _) in ACCOUNTS.items()}
    for done in acknowledged:
        for account_id, change in done.effects().items():
            balances[account_id] += change
    settled = {
        done.transfer_id for done in acknowledged if done.kind in ("post", "void")
    }
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for done in acknowledged:
        if done.kind == "hold" and done.transfer_id not in settled:
            debits[done.account_id] += done.amount
            credits[done.other] += done.amount
    return {
        account_id: (balances[account_id], debits[account_id], credits[account_id])
        for account_id in ACCOUNTS
    }


def _state_of_view(view: dict[str, Any]) -> AccountState:
    """An accounts view row as the AccountState it says."""
    return AccountState(
        view["account_id"],
        view["owner_email"],
        view["balance_in_cents"],
        view["overdraft_limit_in_cents"],
        bool(view["closed"]),
        view["version"],
        view["currency"],
        view["pending_debits_in_cents"],
        view["pending_credits_in_cents"],
    )


def _assert_never_below_the_limit(history: Sequence[Account.Event], limit: int) -> None:
    """Replayed event by event, the balance is never below minus the limit."""
    account: Account | None = None
    for event in history:
        account = event.mutate(account)
        assert account is not None
        assert account.balance_in_cents >= -limit, (
            account.account_id,
            account.version,
            account.balance_in_cents,
        )


def test_four_processes_of_sixteen_writers_with_a_live_projector_leave_every_view_equal_to_its_replay(  # noqa: E501
    db_env: BankEnv, tmp_path: Path
) -> None:
    """Every view equals its replay, every event has one line, the audit passes."""
    load = prove_the_write_path(db_env, tmp_path)

    outcomes, projector = load.outcomes, load.projector
    print(
        f"\nwrite path on {db_env['SQLALCHEMY_URL'].split(':')[0]}: "
        f"{len(outcomes.acknowledged)} commands acknowledged, "
        f"{sum(outcomes.refused.values())} refused, in {load.seconds:.1f} s; "
        f"{dict(outcomes.refused)}; the projector applied {projector['applied']} "
        f"events live in {projector['batches']} batches, then {projector['final']}"
    )
