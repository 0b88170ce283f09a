"""SQLite: one writer at a time, queued on locks, in write-ahead-logging mode."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.persistence import OperationalError

from bank.persistence.base import (
    NO_LOCK,
    Database,
    EventsSql,
    LogSql,
    TrackingSql,
    unsupported_database,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

    from eventsourcing.persistence import Tracking
    from sqlalchemy.engine import Engine

    from bank.persistence.base import Connection, Row, Rows, Statement

_RETURNING = (3, 35)  # the first SQLite with INSERT ... RETURNING
_ROWS_PER_INSERT = 500  # 4 parameters a row; SQLite 3.32+ allows 32,766


class SqliteDatabase(Database):
    """A SQLite file (or in-memory database) through sqlite3."""

    is_postgres = False
    param = "?"
    # IMMEDIATE takes SQLite's write lock now, waiting up to the busy
    # timeout. A deferred BEGIN would take it at the first write, and fail
    # without waiting if another connection had committed since this one
    # started reading.
    begin_sql = "BEGIN IMMEDIATE"
    begin = ((begin_sql, ()),)

    def __init__(self, engine: Engine) -> None:
        if sqlite3.sqlite_version_info < _RETURNING:
            raise unsupported_database(engine)
        super().__init__(engine)
        database = engine.url.database or ""
        self.is_memory = database in ("", ":memory:") or "mode=memory" in str(
            engine.url
        )
        # SQLite lets one writer at a time into a file. Queueing this process's
        # writers on a lock is fairer and quicker than SQLite's busy handler,
        # which polls with sleeps. An in-memory database is one connection that
        # all threads share, so there the lock guards reads as well.
        self._lock = threading.Lock()
        # Writers in other processes queue on a lock file beside the database
        # for the same reason: SQLite's busy handler sleeps up to 100 ms a try.
        self._writers_file = (
            None if self.is_memory else _WritersFile(f"{database}-writers.lock")
        )
        self._busy_timeout = float(cast("str", engine.url.query.get("timeout", "5")))
        # An in-memory database's pool is its one connection: it stays there.
        self.keeps_a_writer = not self.is_memory
        self._uses_wal = self.is_memory
        self._wal_lock = threading.Lock()

    def encode_id(self, originator_id: UUID | str) -> bytes:
        """An originator id as UUIDType stores it on SQLite: its 16 raw bytes."""
        uuid = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        return uuid.bytes

    def run(
        self, connection: Connection, statements: Sequence[Statement]
    ) -> list[Rows]:
        """Run the statements one by one; return each one's rows."""
        return [
            connection.execute(sql, params).fetchall() for sql, params in statements
        ]

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """This process's lock, then the lock file; OperationalError at the timeout."""
        deadline = time.monotonic() + self._busy_timeout
        if not self._lock.acquire(timeout=self._busy_timeout):
            msg = "database is locked (by another writer in this process)"
            raise OperationalError(msg)
        try:
            if self._writers_file is None:
                yield
            else:
                with self._writers_file.held(deadline):
                    yield
        finally:
            self._lock.release()

    def reader_lock(self) -> AbstractContextManager[None]:
        """The writer lock on an in-memory database (its one connection), else none."""
        return self.writer_lock() if self.is_memory else NO_LOCK

    def prepare(self, connection: Connection) -> None:
        """Switch the file to write-ahead logging the first time; else nothing."""
        # sqlite3 begins a transaction by itself only before an INSERT, UPDATE
        # or DELETE outside a transaction, which never happens here: it can
        # run the explicit BEGIN and COMMIT as it is.
        if not self._uses_wal:
            with self._wal_lock:
                if not self._uses_wal:
                    self._switch_to_wal(connection)
                    self._uses_wal = True

    def is_idle(self, connection: Connection) -> bool:
        """Whether the connection is open and in no transaction."""
        try:
            return not connection.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False

    # prepare() changed nothing to undo: an idle connection can go back as it is.
    release = is_idle

    def events_sql(
        self, table: str, channel: str, *, returning: bool, by_transaction: bool
    ) -> EventsSql:
        """The SQL that writes events to the table, in chunked INSERTs."""
        # One writer at a time commits: ids commit in order, nothing to lock.
        return SqliteEventsSql(table, self.param, returning=returning)

    def log_sql(self, table: str, *, by_transaction: bool) -> LogSql:
        """The log in id order, which is commit order with one writer at a time."""
        return LogSql(table, self.param)

    def tracking_sql(self, table: str) -> TrackingSql:
        """The SQL that records positions in the tracking table."""
        return SqliteTrackingSql(table, self.param)

    def topics_params(self, topics: Sequence[str]) -> list[Any]:
        """A parameter for each topic."""
        return list(topics)

    def topics_condition(self, count: int) -> str:
        """topic IN (?, ...), with a ? for each topic."""
        return f"topic IN ({', '.join([self.param] * count)})"

    def listening(self, channel: str) -> Connection:
        """Never: SQLite has nothing like LISTEN/NOTIFY."""
        msg = (
            "subscribe() needs PostgreSQL's LISTEN/NOTIFY; "
            "on SQLite, poll select_notifications()"
        )
        raise NotImplementedError(msg)

    def _switch_to_wal(self, connection: Connection) -> None:
        """Make a SQLite file use write-ahead logging: readers don't wait for writers.

        The mode is stored in the file, so this is done once per process.
        """
        deadline = time.monotonic() + self._busy_timeout
        while connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                connection.execute("PRAGMA journal_mode=WAL").fetchall()
            except sqlite3.OperationalError:
                # Switching needs the file to itself, and SQLite won't wait for
                # another connection's writer to finish: retry until the timeout.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


class SqliteEventsSql(EventsSql):
    """INSERTs of events, as many rows in each as SQLite's parameters allow."""

    def insert_statements(self, rows: Sequence[Row]) -> list[Statement]:
        """An INSERT for each chunk of rows."""
        # One INSERT per chunk of rows: a batch of a thousand events is a
        # couple of statements, well within SQLite's limit on parameters.
        return [
            self.insert(rows[start : start + _ROWS_PER_INSERT])
            for start in range(0, len(rows), _ROWS_PER_INSERT)
        ]


class SqliteTrackingSql(TrackingSql):
    """The compare-and-set as two statements."""

    def __init__(self, table: str, param: str) -> None:
        super().__init__(table, param)
        # SQLite has no UPDATE inside WITH; changes() counts the rows that
        # the statement just before changed.
        self.insert_unless_moved_sql = self.insert_sql + " WHERE changes() = 0"

    def insert_statements(self, tracking: Tracking) -> list[Statement]:
        """The UPDATE, then the INSERT if it changed no row."""
        name, position = tracking.application_name, tracking.notification_id
        return [
            (self.update_sql, (position, name, position)),
            (self.insert_unless_moved_sql, (name, position)),
        ]


class _WritersFile:
    """An exclusive flock on a file beside a SQLite database, for its writers.

    A waiting process polls every fraction of a millisecond instead of
    SQLite's 1-100 ms sleeps, so a queue of writers from several processes
    (gunicorn workers) drains at the pace of the disk. Writers that don't take
    it (another program) are still kept out by SQLite's own lock; if the file
    can't be created, only SQLite's lock is used.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._opened = threading.Lock()

    @contextmanager
    def held(self, deadline: float) -> Iterator[None]:
        """Hold the lock for the block; OperationalError at the deadline."""
        fd = self._descriptor()
        if fd is None:
            yield
            return
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    msg = "database is locked (by a writer in another process)"
                    raise OperationalError(msg) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int | None:
        with self._opened:
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError:
                    self._fd = -1
            return self._fd if self._fd >= 0 else None
