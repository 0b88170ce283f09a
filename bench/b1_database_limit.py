"""B1: sequential deposits on one account against the database's own insert rate."""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from bank import BankApplication
from bench.measure import per_second, rate_text, ratio_text
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
ROUNDS = 5
# A row like one of the bank's Deposited events: its topic and a state blob of
# about the same size (the bank's own are ~100-170 bytes).
EVENT_TOPIC = "bank.domain:Account.Deposited"
EVENT_STATE = os.urandom(150)


def run(sizes: Sizes) -> list[Row]:
    """Deposits/s on SQLite and PostgreSQL, each against a raw insert loop."""
    return [*sqlite_rows(sizes.b1_commands), *postgres_rows(sizes.b1_commands)]


@dataclass
class Race:
    """Two loops timed in alternating rounds, so drift in the machine hits both."""

    bank_seconds: list[float] = field(default_factory=list)
    raw_seconds: list[float] = field(default_factory=list)

    def run(
        self,
        count: int,
        bank_loop: Callable[[int], float],
        raw_loop: Callable[[int], float],
    ) -> Race:
        """Time `count` operations of each, in ROUNDS alternating rounds."""
        per_round = max(1, count // ROUNDS)
        for _ in range(ROUNDS):
            self.bank_seconds.append(bank_loop(per_round))
            self.raw_seconds.append(raw_loop(per_round))
        self.per_round = per_round
        return self

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
    how = (
        "the app's" if probed is not None else "SQLite's default; the app's unreadable"
    )
    return [
        Row("B1a", f"SQLite: {count:,} deposits on one account", rate_text(deposits)),
        Row(
            "B1a",
            f"SQLite: raw sqlite3 inserts, WAL, one row per transaction, "
            f"synchronous={synchronous_name(synchronous)} ({how})",
            rate_text(raw),
        ),
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
    return [
        Row(
            "B1b", f"PostgreSQL: {count:,} deposits on one account", rate_text(deposits)
        ),
        Row(
            "B1b",
            f"PostgreSQL: raw psycopg INSERT + COMMIT, one row per transaction, "
            f"synchronous_commit={synchronous_commit}",
            rate_text(raw),
        ),
        judged(
            "B1b",
            "PostgreSQL: deposits/s ÷ raw inserts/s "
            f"(median of {ROUNDS} alternating rounds)",
            ratio_text(ratio),
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
    ]


def deposit_loop(app: BankApplication) -> Callable[[int], float]:
    """Open one account; return a loop timing n deposits of 1 cent into it."""
    account_id = app.open_account("b1@example.com")
    deposited = 0

    def deposits(n: int) -> float:
        nonlocal deposited
        start = perf_counter()
        for _ in range(n):
            app.deposit(account_id, 1)
        elapsed = perf_counter() - start
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

    def __call__(self, n: int) -> float:
        """Time n one-row transactions."""
        insert = INSERT.format("events", p="?")
        start = perf_counter()
        for _ in range(n):
            self.version += 1
            self.connection.execute("BEGIN")
            self.connection.execute(
                insert, (self.originator_id, self.version, EVENT_TOPIC, EVENT_STATE)
            )
            self.connection.execute("COMMIT")
        return perf_counter() - start


class RawPostgres:
    """One-row transactions into an events-like table with plain psycopg."""

    def __init__(self, schema: str) -> None:
        self.connection = psycopg.connect(libpq_url(POSTGRES_URL))
        shown = self.connection.execute("SHOW synchronous_commit").fetchone()
        self.synchronous_commit = str(shown[0]) if shown else "unknown"
        self.table = sql.Identifier(schema, "events")
        self.connection.execute(
            sql.SQL(
                "CREATE TABLE {} (id BIGSERIAL PRIMARY KEY,"
                " originator_id UUID NOT NULL, originator_version BIGINT NOT NULL,"
                " topic TEXT NOT NULL, state BYTEA NOT NULL)"
            ).format(self.table)
        )
        self.connection.execute(
            sql.SQL(
                "CREATE UNIQUE INDEX events_aggregate ON {}"
                " (originator_id, originator_version)"
            ).format(self.table)
        )
        self.connection.commit()
        self.originator_id = uuid.uuid4()
        self.version = 0

    def __enter__(self) -> RawPostgres:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def __call__(self, n: int) -> float:
        """Time n one-row transactions."""
        insert = sql.SQL(INSERT.format("{}", p="%s")).format(self.table)
        start = perf_counter()
        for _ in range(n):
            self.version += 1
            self.connection.execute(
                insert, (self.originator_id, self.version, EVENT_TOPIC, EVENT_STATE)
            )
            self.connection.commit()
        return perf_counter() - start
