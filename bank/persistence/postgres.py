"""PostgreSQL: each write one message to the server; the log ordered by transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from sqlalchemy import text

from bank.persistence.base import (
    NO_LOCK,
    Database,
    EventsSql,
    LogPosition,
    LogSql,
    TrackingSql,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from eventsourcing.persistence import Tracking
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection as SqlAlchemyConnection

    from bank.persistence.base import Connection, Row, Rows, Statement

_IDLE = psycopg.pq.TransactionStatus.IDLE
# Each event's writing transaction, by which readers order the log.
TRANSACTION_COLUMN = "transaction_id"
_DDL_LOCK = 0x62616E6B  # any constant shared by every process creating our tables


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3."""

    is_postgres = True
    param = "%s"
    # A write waits at most this long for another transaction's rows (an
    # account version it is also writing), then loses the race and is
    # retried, instead of queueing behind a chain of group commits or
    # waiting a second for PostgreSQL to detect a deadlock.
    begin_sql = "BEGIN"
    begin = ((begin_sql, ()), ("SET LOCAL lock_timeout = '50ms'", ()))

    def encode_id(self, originator_id: UUID | str) -> UUID:
        """An originator id as UUIDType stores it on PostgreSQL: a native uuid."""
        return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)

    def run(
        self, connection: Connection, statements: Sequence[Statement]
    ) -> list[Rows]:
        """Run the statements in one message; the first that fails stops the rest."""
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

    def writer_lock(self) -> AbstractContextManager[None]:
        """None: the write's own statements lock what they must."""
        return NO_LOCK

    def reader_lock(self) -> AbstractContextManager[None]:
        """None: readers don't wait for writers."""
        return NO_LOCK

    def prepare(self, connection: Connection) -> None:
        """Switch psycopg to autocommit while the connection is lent."""
        # psycopg begins a transaction before any statement, SELECTs too,
        # unless in autocommit; transactions are begun explicitly here.
        connection.autocommit = True

    def release(self, connection: Connection) -> bool:
        """Switch autocommit back off, unless the connection must not be pooled."""
        if not self.is_idle(connection):
            return False
        connection.autocommit = False
        return True

    def is_idle(self, connection: Connection) -> bool:
        """Whether the connection is open and in no transaction."""
        return bool(
            not connection.closed and connection.info.transaction_status == _IDLE
        )

    def events_sql(
        self, table: str, channel: str, *, returning: bool, by_transaction: bool
    ) -> EventsSql:
        """The SQL that writes events to the table: inserted, then notified."""
        return PostgresEventsSql(
            table,
            self.param,
            returning=returning,
            channel=channel,
            lock=returning and not by_transaction,
            by_transaction=by_transaction,
        )

    def log_sql(self, table: str, *, by_transaction: bool) -> LogSql:
        """The log by (transaction, id) if the table records transactions, else id."""
        if by_transaction:
            return PostgresLogSql(table, self.param)
        return LogSql(table, self.param)

    def records_transactions(self, table: Table) -> bool:
        """Whether the events table has the transaction_id column."""
        with self.engine.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT 1 FROM information_schema.columns WHERE table_name = "
                    ":table AND table_schema = COALESCE(:schema, current_schema()) "
                    "AND column_name = :column"
                ),
                {
                    "table": table.name,
                    "schema": table.schema,
                    "column": TRANSACTION_COLUMN,
                },
            ).first()
        return found is not None

    def upgrade_log(self, table: Table) -> bool:
        """Record each event's transaction, so writers need not lock the table."""
        # Checked first: ALTER TABLE would take the busiest table's exclusive
        # lock at every start, queueing every writer behind any long reader.
        if self.records_transactions(table):
            return True
        name = self.engine.dialect.identifier_preparer.format_table(table)
        index = f"{table.name}_log_order"
        with self.engine.begin() as connection:
            self.ddl_lock(connection)
            # (A rival may have added it meanwhile: IF NOT EXISTS.)
            # Events written before have transaction 0: before every later one,
            # in the id order they were committed in (under the table lock).
            # A constant default adds the column without rewriting the table.
            for sql in (
                f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {TRANSACTION_COLUMN} "
                "xid8 NOT NULL DEFAULT '0'",
                f"ALTER TABLE {name} ALTER COLUMN {TRANSACTION_COLUMN} "
                "SET DEFAULT pg_current_xact_id()",
                f"CREATE INDEX IF NOT EXISTS {index} "
                f"ON {name} ({TRANSACTION_COLUMN}, id)",
            ):
                connection.exec_driver_sql(sql)
        return True

    def tracking_sql(self, table: str) -> TrackingSql:
        """The SQL that records positions in the tracking table."""
        return PostgresTrackingSql(table, self.param)

    def topics_params(self, topics: Sequence[str]) -> list[Any]:
        """The topics as one array parameter."""
        return [list(topics)]

    def topics_condition(self, count: int) -> str:
        """topic = ANY(%s): the topics come as one array."""
        return f"topic = ANY({self.param})"

    def listening(self, channel: str) -> Connection:
        """A connection of its own that listens on the channel."""
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

    @staticmethod
    def ddl_lock(connection: SqlAlchemyConnection) -> None:
        """Make rival processes creating tables wait for this transaction."""
        # DDL is transactional here: rivals wait, then find the tables made
        # instead of colliding in pg_type.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK}
        )


class PostgresEventsSql(EventsSql):
    """One INSERT of all the events, and NOTIFY once they are committed."""

    def __init__(
        self,
        table: str,
        param: str,
        *,
        returning: bool,
        channel: str,
        lock: bool,
        by_transaction: bool,
    ) -> None:
        super().__init__(table, param, returning=returning)
        if returning and by_transaction:
            # The writing transaction too: with the id, the events' LogPosition.
            self.returning_sql += f", {TRANSACTION_COLUMN}::text::bigint"
        # Only a table that doesn't record transactions needs the lock, which
        # makes ids commit in the order they are given out; readers of one
        # that does order by transaction instead.
        self.lock = [(f"LOCK TABLE {table} IN EXCLUSIVE MODE", ())] if lock else []
        if returning:
            # After the commit: NOTIFY inside the transaction would hold
            # PostgreSQL's global notify lock through the commit's WAL flush.
            self.after_commit = [(f"NOTIFY {channel}", ())]

    def insert_statements(self, rows: Sequence[Row]) -> list[Statement]:
        """One INSERT of the rows (after LOCK TABLE for an old table)."""
        # PostgreSQL is a round trip away: one INSERT for all the events.
        return [*self.lock, self.insert(rows)]


class PostgresLogSql(LogSql):
    """The log by (writing transaction, id), read only where it has settled."""

    transaction_sql = f"{TRANSACTION_COLUMN}::text::bigint"
    after_sql = f"({TRANSACTION_COLUMN}, id) > ({{p}}::text::xid8, {{p}})"
    up_to_sql = f"({TRANSACTION_COLUMN}, id) <= ({{p}}::text::xid8, {{p}})"
    order_columns = (TRANSACTION_COLUMN, "id")
    # Every transaction older than the oldest still running has ended: no
    # event can commit among these later. (A transaction that stays open
    # anywhere on the server holds readers back until it ends.)
    settled_sql = f"{TRANSACTION_COLUMN} < pg_snapshot_xmin(pg_current_snapshot())"
    # 0 when nothing is running: then all is settled already, and a query
    # that follows a command pays one round trip here, not two.
    horizon_sql = (
        "SELECT CASE WHEN pg_snapshot_xmin(s) = pg_snapshot_xmax(s) THEN 0 "
        "ELSE pg_snapshot_xmax(s)::text::bigint END FROM pg_current_snapshot() AS s"
    )
    settled_up_to_sql = (
        "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= %s::text::xid8"
    )

    def position_params(self, position: LogPosition) -> list[Any]:
        """The transaction (as text, for xid8) and the id."""
        return [str(position.transaction_id), position.notification_id]


class PostgresTrackingSql(TrackingSql):
    """The compare-and-set as one statement."""

    def __init__(self, table: str, param: str) -> None:
        super().__init__(table, param)
        # As one statement, so it can share a message with the others.
        self.move_or_insert_sql = (
            f"WITH moved AS ({self.update_sql} RETURNING 1) "
            f"{self.insert_sql} WHERE NOT EXISTS (SELECT FROM moved)"
        )

    def insert_statements(self, tracking: Tracking) -> list[Statement]:
        """The UPDATE, and the INSERT if it moved no row, in one statement."""
        name, position = tracking.application_name, tracking.notification_id
        return [(self.move_or_insert_sql, (position, name, position, name, position))]
