"""PostgreSQL: each write one message to the server, its ids ordered by a table lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from sqlalchemy import text

from bank.persistence.base import NO_LOCK, Database, EventsSql, TrackingSql

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from eventsourcing.persistence import Tracking
    from sqlalchemy.engine import Connection as SqlAlchemyConnection

    from bank.persistence.base import Connection, Row, Rows, Statement

_IDLE = psycopg.pq.TransactionStatus.IDLE
_DDL_LOCK = 0x62616E6B  # any constant shared by every process creating our tables


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3."""

    is_postgres = True
    param = "%s"
    begin_sql = "BEGIN"

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

    def events_sql(self, table: str, channel: str, *, returning: bool) -> EventsSql:
        """The SQL that writes events to the table: locked, inserted, notified."""
        return PostgresEventsSql(
            table, self.param, returning=returning, channel=channel
        )

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
    """One INSERT of all the events, with the lock and NOTIFY around it."""

    def __init__(
        self, table: str, param: str, *, returning: bool, channel: str
    ) -> None:
        super().__init__(table, param, returning=returning)
        self.has_notification_ids = returning
        self.lock_table_sql = f"LOCK TABLE {table} IN EXCLUSIVE MODE"
        self.notify_sql = f"NOTIFY {channel}"

    def insert_statements(self, rows: Sequence[Row]) -> list[Statement]:
        """LOCK TABLE, INSERT and NOTIFY; just the INSERT for a table without ids."""
        # PostgreSQL is a round trip away: one INSERT for all the events.
        insert = self.insert(rows)
        if not self.has_notification_ids:
            return [insert]
        # The lock makes ids commit in the order they are given out; NOTIFY
        # wakes subscribers when the transaction commits.
        return [(self.lock_table_sql, ()), insert, (self.notify_sql, ())]


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
