"""B6: N processes depositing on PostgreSQL against N raw insert loops, N = 1, 4, 16.

Each process has a BankApplication of its own on one shared, fresh schema and
deposits 1 cent at a time into its own account; the raw loops insert one row
per transaction into a table shaped like the events table, taking no lock.
All N processes of a run start together (a barrier) and run for the same time;
the two kinds of run alternate, in rounds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import statistics
import threading
import uuid
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Protocol

import psycopg
from psycopg import sql

from bank import BankApplication
from bench.b1_database_limit import (
    EVENT_STATE,
    EVENT_TOPIC,
    INSERT,
    create_postgres_events_table,
)
from bench.measure import rate_text, ratio_text
from bench.report import Row, judged
from bench.stores import POSTGRES_URL, postgres_schema
from web.testing import libpq_url, postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from bench.sizes import Sizes

PROCESS_COUNTS = (1, 4, 16)
TARGET_RAW_RATIO = 0.5
TARGET_SPEED_UP = 2.0
# Deposits (or inserts) each process makes before the start: connections open,
# account cached, statements prepared.
WARM_UP = 5
STARTUP_SECONDS = 60.0
JOIN_SECONDS = 10.0


def run(sizes: Sizes) -> list[Row]:
    """Total deposits/s and raw inserts/s at each N; the ratios at N=16."""
    reason = postgres_unreachable_reason(POSTGRES_URL)
    if reason is not None:
        return [
            Row(
                "B6",
                f"PostgreSQL scale-out: deposits/s at N=16 ÷ raw inserts/s and "
                f"÷ deposits/s at N=1; skipped: {reason}",
                "-",
                f"≥ {TARGET_RAW_RATIO}; ≥ {TARGET_SPEED_UP:.0f}x",
                "SKIP",
            )
        ]
    seconds, rounds = sizes.b6_seconds, sizes.b6_rounds
    per_round = seconds / rounds
    ours: dict[int, float] = {}
    raw: dict[int, float] = {}
    for n in PROCESS_COUNTS:
        with postgres_schema() as schema:
            create_tables(schema)
            # Alternating rounds, so drift in the machine hits both loops.
            ours_rates, raw_rates = [], []
            for _ in range(rounds):
                ours_rates.append(run_processes(n, "deposits", schema, per_round))
                raw_rates.append(run_processes(n, "raw", schema, per_round))
        ours[n] = statistics.mean(ours_rates)
        raw[n] = statistics.mean(raw_rates)
    return rows(ours, raw, seconds, rounds)


def rows(
    ours: dict[int, float], raw: dict[int, float], seconds: float, rounds: int
) -> list[Row]:
    """Per N: both rates and their ratio; then how each scaled from 1 to the most."""
    result: list[Row] = []
    least, most = PROCESS_COUNTS[0], PROCESS_COUNTS[-1]
    timing = f"{seconds:g} s each, in {rounds} alternating round(s)"
    for n in PROCESS_COUNTS:
        result.append(
            Row(
                "B6",
                f"PostgreSQL, N={n}: total deposits/s, each process its own "
                f"BankApplication and account ({timing})",
                rate_text(ours[n]),
            )
        )
        result.append(
            Row(
                "B6",
                f"PostgreSQL, N={n}: total raw inserts/s, psycopg "
                f"BEGIN; INSERT; COMMIT in one message, one row each, no lock",
                rate_text(raw[n]),
            )
        )
        ratio = ours[n] / raw[n]
        figure = f"N={n}: deposits/s ÷ raw inserts/s"
        if n == most:
            result.append(
                judged(
                    "B6",
                    figure,
                    ratio_text(ratio),
                    f"≥ {TARGET_RAW_RATIO}",
                    ratio >= TARGET_RAW_RATIO,
                )
            )
        else:
            result.append(Row("B6", figure, ratio_text(ratio)))
    speed_up = ours[most] / ours[least]
    result.append(
        judged(
            "B6",
            f"deposits/s at N={most} ÷ at N={least}",
            f"{speed_up:.2f}x",
            f"≥ {TARGET_SPEED_UP:.0f}x",
            speed_up >= TARGET_SPEED_UP,
        )
    )
    result.append(
        Row(
            "B6",
            f"raw inserts/s at N={most} ÷ at N={least} (what the server and "
            f"machine allow)",
            f"{raw[most] / raw[least]:.2f}x",
        )
    )
    return result


def create_tables(schema: str) -> None:
    """The bank's tables and the raw table, made before any process starts."""
    BankApplication(env=bank_env(schema)).close()
    with psycopg.connect(libpq_url(POSTGRES_URL)) as connection:
        create_postgres_events_table(connection, schema)


def bank_env(schema: str) -> dict[str, str]:
    """A BankApplication's settings: the default event store, on the schema."""
    return {"SQLALCHEMY_URL": POSTGRES_URL, "SQLALCHEMY_SCHEMA": schema}


@dataclass(frozen=True)
class Outcome:
    """What one process did after the start, or why it failed."""

    index: int
    count: int = 0
    seconds: float = 0.0
    error: str | None = None


def run_processes(n: int, loop_name: str, schema: str, seconds: float) -> float:
    """Start n processes running the loop together; their summed rates."""
    # Forked from a server that has imported this module: fast to start, and
    # free of whatever the benchmark process holds (connections, threads).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    barrier = context.Barrier(n + 1)
    outcomes: Queue[Outcome] = context.Queue()
    processes = [
        context.Process(
            target=work,
            args=(loop_name, schema, index, seconds, barrier, outcomes),
            name=f"b6-{loop_name}-{index}",
            daemon=True,
        )
        for index in range(n)
    ]
    for process in processes:
        process.start()
    try:
        # Broken when a process failed to start: its outcome says why.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(STARTUP_SECONDS)
        reported = [outcomes.get(timeout=STARTUP_SECONDS + seconds) for _ in processes]
    except queue.Empty:
        exits = [process.exitcode for process in processes]
        raise RuntimeError(
            f"B6 {loop_name}: a process ended without reporting; exit codes {exits}"
        ) from None
    finally:
        for process in processes:
            process.join(JOIN_SECONDS)
            if process.is_alive():
                process.kill()
                process.join(JOIN_SECONDS)
    errors = [o.error for o in reported if o.error is not None]
    if errors:
        raise RuntimeError(
            f"B6 {loop_name}: {len(errors)} process(es) failed: {errors[:3]}"
        )
    return sum(o.count / o.seconds for o in reported)


class Loop(Protocol):
    """One process's work: one operation at a time, checked at the end."""

    def step(self) -> None:
        """One deposit, or one insert."""

    def check(self, count: int) -> None:
        """Raise unless exactly `count` operations were stored."""

    def close(self) -> None:
        """Let go of the database."""


class DepositLoop:
    """A BankApplication of its own, depositing 1 cent into its own account."""

    def __init__(self, schema: str, index: int) -> None:
        self.app = BankApplication(env=bank_env(schema))
        try:
            self.account_id = self.app.open_account(f"b6-{index}@example.com")
        except BaseException:
            self.app.close()
            raise

    def step(self) -> None:
        """One deposit."""
        self.app.deposit(self.account_id, 1)

    def check(self, count: int) -> None:
        """The balance is the number of deposits."""
        balance = self.app.get_balance(self.account_id)
        if balance != count:
            raise AssertionError(f"balance {balance} after {count} deposits")

    def close(self) -> None:
        """Close the application."""
        self.app.close()


class RawInsertLoop:
    """Plain psycopg: one events-like row per transaction, in one message, no lock."""

    def __init__(self, schema: str, _index: int) -> None:
        self.connection = psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True)
        # Client-side binding, as the bank's own writes do: one message holds
        # several statements only without separate parameters.
        self.cursor = psycopg.ClientCursor(self.connection)
        self.table = sql.Identifier(schema, "events")
        insert = sql.SQL(INSERT.format("{}", p="%s")).format(self.table)
        self.statement = sql.SQL("BEGIN; {}; COMMIT").format(insert)
        self.originator_id = uuid.uuid4()
        self.version = 0

    def step(self) -> None:
        """One insert."""
        self.version += 1
        self.cursor.execute(
            self.statement,
            (self.originator_id, self.version, EVENT_TOPIC, EVENT_STATE),
        )

    def check(self, count: int) -> None:
        """This process's rows are all there."""
        stored = self.connection.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE originator_id = %s").format(
                self.table
            ),
            (self.originator_id,),
        ).fetchone()
        if stored is None or stored[0] != count:
            raise AssertionError(f"{stored} rows stored after {count} inserts")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


LOOPS: dict[str, Callable[[str, int], Loop]] = {
    "deposits": DepositLoop,
    "raw": RawInsertLoop,
}


def work(
    loop_name: str,
    schema: str,
    index: int,
    seconds: float,
    barrier: Barrier,
    outcomes: Queue[Outcome],
) -> None:
    """In a process of its own: warm up, wait for the start, loop for `seconds`."""
    try:
        loop: Loop = LOOPS[loop_name](schema, index)
        try:
            for _ in range(WARM_UP):
                loop.step()
            barrier.wait(STARTUP_SECONDS)
            count = 0
            start = perf_counter()
            deadline = start + seconds
            while perf_counter() < deadline:
                loop.step()
                count += 1
            elapsed = perf_counter() - start
            loop.check(WARM_UP + count)
        finally:
            loop.close()
    except BaseException as error:
        barrier.abort()
        message = f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]
        outcomes.put(Outcome(index, error=message))
        return
    outcomes.put(Outcome(index, count, elapsed))
