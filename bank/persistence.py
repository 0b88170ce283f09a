"""Fast event storage for `eventsourcing`, on eventsourcing-sqlalchemy's tables.

Select it with ``PERSISTENCE_MODULE=bank.persistence``. It reads the same
settings as ``eventsourcing_sqlalchemy`` (``SQLALCHEMY_URL``,
``SQLALCHEMY_SCHEMA``, ``CREATE_TABLE``, ...), builds the same SQLAlchemy
engine and creates the same tables (``<name>_events``, ``<name>_snapshots``,
``<name>_tracking``) with the same definitions, so one database can be used
by either module, and switched back and forth.

What differs is how statements run. ``eventsourcing_sqlalchemy`` opens an ORM
session per call and lets the ORM build, compile and flush every statement;
here each call borrows a DB-API connection (``sqlite3`` or ``psycopg``) from the
engine's pool and runs SQL strings built when the recorder is made. A write is
a list of statements run as one transaction; PostgreSQL gets them in a single
message (``BEGIN; LOCK TABLE ...; INSERT ... RETURNING id; NOTIFY ...; COMMIT``),
so a write costs one round trip.

The guarantees an event store owes its application:

- The events of one ``insert_events`` call are written in one transaction,
  all or none; a version that already exists raises ``IntegrityError``.
- Notification ids become visible in increasing order, so a reader that polls
  the notification log never skips an id that commits later: every writer
  first takes the events table's write lock (SQLite: ``BEGIN IMMEDIATE``;
  PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE MODE``, which readers don't wait
  for, and which eventsourcing_sqlalchemy's writers take too). On PostgreSQL
  a failed write still uses up its ids, so the log can skip numbers.
- Tracking is a compare-and-set: a position is recorded only if it is beyond
  the one stored, so two projectors can never both apply one notification.
- ``recorder.transaction()`` runs several recorder calls and your own SQL as
  one transaction, for read models that must change with their tracking.
- Database errors are raised as the ``eventsourcing.persistence`` exceptions.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from threading import Thread
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import psycopg
import sqlalchemy.exc
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ConnectionUnavailableError,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    ListenNotifySubscription,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import resolve_topic
from eventsourcing_sqlalchemy import factory as sqlalchemy_factory
from sqlalchemy import text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.utils import Environment
    from sqlalchemy import Table

# A DB-API connection: sqlite3.Connection, or psycopg.Connection on PostgreSQL.
Connection = Any
# An SQL string with its parameters.
Statement = tuple[str, Sequence[Any]]
Rows = list[tuple[Any, ...]]

_EXCEPTIONS_BY_DBAPI_NAME: dict[str, type[PersistenceError]] = {
    cls.__name__: cls
    for cls in (
        InterfaceError,
        DatabaseError,
        DataError,
        OperationalError,
        IntegrityError,
        InternalError,
        ProgrammingError,
        NotSupportedError,
    )
}
_PSYCOPG_IDLE = psycopg.pq.TransactionStatus.IDLE
_SQLITE_RETURNING = (3, 35)  # the first SQLite with INSERT ... RETURNING
_SQLITE_ROWS_PER_INSERT = 500  # 4 parameters a row; SQLite 3.32+ allows 32,766
_DDL_ATTEMPTS = 5
_DDL_LOCK = 0x62616E6B  # any constant shared by every process creating our tables


class Database:
    """Connections from an SQLAlchemy engine's pool, and the transaction in progress."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        if not self.is_postgres and (
            engine.dialect.name != "sqlite"
            or sqlite3.sqlite_version_info < _SQLITE_RETURNING
        ):
            msg = f"bank.persistence needs PostgreSQL or SQLite 3.35+, not {engine.url}"
            raise NotSupportedError(msg)
        self.param = "%s" if self.is_postgres else "?"
        self._begin = "BEGIN" if self.is_postgres else "BEGIN IMMEDIATE"
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        # The recorders made by one factory share this, so a transaction begun
        # through any of them is joined by calls to all of them.
        self._current: ContextVar[_Transaction | None] = ContextVar(
            f"bank.persistence.transaction.{id(self)}", default=None
        )
        database = engine.url.database or ""
        self.is_sqlite_memory = not self.is_postgres and (
            database in ("", ":memory:") or "mode=memory" in str(engine.url)
        )
        # SQLite lets one writer at a time into a file. Queueing this process's
        # writers on a lock is fairer and quicker than SQLite's busy handler,
        # which polls with sleeps. An in-memory database is one connection that
        # all threads share, so there the lock guards reads as well.
        self._sqlite_lock = None if self.is_postgres else threading.Lock()
        # Writers in other processes queue on a lock file beside the database
        # for the same reason: SQLite's busy handler sleeps up to 100 ms a try.
        self._writers_file = (
            None
            if self.is_postgres or self.is_sqlite_memory
            else _WritersFile(f"{database}-writers.lock")
        )
        self._busy_timeout = float(cast("str", engine.url.query.get("timeout", "5")))
        self._uses_wal = self.is_postgres or self.is_sqlite_memory
        self._wal_lock = threading.Lock()

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def encode_id(self, originator_id: UUID | str) -> UUID | bytes:
        """An originator id as sqlalchemy_utils.UUIDType stores it."""
        uuid = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        # UUIDType is a native uuid column on PostgreSQL, 16 raw bytes on SQLite.
        return uuid if self.is_postgres else uuid.bytes

    def decode_id(self, value: UUID | bytes) -> UUID:
        """An originator id as read back from its column."""
        return value if isinstance(value, UUID) else UUID(bytes=value)

    def write(self, statements: Sequence[Statement]) -> list[Rows]:
        """Run the statements as one transaction, or in the current one.

        Returns each statement's rows. On PostgreSQL the statements, with
        BEGIN and COMMIT, go to the server in one message; the first that
        fails stops the rest, so nothing is committed.
        """
        current = self._current.get()
        if current is not None:
            with self._joined(current) as connection:
                return self._run(connection, statements)
        with (
            self.translated_errors(),
            self._sqlite_lock_held(),
            self._borrowed() as connection,
        ):
            try:
                # IMMEDIATE takes SQLite's write lock now, waiting up to the
                # busy timeout. A deferred BEGIN would take it at the first
                # write, and fail without waiting if another connection had
                # committed since this one started reading.
                results = self._run(
                    connection, [(self._begin, ()), *statements, ("COMMIT", ())]
                )
            except BaseException:
                self._roll_back(connection)
                raise
        return results[1:-1]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, or the one already in progress in this context.

        The outermost block commits when it ends and rolls back if it raises;
        an inner block, and every write() in the block, joins it.
        """
        current = self._current.get()
        if current is not None:
            with self._joined(current) as connection:
                yield connection
            return
        with (
            self.translated_errors(),
            self._sqlite_lock_held(),
            self._borrowed() as connection,
        ):
            transaction = _Transaction(connection)
            token = self._current.set(transaction)
            try:
                connection.execute(self._begin)
                yield connection
                transaction.check_not_failed()
                connection.execute("COMMIT")
            except BaseException:
                self._roll_back(connection)
                raise
            finally:
                self._current.reset(token)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reading: the current transaction's, else a pooled one."""
        current = self._current.get()
        if current is not None:
            with self._joined(current) as connection:
                yield connection
            return
        # Outside a transaction each SELECT runs on its own (autocommit), which
        # saves the round trips of BEGIN and COMMIT.
        with (
            self.translated_errors(),
            self._sqlite_lock_held(reading=True),
            self._borrowed() as connection,
        ):
            yield connection

    def listening(self, channel: str) -> Connection:
        """A connection of its own that listens on a PostgreSQL channel."""
        with self.translated_errors():
            pooled = self.engine.raw_connection()
            connection: Connection = pooled.driver_connection
            # Detached, it is closed rather than pooled when the listener is done.
            pooled.detach()
            try:
                connection.autocommit = True
                connection.execute(f"LISTEN {channel}")
            except BaseException:
                connection.close()
                raise
            return connection

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Raise the block's database errors as eventsourcing.persistence ones."""
        try:
            yield
        except (self._dbapi_error, sqlalchemy.exc.SQLAlchemyError) as error:
            raise _persistence_error(error) from error

    def _run(
        self, connection: Connection, statements: Sequence[Statement]
    ) -> list[Rows]:
        if not self.is_postgres:
            return [
                connection.execute(sql, params).fetchall() for sql, params in statements
            ]
        # PostgreSQL takes several statements in one message only without
        # separate parameters, so a ClientCursor merges them into the SQL,
        # each escaped as a literal by psycopg. (psycopg's pipeline mode also
        # makes one round trip, but costs about twice the client CPU.)
        with psycopg.ClientCursor(connection) as cursor:
            cursor.execute(
                "; ".join(sql for sql, _ in statements),
                [param for _, params in statements for param in params],
            )
            results = []
            while True:
                results.append(cursor.fetchall() if cursor.description else [])
                if not cursor.nextset():
                    return results

    @contextmanager
    def _joined(self, transaction: _Transaction) -> Iterator[Connection]:
        try:
            with self.translated_errors():
                yield transaction.connection
        except BaseException:
            # Part of the transaction failed: it must not commit, even if the
            # caller catches this and carries on.
            transaction.failed = True
            raise

    @contextmanager
    def _borrowed(self) -> Iterator[Connection]:
        """A pooled connection, given back afterwards as it was lent.

        Transactions are begun and ended explicitly here. sqlite3 begins one
        by itself only before an INSERT, UPDATE or DELETE outside a
        transaction, which never happens here, but psycopg begins one before
        any statement, SELECTs too: it is switched to autocommit meanwhile.
        The engine's pool is shared with other code (SQLAlchemy sessions and
        Core), which relies on the driver's usual behaviour.
        """
        pooled = self.engine.raw_connection()
        connection: Connection = pooled.driver_connection
        try:
            if self.is_postgres:
                connection.autocommit = True
            if not self._uses_wal:
                with self._wal_lock:
                    if not self._uses_wal:
                        self._switch_to_wal(connection)
                        self._uses_wal = True
            yield connection
        finally:
            if not self._is_idle(connection):
                # Broken, or interrupted mid-transaction: don't pool it.
                pooled.invalidate()
            elif self.is_postgres:
                connection.autocommit = False
            pooled.close()

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

    def _is_idle(self, connection: Connection) -> bool:
        if self.is_postgres:
            return bool(
                not connection.closed
                and connection.info.transaction_status == _PSYCOPG_IDLE
            )
        try:
            return not connection.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False

    def _roll_back(self, connection: Connection) -> None:
        try:
            if not self._is_idle(connection):
                connection.execute("ROLLBACK")
        except self._dbapi_error:
            pass  # The connection is broken; _borrowed() won't pool it.

    @contextmanager
    def _sqlite_lock_held(self, *, reading: bool = False) -> Iterator[None]:
        lock = self._sqlite_lock
        if lock is None or (reading and not self.is_sqlite_memory):
            yield
            return
        deadline = time.monotonic() + self._busy_timeout
        if not lock.acquire(timeout=self._busy_timeout):
            msg = "database is locked (by another writer in this process)"
            raise OperationalError(msg)
        try:
            if self._writers_file is None:
                yield
            else:
                with self._writers_file.held(deadline):
                    yield
        finally:
            lock.release()


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


class _Transaction:
    """A transaction in progress on one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.failed = False

    def check_not_failed(self) -> None:
        """Refuse to commit a transaction that part of the work failed in."""
        if self.failed:
            msg = "A statement in this transaction failed, so it was rolled back."
            raise ProgrammingError(msg)


def _persistence_error(error: Exception) -> PersistenceError:
    """The eventsourcing exception for a DB-API or SQLAlchemy error."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return ConnectionUnavailableError(str(error))
    # Drivers subclass the PEP 249 classes (psycopg's UniqueViolation is an
    # IntegrityError), and so does SQLAlchemy when wrapping connect errors.
    for cls in type(error).__mro__:
        if cls.__name__ in _EXCEPTIONS_BY_DBAPI_NAME:
            return _EXCEPTIONS_BY_DBAPI_NAME[cls.__name__](str(error))
    return PersistenceError(str(error))


def create_tables(engine: Engine, tables: Sequence[Table]) -> None:
    """Create the missing tables; safe when several processes start at once."""
    for attempt in range(1, _DDL_ATTEMPTS + 1):
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # DDL is transactional there: rivals wait here, then
                    # find the tables made instead of colliding in pg_type.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK}
                    )
                for table in tables:
                    table.create(connection, checkfirst=True)
            return
        except sqlalchemy.exc.DBAPIError:
            # SQLite: another process created a table between check and create.
            if attempt == _DDL_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


class SqlRecorder(Recorder):
    """The base of this module's recorders: tables, and transactions on them."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.tables: list[Table] = []

    def create_table(self) -> None:
        """Create this recorder's tables unless they exist (SQLAlchemy's DDL)."""
        with self.database.translated_errors():
            create_tables(self.database.engine, self.tables)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run the block, and the recorder calls made in it, as one transaction.

        Yields the DB-API connection for your own SQL: use its execute() or
        cursor(), but don't commit or roll back; the outermost block commits
        when it ends and rolls back if it raises. Recorder calls made inside,
        and nested transaction() blocks, join it; if one of them raises, the
        whole transaction rolls back even when the exception is caught. A
        projector should record its tracking first, so a rival projector
        waits at that row and then fails its compare-and-set instead of
        applying the event twice.
        """
        with self.database.transaction() as connection:
            yield connection

    def _table_name(self, table: Table) -> str:
        return str(self.database.engine.dialect.identifier_preparer.format_table(table))


class SqlAggregateRecorder(SqlRecorder, AggregateRecorder):
    """Inserts and selects the stored events (or snapshots) of aggregates."""

    def __init__(self, database: Database, *, events_table: Table) -> None:
        super().__init__(database)
        self.events_table = events_table
        self.tables.append(events_table)
        table, p = self._table_name(events_table), database.param
        # An events table numbers its rows: that number is the notification id.
        self.has_notification_ids = "id" in events_table.c
        self.insert_sql = (
            f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "VALUES "
        )
        self.values_sql = f"({p}, {p}, {p}, {p})"
        self.returning_sql = " RETURNING id" if self.has_notification_ids else ""
        self.lock_table_sql = f"LOCK TABLE {table} IN EXCLUSIVE MODE"
        # The channel eventsourcing_sqlalchemy notifies, so subscribers of
        # either module wake up for writes by either.
        self.channel = events_table.name.replace(".", "_")
        self.notify_sql = f"NOTIFY {self.channel}"
        self._select_events_sql: dict[tuple[bool, bool, bool, bool], str] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write the events in one transaction, all or none."""
        self._write(stored_events, **kwargs)
        return None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """An aggregate's events, by version, optionally a slice of them."""
        key = (gt is not None, lte is not None, desc, limit is not None)
        try:
            sql = self._select_events_sql[key]
        except KeyError:
            sql = self._select_events_sql[key] = self._build_select_events_sql(*key)
        params: list[Any] = [self.database.encode_id(originator_id)]
        params += [value for value in (gt, lte, limit) if value is not None]
        with self.database.reading() as connection:
            rows = connection.execute(sql, params).fetchall()
        decode_id = self.database.decode_id
        return [
            StoredEvent(
                originator_id=decode_id(row[0]),
                originator_version=row[1],
                topic=row[2],
                state=row[3],
            )
            for row in rows
        ]

    def _build_select_events_sql(
        self, gt: bool, lte: bool, desc: bool, limit: bool
    ) -> str:
        p = self.database.param
        sql = (
            "SELECT originator_id, originator_version, topic, state "
            f"FROM {self._table_name(self.events_table)} WHERE originator_id = {p}"
        )
        if gt:
            sql += f" AND originator_version > {p}"
        if lte:
            sql += f" AND originator_version <= {p}"
        sql += " ORDER BY originator_version" + (" DESC" if desc else "")
        if limit:
            sql += f" LIMIT {p}"
        return sql

    def _write(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """Write the events (and whatever else kwargs ask for); return their ids."""
        statements = self._write_statements(stored_events, **kwargs)
        if not statements:
            return []
        results = self.database.write(statements)
        # Only the INSERTs return rows: the new ids, which are given out in
        # the order the events were listed.
        return sorted(row[0] for rows in results for row in rows)

    def _write_statements(
        self, stored_events: Sequence[StoredEvent], **_: Any
    ) -> list[Statement]:
        if not stored_events:
            return []
        encode_id = self.database.encode_id
        rows = [
            (encode_id(e.originator_id), e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        if not self.database.is_postgres:
            # One INSERT per chunk of rows: a batch of a thousand events is a
            # couple of statements, well within SQLite's limit on parameters.
            return [
                self._insert(rows[start : start + _SQLITE_ROWS_PER_INSERT])
                for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT)
            ]
        # PostgreSQL is a round trip away: one INSERT for all the events.
        insert = self._insert(rows)
        if not self.has_notification_ids:
            return [insert]
        # The lock makes ids commit in the order they are given out; NOTIFY
        # wakes subscribers when the transaction commits.
        return [(self.lock_table_sql, ()), insert, (self.notify_sql, ())]

    def _insert(self, rows: Sequence[tuple[Any, ...]]) -> Statement:
        values = ", ".join([self.values_sql] * len(rows))
        return (
            self.insert_sql + values + self.returning_sql,
            [value for row in rows for value in row],
        )


class SqlApplicationRecorder(SqlAggregateRecorder, ApplicationRecorder):
    """Also reads all events back in the order they were recorded."""

    def __init__(self, database: Database, *, events_table: Table) -> None:
        super().__init__(database, events_table=events_table)
        table = self._table_name(events_table)
        self.max_notification_id_sql = f"SELECT MAX(id) FROM {table}"
        self._select_notifications_sql: dict[tuple[str, bool, int], str] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write the events in one transaction and return their notification ids."""
        return self._write(stored_events, **kwargs)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Up to `limit` notifications from `start` (to `stop`), by id."""
        start_kind = "" if start is None else ">=" if inclusive_of_start else ">"
        # PostgreSQL takes the topics as one array; SQLite needs a ? for each.
        is_postgres = self.database.is_postgres
        topics_count = min(len(topics), 1) if is_postgres else len(topics)
        key = (start_kind, stop is not None, topics_count)
        try:
            sql = self._select_notifications_sql[key]
        except KeyError:
            sql = self._build_select_notifications_sql(*key)
            self._select_notifications_sql[key] = sql
        params: list[Any] = [value for value in (start, stop) if value is not None]
        if topics:
            params += [list(topics)] if is_postgres else list(topics)
        params.append(limit)
        with self.database.reading() as connection:
            rows = connection.execute(sql, params).fetchall()
        decode_id = self.database.decode_id
        return [
            Notification(
                id=row[0],
                originator_id=decode_id(row[1]),
                originator_version=row[2],
                topic=row[3],
                state=row[4],
            )
            for row in rows
        ]

    def _build_select_notifications_sql(
        self, start_kind: str, stop: bool, topics_count: int
    ) -> str:
        p = self.database.param
        conditions = []
        if start_kind:
            conditions.append(f"id {start_kind} {p}")
        if stop:
            conditions.append(f"id <= {p}")
        if topics_count and self.database.is_postgres:
            conditions.append(f"topic = ANY({p})")
        elif topics_count:
            conditions.append(f"topic IN ({', '.join([p] * topics_count)})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            "SELECT id, originator_id, originator_version, topic, state "
            f"FROM {self._table_name(self.events_table)}{where} ORDER BY id LIMIT {p}"
        )

    def max_notification_id(self) -> int | None:
        """The id of the last notification, or None if there are none."""
        with self.database.reading() as connection:
            row = connection.execute(self.max_notification_id_sql).fetchone()
        return cast("int | None", row[0])

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Iterate over notifications after `gt`, waiting for new ones (PostgreSQL)."""
        if not self.database.is_postgres:
            msg = (
                "subscribe() needs PostgreSQL's LISTEN/NOTIFY; "
                "on SQLite, poll select_notifications()"
            )
            raise NotImplementedError(msg)
        return SqlSubscription(recorder=self, gt=gt, topics=topics)


class SqlSubscription(ListenNotifySubscription[SqlApplicationRecorder]):
    """Notifications as they are recorded, woken by PostgreSQL's NOTIFY."""

    def __init__(
        self,
        recorder: SqlApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        # Listen before the base class starts pulling what is already recorded,
        # so an event committed in between still wakes the puller.
        self._listener = recorder.database.listening(recorder.channel)
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._listen_thread = Thread(target=self._listen, daemon=True)
        self._listen_thread.start()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        """Stop, and wait for the listening thread to finish."""
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._listen_thread.join()

    def _listen(self) -> None:
        try:
            while not self._has_been_stopped and not self._thread_error:
                # Wake at least every 0.1 s to notice stop().
                for _ in self._listener.notifies(timeout=0.1, stop_after=1):
                    self._has_been_notified.set()
        except BaseException as error:  # handed to the thread that iterates
            if self._thread_error is None:
                self._thread_error = error
            self.stop()
        finally:
            self._listener.close()


class SqlTrackingRecorder(SqlRecorder, TrackingRecorder):
    """Records how far a projector has got in another application's notification log."""

    def __init__(
        self, database: Database, *, tracking_table: Table, **kwargs: Any
    ) -> None:
        super().__init__(database, **kwargs)
        self.tracking_table = tracking_table
        self.tables.append(tracking_table)
        table, p = self._table_name(tracking_table), database.param
        # Compare-and-set: move the application's position forward, and if
        # that changed no row, insert it. When a position at or beyond this
        # one is stored, that INSERT violates the primary key: IntegrityError,
        # and the transaction can't commit. A rival writing the same row at
        # the same time is made to wait, then compared against what it wrote.
        update = (
            f"UPDATE {table} SET notification_id = {p} "
            f"WHERE application_name = {p} AND notification_id < {p}"
        )
        if database.is_postgres:
            # As one statement, so it can share a message with the others.
            self.tracking_sql = [
                f"WITH moved AS ({update} RETURNING 1) "
                f"INSERT INTO {table} (application_name, notification_id) "
                f"SELECT {p}, {p} WHERE NOT EXISTS (SELECT FROM moved)"
            ]
        else:
            # SQLite has no UPDATE inside WITH; changes() counts the rows that
            # the statement just before changed.
            self.tracking_sql = [
                update,
                f"INSERT INTO {table} (application_name, notification_id) "
                f"SELECT {p}, {p} WHERE changes() = 0",
            ]
        self.max_tracking_id_sql = (
            f"SELECT notification_id FROM {table} WHERE application_name = {p}"
        )

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record the position, or raise IntegrityError if it is not beyond the last."""
        self.database.write(self._tracking_statements(tracking))

    def _tracking_statements(self, tracking: Tracking) -> list[Statement]:
        name, position = tracking.application_name, tracking.notification_id
        update_params = (position, name, position)
        insert_params = (name, position)
        if self.database.is_postgres:
            return [(self.tracking_sql[0], update_params + insert_params)]
        return [
            (self.tracking_sql[0], update_params),
            (self.tracking_sql[1], insert_params),
        ]

    def max_tracking_id(self, application_name: str) -> int | None:
        """The last position recorded for the application, or None."""
        with self.database.reading() as connection:
            row = connection.execute(
                self.max_tracking_id_sql, (application_name,)
            ).fetchone()
        return None if row is None else cast("int | None", row[0])


class SqlProcessRecorder(SqlTrackingRecorder, SqlApplicationRecorder, ProcessRecorder):
    """Records events together with the position of the notification they answer."""

    def __init__(
        self, database: Database, *, events_table: Table, tracking_table: Table
    ) -> None:
        super().__init__(
            database, tracking_table=tracking_table, events_table=events_table
        )

    def _write_statements(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> list[Statement]:
        tracking: Tracking | None = kwargs.get("tracking")
        events = super()._write_statements(stored_events, **kwargs)
        if tracking is None:
            return events
        # Tracking first, so a rival projector fails before it inserts events.
        return [*self._tracking_statements(tracking), *events]


class SqlFactory(sqlalchemy_factory.SQLAlchemyFactory):
    """Makes this module's recorders on eventsourcing_sqlalchemy's engine and tables."""

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        if self.datastore.scoped_session is not None:
            msg = (
                f"{self.SQLALCHEMY_SCOPED_SESSION_TOPIC} is not supported by "
                "bank.persistence, which runs its own transactions"
            )
            raise OSError(msg)
        engine = self.datastore.engine
        if not isinstance(engine, Engine):
            keys = ", ".join(self.env.create_keys(self.SQLALCHEMY_URL))
            msg = f"SQLAlchemy URL not found in environment with keys: {keys}"
            raise OSError(msg)
        # An empty schema would qualify every table as ".name".
        self._schema_name = self._schema_name or None
        self.database = Database(engine)

    def aggregate_recorder(self, purpose: str = "events") -> SqlAggregateRecorder:
        """A recorder of aggregate events, or of snapshots if purpose is "snapshots"."""
        table = self._events_table(purpose)
        recorder = SqlAggregateRecorder(self.database, events_table=table)
        self._create_table(recorder)
        return recorder

    def application_recorder(self) -> SqlApplicationRecorder:
        """A recorder of events and their notification log."""
        recorder = SqlApplicationRecorder(
            self.database, events_table=self._events_table("events")
        )
        self._create_table(recorder)
        return recorder

    def tracking_recorder(  # type: ignore[override]  # not an ORM tracking recorder
        self, tracking_recorder_class: type[SqlTrackingRecorder] | None = None
    ) -> SqlTrackingRecorder:
        """A recorder of tracking positions, of the class given or configured."""
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = (
                resolve_topic(topic) if topic else SqlTrackingRecorder
            )
        if not issubclass(tracking_recorder_class, SqlTrackingRecorder):
            msg = f"{tracking_recorder_class} is not a SqlTrackingRecorder"
            raise TypeError(msg)
        recorder = tracking_recorder_class(
            self.database, tracking_table=self._tracking_table()
        )
        self._create_table(recorder)
        return recorder

    def process_recorder(self) -> SqlProcessRecorder:
        """A recorder of events, their notification log and tracking positions."""
        recorder = SqlProcessRecorder(
            self.database,
            events_table=self._events_table("events"),
            tracking_table=self._tracking_table(),
        )
        self._create_table(recorder)
        return recorder

    def close(self) -> None:
        """Close the pooled connections."""
        self.database.close()

    def _events_table(self, purpose: str) -> Table:
        base = (
            self.datastore.base_snapshot_record_cls
            if purpose == "snapshots"
            else self.datastore.base_stored_event_record_cls
        )
        return self._table(f"{self.env.name.lower() or 'stored'}_{purpose}", base)

    def _tracking_table(self) -> Table:
        return self._table(
            f"{self.env.name.lower() or 'notification'}_tracking",
            self.datastore.base_notification_tracking_record_cls,
        )

    def _table(self, name: str, base: type[Any]) -> Table:
        # eventsourcing_sqlalchemy's own record classes, looked up in (or added
        # to) its registry, so both modules use identical table definitions.
        words = [*(self._schema_name or "").split("_"), *name.rstrip("s").split("_")]
        record_class = self.datastore.define_record_class(
            cls_name="".join(word.capitalize() for word in words),
            table_name=name,
            schema_name=self._schema_name,
            base_cls=base,
        )
        return cast("Table", record_class.__table__)

    def _create_table(self, recorder: SqlRecorder) -> None:
        if self.env_create_table():
            recorder.create_table()


Factory = SqlFactory
