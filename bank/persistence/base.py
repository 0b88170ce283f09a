"""What every database shares: the recorders, transactions, and the hooks of Database.

A ``Database`` subclass (``sqlite``, ``postgres``) is all that is particular
to one database: how statements are sent, how connections are prepared and
locked, and the SQL that differs. Every choice between databases is made when
the factory picks the class, none while a statement runs.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from threading import Thread
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast
from uuid import UUID

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

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection as SqlAlchemyConnection
    from sqlalchemy.engine import Engine

# A DB-API connection: sqlite3.Connection, or psycopg.Connection on PostgreSQL.
Connection = Any
# An SQL string with its parameters.
Statement = tuple[str, Sequence[Any]]
Row = tuple[Any, ...]
Rows = list[Row]


class LogPosition(NamedTuple):
    """A point in the log: after the event with this (transaction, notification id).

    Events are read in that order. On PostgreSQL the transaction is the one
    that wrote the event, so a reader never passes an event that commits
    late with a low id; elsewhere writers commit in id order and it is 0.
    """

    transaction_id: int
    notification_id: int

    def token(self) -> str:
        """The position as clients see it: an opaque string that sorts in log order."""
        return f"{self.transaction_id:016x}{self.notification_id:016x}"

    @classmethod
    def from_token(cls, token: str) -> LogPosition:
        """The position a token() names; ValueError if it names none."""
        if not (len(token) == POSITION_TOKEN_LENGTH and _HEX_DIGITS.issuperset(token)):
            msg = f"a position is {POSITION_TOKEN_LENGTH} hexadecimal digits"
            raise ValueError(msg)
        half = POSITION_TOKEN_LENGTH // 2
        return cls(int(token[:half], 16), int(token[half:], 16))


POSITION_TOKEN_LENGTH = 32
_HEX_DIGITS = frozenset("0123456789abcdef")
LOG_START = LogPosition(0, 0)

# A lock that isn't one, for databases that need none: reusable, and cheaper
# to enter than a generator's context manager.
NO_LOCK: AbstractContextManager[None] = nullcontext()

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
_DDL_ATTEMPTS = 5


def unsupported_database(engine: Engine) -> NotSupportedError:
    """The error for an engine whose database this package can't run on."""
    return NotSupportedError(
        f"bank.persistence needs PostgreSQL or SQLite 3.35+, not {engine.url}"
    )


class Database(ABC):
    """Connections from an SQLAlchemy engine's pool, and the transaction in progress."""

    # For callers that must know (tests); the shared code never asks.
    is_postgres: ClassVar[bool]
    # The DB-API placeholder of a parameter.
    param: ClassVar[str]
    # What begins a write transaction.
    begin_sql: ClassVar[str]
    # The statements that begin one: begin_sql, and any settings for it.
    begin: ClassVar[tuple[Statement, ...]]
    # Whether a connection is kept out of the pool for writes.
    keeps_a_writer = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        # The recorders made by one factory share this, so a transaction begun
        # through any of them is joined by calls to all of them. (Per thread,
        # not a ContextVar: those must be made once, at module level, and a
        # Database is made per application.)
        self._current = _CurrentTransaction()
        # One connection kept out of the pool, ready, for whichever writer
        # finds it free (group commit makes that every writer of the process):
        # a write then skips the pool's checkout, reset and return.
        self._kept: _Kept | None = None
        self._kept_mutex = threading.Lock()

    # The hooks each database implements.

    @abstractmethod
    def encode_id(self, originator_id: UUID | str) -> UUID | bytes:
        """An originator id as sqlalchemy_utils.UUIDType stores it."""

    @abstractmethod
    def run(
        self, connection: Connection, statements: Sequence[Statement]
    ) -> list[Rows]:
        """Run the statements on the connection; return each one's rows."""

    @abstractmethod
    def writer_lock(self) -> AbstractContextManager[None]:
        """Held around each write transaction, from before it borrows a connection."""

    @abstractmethod
    def reader_lock(self) -> AbstractContextManager[None]:
        """Held around each read outside a transaction."""

    @abstractmethod
    def prepare(self, connection: Connection) -> None:
        """Ready a connection just borrowed from the pool."""

    @abstractmethod
    def release(self, connection: Connection) -> bool:
        """Undo prepare() before the connection goes back; False if it must not."""

    @abstractmethod
    def is_idle(self, connection: Connection) -> bool:
        """Whether the connection is open and in no transaction."""

    @abstractmethod
    def events_sql(
        self, table: str, channel: str, *, returning: bool, by_transaction: bool
    ) -> EventsSql:
        """The SQL that writes events to the table (returning their ids, or not).

        `by_transaction`: the table records each event's writing transaction,
        so readers order by it and writers need not lock the table.
        """

    @abstractmethod
    def log_sql(self, table: str, *, by_transaction: bool) -> LogSql:
        """The SQL that reads the table as a log, in LogPosition order."""

    def records_transactions(self, table: Table) -> bool:
        """Whether the events table records each event's writing transaction."""
        return False

    def upgrade_log(self, table: Table) -> bool:
        """Ready the events table to be read by transaction; whether it now is."""
        return False

    @abstractmethod
    def tracking_sql(self, table: str) -> TrackingSql:
        """The SQL that records positions in the tracking table."""

    @abstractmethod
    def topics_params(self, topics: Sequence[str]) -> list[Any]:
        """The parameters that pass a (non-empty) list of topics."""

    @abstractmethod
    def topics_condition(self, count: int) -> str:
        """The condition that an event's topic is one of `count` parameters."""

    @abstractmethod
    def listening(self, channel: str) -> Connection:
        """A connection of its own that listens on a channel, for subscribe()."""

    @staticmethod  # noqa: B027  # a hook with a default: most databases need no lock
    def ddl_lock(connection: SqlAlchemyConnection) -> None:
        """Make rivals creating tables wait for this transaction: a no-op by default."""

    # What every database shares.

    @classmethod
    def create_tables(cls, engine: Engine, tables: Sequence[Table]) -> None:
        """Create the missing tables; safe when several processes start at once."""
        for attempt in range(1, _DDL_ATTEMPTS + 1):
            try:
                with engine.begin() as connection:
                    cls.ddl_lock(connection)
                    for table in tables:
                        table.create(connection, checkfirst=True)
                return
            except sqlalchemy.exc.DBAPIError:
                # SQLite: another process created a table between check and create.
                if attempt == _DDL_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)

    def close(self) -> None:
        """Close the pooled connections, and the one kept for writing."""
        with self._kept_mutex:
            kept, self._kept = self._kept, None
        if kept is not None and kept.pid == os.getpid():
            kept.discard()
        self.engine.dispose()

    def decode_id(self, value: UUID | bytes) -> UUID:
        """An originator id as read back from its column."""
        return value if isinstance(value, UUID) else UUID(bytes=value)

    def write(
        self, statements: Sequence[Statement], after_commit: Sequence[Statement] = ()
    ) -> list[Rows]:
        """Run the statements as one transaction, or in the current one.

        Returns each statement's rows. If one fails, nothing is committed.
        `after_commit` runs once the transaction has committed (in the same
        message where the database allows), and not if it fails.
        """
        current = self._current.transaction
        if current is not None:
            with self._joined(current, send_due=False) as connection:
                # What the transaction still owes the server (BEGIN, a
                # SAVEPOINT) goes with this write: no round trips of its own.
                current.add_after_commit(after_commit)
                due = current.take_due()
                if not due:
                    return self.run(connection, statements)
                return self.run(connection, [*due, *statements])[len(due) :]
        with self._writing() as connection:
            try:
                results = self.run(
                    connection,
                    [*self.begin, *statements, ("COMMIT", ()), *after_commit],
                )
            except BaseException:
                self._roll_back(connection)
                raise
        return results[len(self.begin) : len(self.begin) + len(statements)]

    @contextmanager
    def transaction(self, *, deferred: bool = False) -> Iterator[Connection]:
        """A write transaction, or the one already in progress in this context.

        The outermost block commits when it ends and rolls back if it raises;
        an inner block, and every write() in the block, joins it. A deferred
        transaction sends its BEGIN with its first statement and costs nothing
        if it sends none; its block must use recorder calls, not the
        connection it is given.
        """
        current = self._current.transaction
        if current is not None:
            with self._joined(current) as connection:
                yield connection
            return
        with self._writing() as connection:
            transaction = _Transaction(connection, self.begin)
            self._current.transaction = transaction
            try:
                if not deferred:
                    self.run(connection, transaction.take_due())
                yield connection
                transaction.check_not_failed()
                if transaction.begun:
                    self.run(connection, [("COMMIT", ()), *transaction.after_commit])
            except BaseException:
                self._roll_back(connection)
                raise
            finally:
                self._current.transaction = None

    def in_transaction(self) -> bool:
        """Whether this context has a transaction in progress."""
        return self._current.transaction is not None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside the current transaction: if the block raises, undo only its writes.

        The SAVEPOINT is sent with the block's first statement, so a block
        that touches nothing (say, a refused command) costs nothing.
        """
        current = self._current.transaction
        if current is None:
            msg = "A savepoint needs a transaction in progress."
            raise ProgrammingError(msg)
        savepoint = current.add_savepoint()
        failed = current.failed
        try:
            yield
        except BaseException:
            if not current.cancel_due(savepoint):  # it was sent: undo to it
                name = savepoint[0].removeprefix("SAVEPOINT ")
                with self.translated_errors():
                    current.connection.execute(f"ROLLBACK TO SAVEPOINT {name}")
                current.failed = failed
            raise

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reading: the current transaction's, else a pooled one."""
        current = self._current.transaction
        if current is not None:
            with self._joined(current) as connection:
                yield connection
            return
        # Outside a transaction each SELECT runs on its own (autocommit), which
        # saves the round trips of BEGIN and COMMIT.
        with self._borrowed(self.reader_lock()) as connection:
            yield connection

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Raise the block's database errors as eventsourcing.persistence ones."""
        try:
            yield
        except (self._dbapi_error, sqlalchemy.exc.SQLAlchemyError) as error:
            raise _persistence_error(error) from error

    @contextmanager
    def _joined(
        self, transaction: _Transaction, *, send_due: bool = True
    ) -> Iterator[Connection]:
        try:
            with self.translated_errors():
                if send_due:
                    for sql, _ in transaction.take_due():
                        transaction.connection.execute(sql)
                yield transaction.connection
        except BaseException:
            # Part of the transaction failed: it must not commit, even if the
            # caller catches this and carries on.
            transaction.failed = True
            raise

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection for a write: the kept one if it is free, else a pooled one."""
        if not self.keeps_a_writer or not self._kept_mutex.acquire(blocking=False):
            with self._borrowed(self.writer_lock()) as connection:
                yield connection
            return
        try:
            with self.translated_errors(), self.writer_lock():
                kept = self._kept
                if kept is None or kept.pid != os.getpid():
                    # (A forked child must not share its parent's socket.)
                    pooled = self.engine.raw_connection()
                    kept = self._kept = _Kept(pooled, os.getpid())
                    self.prepare(kept.connection)
                try:
                    yield kept.connection
                finally:
                    if not self.is_idle(kept.connection):
                        # Broken, or interrupted mid-transaction: not kept.
                        self._kept = None
                        kept.discard()
        finally:
            self._kept_mutex.release()

    @contextmanager
    def _borrowed(self, lock: AbstractContextManager[None]) -> Iterator[Connection]:
        """A pooled connection, taken with the lock and given back as it was lent.

        Transactions are begun and ended explicitly here, which prepare()
        lets the driver do. The engine's pool is shared with other code
        (SQLAlchemy sessions and Core), which relies on the driver's usual
        behaviour, so release() puts it back.
        """
        with self.translated_errors(), lock:
            pooled = self.engine.raw_connection()
            connection: Connection = pooled.driver_connection
            try:
                self.prepare(connection)
                yield connection
            finally:
                if not self.release(connection):
                    # Broken, or interrupted mid-transaction: don't pool it.
                    pooled.invalidate()
                pooled.close()

    def _roll_back(self, connection: Connection) -> None:
        try:
            if not self.is_idle(connection):
                connection.execute("ROLLBACK")
        except self._dbapi_error:
            pass  # The connection is broken; _borrowed() won't pool it.


class EventsSql(ABC):
    """The statements that write events to one table, in its database's SQL."""

    def __init__(self, table: str, param: str, *, returning: bool) -> None:
        p = param
        self.insert_sql = (
            f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "VALUES "
        )
        self.values_sql = f"({p}, {p}, {p}, {p})"
        self.returning_sql = " RETURNING id" if returning else ""
        # What runs once the events are committed.
        self.after_commit: list[Statement] = []

    @abstractmethod
    def insert_statements(self, rows: Sequence[Row]) -> list[Statement]:
        """The statements that write these rows of events, in one transaction."""

    def insert(self, rows: Sequence[Row]) -> Statement:
        """One INSERT of the rows."""
        values = ", ".join([self.values_sql] * len(rows))
        return (
            self.insert_sql + values + self.returning_sql,
            [value for row in rows for value in row],
        )


class TrackingSql(ABC):
    """The statements that record positions in one tracking table."""

    def __init__(self, table: str, param: str) -> None:
        p = param
        # Compare-and-set: move the application's position forward, and if
        # that changed no row, insert it. When a position at or beyond this
        # one is stored, that INSERT violates the primary key: IntegrityError,
        # and the transaction can't commit. A rival writing the same row at
        # the same time is made to wait, then compared against what it wrote.
        self.update_sql = (
            f"UPDATE {table} SET notification_id = {p} "
            f"WHERE application_name = {p} AND notification_id < {p}"
        )
        self.insert_sql = (
            f"INSERT INTO {table} (application_name, notification_id) SELECT {p}, {p}"
        )

    @abstractmethod
    def insert_statements(self, tracking: Tracking) -> list[Statement]:
        """The statements that record the position, or raise IntegrityError."""


class LogSql:
    """The statements that read an events table as a log, in LogPosition order.

    This default suits a table whose writers commit in id order: every
    event's transaction reads as 0, and the log is simply ordered by id.
    """

    # The expression for an event's transaction, and the condition (with a
    # transaction and an id parameter) that an event comes after a position.
    transaction_sql = "0"
    after_sql = "id > {p}"
    up_to_sql = "id <= {p}"
    order_columns: tuple[str, ...] = ("id",)
    # Only events that can no longer be overtaken are read (no condition here).
    settled_sql = ""

    def __init__(self, table: str, param: str) -> None:
        self.table = table
        self.param = param
        self._head_sql: dict[str, str] = {}
        self._select_sql: dict[tuple[bool, str, bool], str] = {}

    def head_sql(self, topics_condition: str = "") -> str:
        """The last event readable now (of some topics), with its transaction."""
        if topics_condition not in self._head_sql:
            conditions = [c for c in (self.settled_sql, topics_condition) if c]
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            self._head_sql[topics_condition] = (
                f"SELECT {self.transaction_sql}, id FROM {self.table}{where} "
                f"ORDER BY {self.order_by(' DESC')} LIMIT 1"
            )
        return self._head_sql[topics_condition]

    def order_by(self, direction: str = "") -> str:
        """The log's order, by the table's own columns."""
        # Qualified: a bare name in ORDER BY means the select list's column of
        # that name first, and a cast there (transaction_id::text::bigint) is
        # an expression no index can order by, so every read would sort.
        return ", ".join(f"{self.table}.{c}{direction}" for c in self.order_columns)

    def position_params(self, position: LogPosition) -> list[Any]:
        """The parameters for after_sql or up_to_sql."""
        return [position.notification_id]

    def select_sql(
        self, *, up_to: bool, topics_condition: str, one_stream: bool = False
    ) -> str:
        """Events after a position (up to another), with their transactions."""
        key = (up_to, topics_condition, one_stream)
        if key not in self._select_sql:
            self._select_sql[key] = self._build_select_sql(*key)
        return self._select_sql[key]

    def _build_select_sql(
        self, up_to: bool, topics_condition: str, one_stream: bool
    ) -> str:
        conditions = [self.after_sql.format(p=self.param)]
        if self.settled_sql:
            conditions.append(self.settled_sql)
        if up_to:
            conditions.append(self.up_to_sql.format(p=self.param))
        if topics_condition:
            conditions.append(topics_condition)
        if one_stream:
            conditions.append(f"originator_id = {self.param}")
        return (
            f"SELECT {self.transaction_sql}, id, originator_id, originator_version, "
            f"topic, state FROM {self.table} WHERE {' AND '.join(conditions)} "
            f"ORDER BY {self.order_by()} LIMIT {self.param}"
        )

    # Read-your-writes: the horizon when asked, and whether the log has
    # settled up to it (every transaction begun before it has ended).
    horizon_sql: str | None = None
    settled_up_to_sql: str | None = None


class _Kept:
    """The connection a Database keeps for writing, and the process it was made in."""

    def __init__(self, pooled: Any, pid: int) -> None:
        self.pooled = pooled
        self.connection: Connection = pooled.driver_connection
        self.pid = pid

    def discard(self) -> None:
        """Close it, and give its place in the pool back."""
        self.pooled.invalidate()
        self.pooled.close()


class _Transaction:
    """A transaction in progress on one connection."""

    def __init__(self, connection: Connection, begin: Sequence[Statement]) -> None:
        self.connection = connection
        self.failed = False
        self.begun = False
        self._savepoints = 0
        # Statements owed to the server before the next one: BEGIN, SAVEPOINTs.
        self._due: list[Statement] = list(begin)
        # Statements to run once it commits (each once): NOTIFY.
        self.after_commit: list[Statement] = []

    def add_after_commit(self, statements: Sequence[Statement]) -> None:
        """Run these once the transaction commits, unless already to be run."""
        for statement in statements:
            if statement not in self.after_commit:
                self.after_commit.append(statement)

    def take_due(self) -> list[Statement]:
        """The statements owed, now counted as sent."""
        due, self._due = self._due, []
        self.begun = True
        return due

    def add_savepoint(self) -> Statement:
        """Owe a new SAVEPOINT; return it."""
        self._savepoints += 1
        savepoint: Statement = (f"SAVEPOINT s{self._savepoints}", ())
        self._due.append(savepoint)
        return savepoint

    def cancel_due(self, statement: Statement) -> bool:
        """Stop owing the statement; False if it was already sent."""
        if statement in self._due:
            self._due.remove(statement)
            return True
        return False

    def check_not_failed(self) -> None:
        """Refuse to commit a transaction that part of the work failed in."""
        if self.failed:
            msg = "A statement in this transaction failed, so it was rolled back."
            raise ProgrammingError(msg)


# SQLSTATEs of a write that lost a race without a unique violation: it waited
# too long for another transaction's rows (lock_not_available), or it was
# chosen to break a deadlock (deadlock_detected). Retrying it is safe.
class _CurrentTransaction(threading.local):
    """Each thread's transaction in progress on one Database, if it has one."""

    transaction: _Transaction | None = None


_LOST_RACE_SQLSTATES = frozenset({"55P03", "40P01"})


def _persistence_error(error: Exception) -> PersistenceError:
    """The eventsourcing exception for a DB-API or SQLAlchemy error."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return ConnectionUnavailableError(str(error))
    if getattr(error, "sqlstate", None) in _LOST_RACE_SQLSTATES:
        # As a version conflict is raised: the library's RecordConflictError.
        return IntegrityError(str(error))
    # Drivers subclass the PEP 249 classes (psycopg's UniqueViolation is an
    # IntegrityError), and so does SQLAlchemy when wrapping connect errors.
    for cls in type(error).__mro__:
        if cls.__name__ in _EXCEPTIONS_BY_DBAPI_NAME:
            return _EXCEPTIONS_BY_DBAPI_NAME[cls.__name__](str(error))
    return PersistenceError(str(error))


class SqlRecorder(Recorder):
    """The base of this package's recorders: tables, and transactions on them."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.tables: list[Table] = []

    def create_table(self) -> None:
        """Create this recorder's tables unless they exist (SQLAlchemy's DDL)."""
        with self.database.translated_errors():
            self.database.create_tables(self.database.engine, self.tables)

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

    def deferred_transaction(self) -> AbstractContextManager[Connection]:
        """A transaction() that sends BEGIN with its first statement."""
        return self.database.transaction(deferred=True)

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside transaction(): if the block raises, undo only the block's writes."""
        return self.database.savepoint()

    def in_transaction(self) -> bool:
        """Whether this context has a transaction() in progress."""
        return self.database.in_transaction()

    def _table_name(self, table: Table) -> str:
        return str(self.database.engine.dialect.identifier_preparer.format_table(table))


class SqlAggregateRecorder(SqlRecorder, AggregateRecorder):
    """Inserts and selects the stored events (or snapshots) of aggregates."""

    def __init__(self, database: Database, *, events_table: Table) -> None:
        super().__init__(database)
        self.events_table = events_table
        self.tables.append(events_table)
        # An events table numbers its rows: that number is the notification id.
        self.has_notification_ids = "id" in events_table.c
        # The channel eventsourcing_sqlalchemy notifies, so subscribers of
        # either module wake up for writes by either.
        self.channel = events_table.name.replace(".", "_")
        self._select_events_sql: dict[tuple[bool, bool, bool, bool], str] = {}
        self._written = threading.local()

    def create_table(self) -> None:
        """Create the tables unless they exist, and ready the events for reading."""
        super().create_table()
        if self.has_notification_ids:
            with self.database.translated_errors():
                # Known now: by_transaction need not ask the database again.
                self.by_transaction = self.database.upgrade_log(self.events_table)

    @functools.cached_property
    def by_transaction(self) -> bool:
        """Whether the log is read in (transaction, id) order (asked once)."""
        with self.database.translated_errors():
            return self.has_notification_ids and self.database.records_transactions(
                self.events_table
            )

    @functools.cached_property
    def events_sql(self) -> EventsSql:
        """The SQL that writes events (made at first use, once the table is made)."""
        return self.database.events_sql(
            self._table_name(self.events_table),
            self.channel,
            returning=self.has_notification_ids,
            by_transaction=self.by_transaction,
        )

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
            StoredEvent(decode_id(originator_id), version, topic, state)
            for originator_id, version, topic, state in rows
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
        results = self.database.write(statements, self.events_sql.after_commit)
        # Only the INSERTs return rows: the new ids (given out in the order
        # the events were listed), and on PostgreSQL their transaction.
        returned = [row for rows in results for row in rows]
        if returned:
            last = max(returned, key=lambda row: row[0])
            self._written.position = LogPosition(
                last[1] if len(last) > 1 else 0, last[0]
            )
        return sorted(row[0] for row in returned)

    def written_position(self) -> LogPosition | None:
        """The log position just after the events this thread last wrote, if any."""
        position: LogPosition | None = getattr(self._written, "position", None)
        return position

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
        return self.events_sql.insert_statements(rows)


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
        params: list[Any] = [value for value in (start, stop) if value is not None]
        topics_count = 0
        if topics:
            topics_params = self.database.topics_params(topics)
            topics_count = len(topics_params)
            params += topics_params
        params.append(limit)
        key = (start_kind, stop is not None, topics_count)
        try:
            sql = self._select_notifications_sql[key]
        except KeyError:
            sql = self._build_select_notifications_sql(*key)
            self._select_notifications_sql[key] = sql
        with self.database.reading() as connection:
            rows = connection.execute(sql, params).fetchall()
        decode_id = self.database.decode_id
        return [
            Notification(decode_id(originator_id), version, topic, state, id=id_)
            for id_, originator_id, version, topic, state in rows
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
        if topics_count:
            conditions.append(self.database.topics_condition(topics_count))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            "SELECT id, originator_id, originator_version, topic, state "
            f"FROM {self._table_name(self.events_table)}{where} ORDER BY id LIMIT {p}"
        )

    @functools.cached_property
    def log_sql(self) -> LogSql:
        """The SQL that reads the log in LogPosition order (made at first use)."""
        return self.database.log_sql(
            self._table_name(self.events_table), by_transaction=self.by_transaction
        )

    def select_log(
        self,
        after: LogPosition,
        limit: int,
        up_to: LogPosition | None = None,
        topics: Sequence[str] = (),
        originator_id: UUID | None = None,
    ) -> list[tuple[LogPosition, Notification]]:
        """Up to `limit` events after a position (up to another), in log order.

        Unlike select_notifications(), which goes by id, this never passes an
        event that a slower transaction has yet to commit. With an
        originator id, only that aggregate's events.
        """
        log = self.log_sql
        params = log.position_params(after)
        if up_to is not None:
            params += log.position_params(up_to)
        topics_condition = ""
        if topics:
            topics_params = self.database.topics_params(topics)
            params += topics_params
            topics_condition = self.database.topics_condition(len(topics_params))
        if originator_id is not None:
            params.append(self.database.encode_id(originator_id))
        params.append(limit)
        sql = log.select_sql(
            up_to=up_to is not None,
            topics_condition=topics_condition,
            one_stream=originator_id is not None,
        )
        with self.database.reading() as connection:
            rows = connection.execute(sql, params).fetchall()
        decode_id = self.database.decode_id
        return [
            (
                LogPosition(transaction_id, id_),
                Notification(decode_id(originator_id), version, topic, state, id=id_),
            )
            for transaction_id, id_, originator_id, version, topic, state in rows
        ]

    def count_log(
        self,
        after: LogPosition,
        up_to: LogPosition,
        topics: Sequence[str] = (),
        most: int = 100_000,
    ) -> int:
        """How many events lie after a position up to another (counted to `most`)."""
        log = self.log_sql
        params = [*log.position_params(after), *log.position_params(up_to)]
        topics_condition = ""
        if topics:
            topics_params = self.database.topics_params(topics)
            params += topics_params
            topics_condition = self.database.topics_condition(len(topics_params))
        params.append(most)
        select = log.select_sql(up_to=True, topics_condition=topics_condition)
        with self.database.reading() as connection:
            row = connection.execute(
                f"SELECT COUNT(*) FROM ({select}) AS counted", params
            ).fetchone()
        return int(row[0])

    def log_head(self, topics: Sequence[str] = ()) -> LogPosition:
        """The position after the last event (of these topics) that can be read now."""
        params: list[Any] = []
        topics_condition = ""
        if topics:
            params = self.database.topics_params(topics)
            topics_condition = self.database.topics_condition(len(params))
        sql = self.log_sql.head_sql(topics_condition)
        with self.database.reading() as connection:
            row = connection.execute(sql, params).fetchone()
        return LOG_START if row is None else LogPosition(*row)

    def log_horizon(self) -> int:
        """A mark of now, to wait for with log_settled(): 0 if nothing to wait for."""
        if self.log_sql.horizon_sql is None:
            return 0
        with self.database.reading() as connection:
            row = connection.execute(self.log_sql.horizon_sql).fetchone()
        return cast("int", row[0])

    def log_settled(self, horizon: int) -> bool:
        """Whether every event committed before the horizon can be read now."""
        if self.log_sql.settled_up_to_sql is None or horizon == 0:
            return True
        with self.database.reading() as connection:
            row = connection.execute(self.log_sql.settled_up_to_sql, (horizon,))
            return bool(row.fetchone()[0])

    def max_notification_id(self) -> int | None:
        """The id of the last notification, or None if there are none."""
        with self.database.reading() as connection:
            row = connection.execute(self.max_notification_id_sql).fetchone()
        return cast("int | None", row[0])

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Iterate over notifications after `gt`, waiting for new ones (PostgreSQL)."""
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
        # so an event committed in between still wakes the puller. (A database
        # that can't listen raises NotImplementedError here.)
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
        table = self._table_name(tracking_table)
        self.tracking_sql = database.tracking_sql(table)
        self.max_tracking_id_sql = (
            f"SELECT notification_id FROM {table} "
            f"WHERE application_name = {database.param}"
        )

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record the position, or raise IntegrityError if it is not beyond the last."""
        self.database.write(self.tracking_sql.insert_statements(tracking))

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
        return [*self.tracking_sql.insert_statements(tracking), *events]
