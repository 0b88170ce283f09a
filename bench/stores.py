"""The databases the benchmarks write to: fresh SQLite files and PostgreSQL schemas."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text

from web.testing import libpq_url

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from bank import BankApplication

POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
SQLITE_DEFAULT_SYNCHRONOUS = 2  # FULL, unless SQLite was compiled otherwise


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
            )


def sqlite_synchronous(app: BankApplication) -> int | None:
    """PRAGMA synchronous as the app's own SQLite connections have it, if reachable."""
    # Whatever the persistence module, look for an SQLAlchemy engine or a
    # sqlite3 connection on its recorder or the recorder's datastore.
    holders = [
        app.recorder,
        getattr(app.recorder, "datastore", None),
        getattr(app.recorder, "database", None),
    ]
    for holder in holders:
        for handle in vars(holder).values() if holder is not None else ():
            if isinstance(handle, Engine) and handle.dialect.name == "sqlite":
                with handle.connect() as connection:
                    value = connection.execute(text("PRAGMA synchronous")).scalar_one()
                return int(value)
            if isinstance(handle, sqlite3.Connection):
                return int(handle.execute("PRAGMA synchronous").fetchone()[0])
    return None


def synchronous_name(level: int) -> str:
    """PRAGMA synchronous as a word."""
    return SYNCHRONOUS_NAMES.get(level, str(level))
