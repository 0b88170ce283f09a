"""B1: sequential deposits on one account against the database's own insert rate."""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter, process_time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from bank import BankApplication
from bench.measure import per_second, rate_text, ratio_text, us_text
from bench.report import Row, judged
from bench.stores import (
    POSTGRES_URL,
    SQLITE_DEFAULT_SYNCHRONOUS,
    postgres_schema,
    sqlite_synchronous,
    sqlite_url,
    synchronous_name,
)
from web.testing import libpq_url, postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.sizes import Sizes

TARGET_RATIO = 0.5
TARGET_CPU_SECONDS = 150e-6
ROUNDS = 5
# A row like one of the bank's Deposited events: its topic and a state blob of
# about the same size (the bank's own are ~100-170 bytes).
EVENT_TOPIC = "bank.domain:Account.Deposited"
EVENT_STATE = os.urandom(150)


def run(sizes: Sizes) -> list[Row]:
    """Deposits/s on SQLite and PostgreSQL, each against a raw insert loop."""
    return [*sqlite_rows(sizes.b1_commands), *postgres_rows(sizes.b1_commands)]


@dataclass(frozen=True)
class Timing:
    """One loop's wall-clock time and this process's CPU time over it (seconds)."""

    seconds: float
    cpu_seconds: float


class Stopwatch:
    """Wall-clock and process CPU time from its start (all threads, user + system)."""

    def __init__(self) -> None:
        self.start = perf_counter()
        self.cpu_start = process_time()

    def stop(self) -> Timing:
        """The times since the start."""
        return Timing(perf_counter() - self.start, process_time() - self.cpu_start)


@dataclass
class Race:
    """Two loops timed in alternating rounds, so drift in the machine hits both."""

    bank_seconds: list[float] = field(default_factory=list)
    raw_seconds: list[float] = field(default_factory=list)
    bank_cpu_seconds: list[float] = field(default_factory=list)
    raw_cpu_seconds: list[float] = field(default_factory=list)

    def run(
        self,
        count: int,
        bank_loop: Callable[[int], Timing],
        raw_loop: Callable[[int], Timing],
    ) -> Race:
        """Time `count` operations of each, in ROUNDS alternating rounds."""
        per_round = max(1, count // ROUNDS)
        for _ in range(ROUNDS):
            bank = bank_loop(per_round)
            raw = raw_loop(per_round)
            self.bank_seconds.append(bank.seconds)
            self.bank_cpu_seconds.append(bank.cpu_seconds)
            self.raw_seconds.append(raw.seconds)
            self.raw_cpu_seconds.append(raw.cpu_seconds)
        self.per_round = per_round
        return self

    def cpu_per_operation(self) -> tuple[float, float]:
        """Process CPU seconds per deposit and per raw insert, over all rounds."""
        total = self.per_round * len(self.bank_seconds)
        return sum(self.bank_cpu_seconds) / total, sum(self.raw_cpu_seconds) / total

    def rates(self) -> tuple[float, float, float]:
        """Bank ops/s, raw ops/s (over all rounds), and the median round's ratio."""
        total = self.per_round * len(self.bank_seconds)
        ratios = [
            r / b for b, r in zip(self.bank_seconds, self.raw_seconds, strict=True)
        ]
        return (
            per_second(total, sum(self.bank_seconds)),
            per_second(total, sum(self.raw_seconds)),
            statistics.median(ratios),
        )


def sqlite_rows(count: int) -> list[Row]:
    """B1a: the bank on a SQLite file against plain sqlite3 on another file."""
    with tempfile.TemporaryDirectory(prefix="bench-b1-") as directory:
        app = BankApplication(
            env={"SQLALCHEMY_URL": sqlite_url(Path(directory) / "bank.db")}
        )
        try:
            probed = sqlite_synchronous(app)
            synchronous = SQLITE_DEFAULT_SYNCHRONOUS if probed is None else probed
            with RawSqlite(Path(directory) / "raw.db", synchronous) as raw_loop:
                race = Race().run(count, deposit_loop(app), raw_loop)
        finally:
            app.close()
    deposits, raw, ratio = race.rates()
    bank_cpu_row, raw_cpu_row = cpu_rows(
        "B1a", "SQLite", race, "app + library + driver + SQLite's engine", "sqlite3"
    )
    how = (
        "the app's" if probed is not None else "SQLite's default; the app's unreadable"
    )
    return [
        Row("B1a", f"SQLite: {count:,} deposits on one account", rate_text(deposits)),
        bank_cpu_row,
        Row(
            "B1a",
            f"SQLite: raw sqlite3 inserts, WAL, one row per transaction, "
            f"synchronous={synchronous_name(synchronous)} ({how})",
            rate_text(raw),
        ),
        raw_cpu_row,
        judged(
            "B1a",
            "SQLite: deposits/s ÷ raw inserts/s "
            f"(median of {ROUNDS} alternating rounds)",
            ratio_text(ratio),
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
    ]


def postgres_rows(count: int) -> list[Row]:
    """B1b: the bank on PostgreSQL against a plain psycopg loop; skipped if down."""
    reason = postgres_unreachable_reason(POSTGRES_URL)
    if reason is not None:
        return [
            Row(
                "B1b",
                f"PostgreSQL: deposits/s ÷ raw inserts/s; skipped: {reason}",
                "-",
                f"≥ {TARGET_RATIO}",
                "SKIP",
            )
        ]
    with postgres_schema() as schema:
        app = BankApplication(
            env={"SQLALCHEMY_URL": POSTGRES_URL, "SQLALCHEMY_SCHEMA": schema}
        )
        try:
            with RawPostgres(schema) as raw_loop:
                race = Race().run(count, deposit_loop(app), raw_loop)
                synchronous_commit = raw_loop.synchronous_commit
        finally:
            app.close()
    deposits, raw, ratio = race.rates()
    bank_cpu_row, raw_cpu_row = cpu_rows(
        "B1b", "PostgreSQL", race, "app + library + driver", "psycopg"
    )
    return [
        Row(
            "B1b", f"PostgreSQL: {count:,} deposits on one account", rate_text(deposits)
        ),
        bank_cpu_row,
        Row(
            "B1b",
            f"PostgreSQL: raw psycopg INSERT + COMMIT, one row per transaction, "
            f"synchronous_commit={synchronous_commit}",
            rate_text(raw),
        ),
        raw_cpu_row,
        judged(
            "B1b",
            "PostgreSQL: deposits/s ÷ raw inserts/s "
            f"(median of {ROUNDS} alternating rounds)",
            ratio_text(ratio),
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
    ]


def cpu_rows(
    row_id: str, database: str, race: Race, what: str, driver: str
) -> tuple[Row, Row]:
    """Process CPU time per deposit, held to its target; the raw loop's alongside."""
    bank_cpu, raw_cpu = race.cpu_per_operation()
    return (
        judged(
            row_id,
            f"{database}: CPU per deposit (ours, in-process: {what}; "
            f"process_time over the deposit loop)",
            us_text(bank_cpu),
            f"≤ {us_text(TARGET_CPU_SECONDS)}",
            bank_cpu <= TARGET_CPU_SECONDS,
        ),
        Row(
            row_id,
            f"{database}: CPU per raw insert (raw {driver} loop, same measure)",
            us_text(raw_cpu),
        ),
    )


def deposit_loop(app: BankApplication) -> Callable[[int], Timing]:
    """Open one account; return a loop timing n deposits of 1 cent into it."""
    account_id = app.open_account("b1@example.com")
    deposited = 0

    def deposits(n: int) -> Timing:
        nonlocal deposited
        stopwatch = Stopwatch()
        for _ in range(n):
            app.deposit(account_id, 1)
        elapsed = stopwatch.stop()
        deposited += n
        balance = app.get_balance(account_id)
        if balance != deposited:
            raise AssertionError(f"balance {balance} after {deposited} deposits")
        return elapsed

    return deposits


INSERT = (
    "INSERT INTO {} (originator_id, originator_version, topic, state)"
    " VALUES ({p}, {p}, {p}, {p})"
)


class RawSqlite:
    """One-row transactions into an events-like table with plain sqlite3."""

    def __init__(self, path: Path, synchronous: int) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(f"PRAGMA synchronous={synchronous}")
        self.connection.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, originator_id BLOB NOT NULL,"
            " originator_version INTEGER NOT NULL, topic TEXT NOT NULL,"
            " state BLOB NOT NULL)"
        )
        self.connection.execute(
            "CREATE UNIQUE INDEX events_aggregate ON events"
            " (originator_id, originator_version)"
        )
        self.originator_id = uuid.uuid4().bytes
        self.version = 0

    def __enter__(self) -> RawSqlite:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def __call__(self, n: int) -> Timing:
        """Time n one-row transactions."""
        insert = INSERT.format("events", p="?")
        stopwatch = Stopwatch()
        for _ in range(n):
            self.version += 1
            self.connection.execute("BEGIN")
            self.connection.execute(
                insert, (self.originator_id, self.version, EVENT_TOPIC, EVENT_STATE)
            )
            self.connection.execute("COMMIT")
        return stopwatch.stop()


def create_postgres_events_table(
    connection: psycopg.Connection[Any], schema: str
) -> sql.Identifier:
    """A table in the schema shaped like the bank's events table; its name."""
    table = sql.Identifier(schema, "events")
    connection.execute(
        sql.SQL(
            "CREATE TABLE {} (id BIGSERIAL PRIMARY KEY,"
            " originator_id UUID NOT NULL, originator_version BIGINT NOT NULL,"
            " topic TEXT NOT NULL, state BYTEA NOT NULL)"
        ).format(table)
    )
    connection.execute(
        sql.SQL(
            "CREATE UNIQUE INDEX events_aggregate ON {}"
            " (originator_id, originator_version)"
        ).format(table)
    )
    return table


class RawPostgres:
    """One-row transactions into an events-like table with plain psycopg."""

    def __init__(self, schema: str) -> None:
        self.connection = psycopg.connect(libpq_url(POSTGRES_URL))
        shown = self.connection.execute("SHOW synchronous_commit").fetchone()
        self.synchronous_commit = str(shown[0]) if shown else "unknown"
        self.table = create_postgres_events_table(self.connection, schema)
        self.connection.commit()
        self.originator_id = uuid.uuid4()
        self.version = 0

    def __enter__(self) -> RawPostgres:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def __call__(self, n: int) -> Timing:
        """Time n one-row transactions."""
        insert = sql.SQL(INSERT.format("{}", p="%s")).format(self.table)
        stopwatch = Stopwatch()
        for _ in range(n):
            self.version += 1
            self.connection.execute(
                insert, (self.originator_id, self.version, EVENT_TOPIC, EVENT_STATE)
            )
            self.connection.commit()
        return stopwatch.stop()
