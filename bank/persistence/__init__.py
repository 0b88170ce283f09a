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
message (``BEGIN; SET LOCAL lock_timeout ...; INSERT ... RETURNING id; COMMIT;
NOTIFY ...``), so a write costs one round trip. A write takes the one
connection each database keeps out of the pool for writing, when it is free
(group commit makes that the usual case), and skips the pool's checkout,
reset and return.

The package: ``base`` has the recorders and all that the databases share, and
``Database``, whose hooks ``sqlite.SqliteDatabase`` and
``postgres.PostgresDatabase`` implement with everything particular to each;
this module has the factory, which picks the class from the engine's dialect.

The guarantees an event store owes its application:

- The events of one ``insert_events`` call are written in one transaction,
  all or none; a version that already exists raises ``IntegrityError``.
- A reader of the log never passes an event that commits later:
  ``select_log()`` reads in ``LogPosition`` order. On SQLite one writer at a
  time commits (``BEGIN IMMEDIATE``), so that is id order. On PostgreSQL
  writers don't lock the table (they would all wait for one another's
  commit): each event records its writing transaction
  (``transaction_id xid8 DEFAULT pg_current_xact_id()``, added to the
  table, 0 for events from before), the log is ordered by (transaction, id),
  and readers take only events whose transaction is older than every one
  still running (``pg_snapshot_xmin``), so nothing can commit among them
  later. A transaction left open anywhere on the server holds readers back
  until it ends. A failed write still uses up its ids, so ids can skip.
- ``select_notifications()`` keeps the library's meaning, by id; on
  PostgreSQL, ids of concurrent writes may interleave and commit out of
  order, so it is for reading what is settled, not for following the log.
  (A table made without ``transaction_id``, with ``CREATE_TABLE`` off, is
  written as before, under ``LOCK TABLE ... IN EXCLUSIVE MODE``.)
- ``NOTIFY`` is sent after the commit: inside the transaction it would hold
  PostgreSQL's global notify lock through the commit's WAL flush.
- A write waits at most 50 ms for another transaction's rows (the same
  account version), then fails as a version conflict (``IntegrityError``),
  as does a write chosen to break a deadlock, and the application retries.
- Tracking is a compare-and-set: a position is recorded only if it is beyond
  the one stored, so two projectors can never both apply one notification.
- ``recorder.transaction()`` runs several recorder calls and your own SQL as
  one transaction, for read models that must change with their tracking;
  ``recorder.savepoint()`` inside it undoes only its own block's writes when
  the block raises (group commit runs each command in one).
- Database errors are raised as the ``eventsourcing.persistence`` exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from eventsourcing.utils import resolve_topic
from eventsourcing_sqlalchemy import factory as sqlalchemy_factory
from sqlalchemy.engine import Engine

from bank.persistence.base import (
    LOG_START,
    Connection,
    Database,
    LogPosition,
    Rows,
    SqlAggregateRecorder,
    SqlApplicationRecorder,
    SqlProcessRecorder,
    SqlRecorder,
    SqlSubscription,
    SqlTrackingRecorder,
    Statement,
    unsupported_database,
)
from bank.persistence.postgres import PostgresDatabase
from bank.persistence.sqlite import SqliteDatabase

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.utils import Environment
    from sqlalchemy import Table

__all__ = [
    "DATABASES",
    "LOG_START",
    "Connection",
    "Database",
    "Factory",
    "LogPosition",
    "PostgresDatabase",
    "Rows",
    "SqlAggregateRecorder",
    "SqlApplicationRecorder",
    "SqlFactory",
    "SqlProcessRecorder",
    "SqlRecorder",
    "SqlSubscription",
    "SqlTrackingRecorder",
    "SqliteDatabase",
    "Statement",
    "create_tables",
]

# The Database class for each SQLAlchemy dialect name.
DATABASES: dict[str, type[Database]] = {
    "postgresql": PostgresDatabase,
    "sqlite": SqliteDatabase,
}


def create_tables(engine: Engine, tables: Sequence[Table]) -> None:
    """Create the missing tables; safe when several processes start at once."""
    # Any other database's engine gets them made, without a lock.
    DATABASES.get(engine.dialect.name, Database).create_tables(engine, tables)


class SqlFactory(sqlalchemy_factory.SQLAlchemyFactory):
    """Makes these recorders on eventsourcing_sqlalchemy's engine and tables."""

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
        database_class = DATABASES.get(engine.dialect.name)
        if database_class is None:
            raise unsupported_database(engine)
        self.database = database_class(engine)

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
