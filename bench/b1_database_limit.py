"""B1: sequential deposits on one account against the database's own insert rate."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
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
    bank_env,
    libpq_url,
    postgres_schema,
    postgres_unreachable_reason,
    sqlite_synchronous,
    sqlite_url,
    synchronous_name,
)

if TYPE_CHECKING:
    from bench.sizes import Sizes

TARGET_RATIO = 0.5
# A row like one of the bank's Deposited events: its topic and a state blob of
# about the same size (the bank's own are ~100-170 bytes).
EVENT_TOPIC = "bank.domain:Account.Deposited"
EVENT_STATE = os.urandom(150)


def run(sizes: Sizes) -> list[Row]:
    """Deposits/s on SQLite and PostgreSQL, each against a raw insert loop."""
    return [*sqlite_rows(sizes.b1_commands), *postgres_rows(sizes.b1_commands)]


def sqlite_rows(count: int) -> list[Row]:
    """B1a: the bank on a SQLite file against plain sqlite3 on another file."""
    with tempfile.TemporaryDirectory(prefix="bench-b1-") as directory:
        app = BankApplication(
            env=bank_env(SQLALCHEMY_URL=sqlite_url(Path(directory) / "bank.db"))
        )
        try:
            deposits = deposits_per_second(app, count)
            probed = sqlite_synchronous(app)
        finally:
            app.close()
        synchronous = SQLITE_DEFAULT_SYNCHRONOUS if probed is None else probed
        raw = raw_sqlite_inserts_per_second(
            Path(directory) / "raw.db", count, synchronous
        )
    how = (
        "the app's" if probed is not None else "SQLite's default; the app's unreadable"
    )
    ratio = deposits / raw
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
            "SQLite: deposits/s ÷ raw inserts/s",
            ratio_text(ratio),
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
    ]


def postgres_rows(count: int) -> list[Row]:
    """B1b: the bank on PostgreSQL against a plain psycopg loop; skipped if down."""
    reason = postgres_unreachable_reason()
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
            env=bank_env(SQLALCHEMY_URL=POSTGRES_URL, SQLALCHEMY_SCHEMA=schema)
        )
        try:
            deposits = deposits_per_second(app, count)
        finally:
            app.close()
        raw, synchronous_commit = raw_postgres_inserts_per_second(schema, count)
    ratio = deposits / raw
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
            "PostgreSQL: deposits/s ÷ raw inserts/s",
            ratio_text(ratio),
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
    ]


def deposits_per_second(app: BankApplication, count: int) -> float:
    """Open one account, then time `count` deposits of 1 cent into it."""
    account_id = app.open_account("b1@example.com")
    start = perf_counter()
    for _ in range(count):
        app.deposit(account_id, 1)
    elapsed = perf_counter() - start
    balance = app.get_balance(account_id)
    if balance != count:
        raise AssertionError(f"balance {balance} after {count} deposits of 1 cent")
    return per_second(count, elapsed)


def raw_sqlite_inserts_per_second(path: Path, count: int, synchronous: int) -> float:
    """Time `count` one-row transactions into an events-like table with sqlite3."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, originator_id BLOB NOT NULL,"
            " originator_version INTEGER NOT NULL, topic TEXT NOT NULL,"
            " state BLOB NOT NULL)"
        )
        connection.execute(
            "CREATE UNIQUE INDEX events_aggregate ON events"
            " (originator_id, originator_version)"
        )
        originator_id = uuid.uuid4().bytes
        insert = (
            "INSERT INTO events (originator_id, originator_version, topic, state)"
            " VALUES (?, ?, ?, ?)"
        )
        start = perf_counter()
        for version in range(1, count + 1):
            connection.execute("BEGIN")
            connection.execute(
                insert, (originator_id, version, EVENT_TOPIC, EVENT_STATE)
            )
            connection.execute("COMMIT")
        return per_second(count, perf_counter() - start)
    finally:
        connection.close()


def raw_postgres_inserts_per_second(schema: str, count: int) -> tuple[float, str]:
    """Time `count` one-row transactions with psycopg; also say synchronous_commit."""
    with psycopg.connect(libpq_url(POSTGRES_URL)) as connection:
        synchronous_commit = connection.execute("SHOW synchronous_commit").fetchone()
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
        connection.commit()
        originator_id = uuid.uuid4()
        insert = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state)"
            " VALUES (%s, %s, %s, %s)"
        ).format(table)
        start = perf_counter()
        for version in range(1, count + 1):
            connection.execute(
                insert, (originator_id, version, EVENT_TOPIC, EVENT_STATE)
            )
            connection.commit()
        rate = per_second(count, perf_counter() - start)
    return rate, str(synchronous_commit[0]) if synchronous_commit else "unknown"
