"""The projector: applies the log to the read models, a batch per transaction."""

from __future__ import annotations

import contextlib
import json
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    MetaData,
    any_,
    bindparam,
    cast,
    delete,
    func,
    inspect,
    literal,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import column as sql_column
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError as SQLAlchemyIntegrityError

from bank.domain import Account
from bank.persistence import DATABASES, create_tables
from bank.persistence.base import Database, LogPosition
from bank.projections.rows import (
    HoldRows,
    Row,
    TransferRows,
    legacy_row,
    new_row,
    statement_line,
)
from bank.projections.sealer import Sealer
from bank.projections.tables import (
    HOLD_EVENTS,
    PROJECTION_NAME,
    is_pending,
    ledger_tables,
)
from bank.transfers import Transfer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from uuid import UUID

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql import Select

    from bank.eventlog import EventLog, LoggedEvent

BATCH_SIZE = 1000


class LedgerProjection:
    """Keeps the ledger tables in step with the application's notification log."""

    def __init__(
        self,
        engine: Engine,
        log: EventLog,
        schema: str | None = None,
        sealer: Sealer | None = None,
        write_lock: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.engine = engine
        self.log = log
        # The bank's writers' lock, for SQLite: a batch then queues with the
        # commands instead of polling in SQLite's busy handler (1-100 ms naps).
        self.write_lock = write_lock
        self.sealer = sealer or Sealer(None, None)
        self.metadata = MetaData(schema=schema)
        self.tables = ledger_tables(self.metadata)
        self.accounts = self.tables.accounts
        self.statement_lines = self.tables.statement_lines
        self.transfers = self.tables.transfers
        self.holds = self.tables.holds
        self.positions = self.tables.positions
        # Where the last batch this projector applied ended, and the transfers
        # it created: the next batch often names them (a transfer's Created
        # can end one batch and its accounts' events begin the next).
        self._last_batch: tuple[LogPosition | None, set[str]] = (None, set())

    def create_tables(self) -> None:
        """Create the tables and the position row, if missing; renew outdated ones."""
        self._add_position_transaction()
        self._drop_outdated_tables()
        create_tables(self.engine, list(self.metadata.tables.values()))
        with self.engine.connect() as db:
            exists = db.execute(
                select(self.positions.c.name).where(self._named)
            ).first()
        if exists is None:
            # Another process may insert it first: theirs is as good as ours.
            with (
                contextlib.suppress(SQLAlchemyIntegrityError),
                self.engine.begin() as db,
            ):
                db.execute(
                    self.positions.insert().values(
                        name=PROJECTION_NAME,
                        position=0,
                        position_transaction=0,
                        rebuilding=False,
                    )
                )

    def _add_position_transaction(self) -> None:
        """Give a positions table from before positions had two parts the second."""
        column = self.positions.c.position_transaction
        schema = self.metadata.schema
        with self.engine.connect() as db:
            inspector = inspect(db)
            if not inspector.has_table(self.positions.name, schema):
                return
            names = inspector.get_columns(self.positions.name, schema)
        if any(found["name"] == column.name for found in names):
            return
        table = self.engine.dialect.identifier_preparer.format_table(self.positions)
        with self.engine.begin() as db:
            DATABASES.get(db.dialect.name, Database).ddl_lock(db)
            names = inspect(db).get_columns(self.positions.name, schema)
            if not any(found["name"] == column.name for found in names):
                # Positions so far were ids of a log read in id order: the
                # transaction part 0 puts them before every event since.
                db.exec_driver_sql(
                    f"ALTER TABLE {table} ADD COLUMN {column.name} "
                    "BIGINT NOT NULL DEFAULT 0"
                )

    def _drop_outdated_tables(self) -> None:
        """Replace derived tables an older release made without today's columns.

        They hold nothing but what the log gives, so they are dropped, made
        anew and the position rewound: the next catch-up refills them, and a
        bank upgraded in place keeps working.
        """
        with self.engine.connect() as db:
            if not self._outdated(db):
                return
        with self.engine.begin() as db:
            DATABASES.get(db.dialect.name, Database).ddl_lock(db)
            # A write first takes SQLite's lock, so a rival that also saw the
            # old tables waits here, then finds them renewed.
            db.execute(
                update(self.positions)
                .where(self._named)
                .values(rebuilding=self.positions.c.rebuilding)
            )
            if not self._outdated(db):
                return
            db.execute(
                update(self.positions)
                .where(self._named)
                .values(position=0, position_transaction=0, rebuilding=False)
            )
            for table in reversed(self.tables.derived):
                table.drop(db, checkfirst=True)
            for table in self.tables.derived:
                table.create(db)

    def _outdated(self, db: Connection) -> bool:
        """Whether the projection has run before and a derived table is not as now."""
        inspector = inspect(db)
        schema = self.metadata.schema
        if not inspector.has_table(self.positions.name, schema):
            return False
        for table in self.tables.derived:
            if not inspector.has_table(table.name, schema):
                return True
            columns = {
                column["name"] for column in inspector.get_columns(table.name, schema)
            }
            if not set(table.columns.keys()) <= columns:
                return True
        return False

    def position(self) -> LogPosition:
        """The log position of the last event applied."""
        columns = self.positions.c
        with self.engine.connect() as db:
            transaction_id, notification_id = db.execute(
                select(columns.position_transaction, columns.position).where(
                    self._named
                )
            ).one()
        return LogPosition(int(transaction_id), int(notification_id))

    def state(self) -> tuple[LogPosition, bool]:
        """The position of the last event applied, and whether a rebuild is on."""
        columns = self.positions.c
        query = select(
            columns.position_transaction, columns.position, columns.rebuilding
        ).where(self._named)
        with self.engine.connect() as db:
            transaction_id, notification_id, rebuilding = db.execute(query).one()
        return LogPosition(int(transaction_id), int(notification_id)), bool(rebuilding)

    def lag(self, head: LogPosition, position: LogPosition | None = None) -> int:
        """How many events the read models are behind the head (counted to 100,000).

        `position` is where they are, when the caller has just read it.
        """
        return self.log.count(self.position() if position is None else position, head)

    def is_rebuilding(self) -> bool:
        """Whether a rebuild was started and has not finished."""
        with self.engine.connect() as db:
            rebuilding = db.execute(
                select(self.positions.c.rebuilding).where(self._named)
            ).scalar_one()
        return bool(rebuilding)

    def catch_up(
        self,
        batch_size: int = BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
        *,
        settle: bool = True,
    ) -> int:
        """Apply every event recorded after the position; return how many.

        With `settle`, first wait (a few seconds at most) for transactions
        older than this call to commit, so that every event committed before
        it is applied: read-your-writes.
        """
        if settle:
            self.log.settle()
        applied = 0
        while True:
            position = self.position()
            # Decoded here, before the transaction that holds the position's lock.
            events = self.log.page(position, batch_size)
            if not events:
                return applied
            if self._apply(position, events):
                applied += len(events)
                if progress:
                    progress(events[-1].notification_id)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Rebuild the tables from the whole log; an interrupted rebuild resumes."""
        if not self.is_rebuilding():
            self.start_rebuild()
        applied = self.catch_up(progress=progress)
        self.finish_rebuild()
        return applied

    def start_rebuild(self) -> None:
        """Empty the tables and rewind to the start of the log."""
        self.create_tables()
        with self.engine.begin() as db:
            for table in self.tables.derived:
                db.execute(table.delete())
            db.execute(
                update(self.positions)
                .where(self._named)
                .values(position=0, position_transaction=0, rebuilding=True)
            )

    def finish_rebuild(self) -> None:
        """Mark the rebuild as done."""
        with self.engine.begin() as db:
            db.execute(
                update(self.positions).where(self._named).values(rebuilding=False)
            )

    @property
    def _named(self) -> Any:
        return self.positions.c.name == PROJECTION_NAME

    def _apply(self, start: LogPosition, events: Sequence[LoggedEvent]) -> bool:
        """Apply one batch; False when another projector got there first."""
        end = events[-1].position
        columns = self.positions.c
        with self.write_lock(), self.engine.begin() as db:
            # The compare-and-set comes first: it takes the write lock on the
            # position row, so a rival waits, then finds the position moved.
            claimed = db.execute(
                update(self.positions)
                .where(self._named)
                .where(columns.position == start.notification_id)
                .where(columns.position_transaction == start.transaction_id)
                .values(
                    position=end.notification_id,
                    position_transaction=end.transaction_id,
                )
            ).rowcount
            if claimed != 1:
                return False
            last_end, last_created = self._last_batch
            known = last_created if last_end == start else set()
            created = self._write(db, events, known)
        self._last_batch = (end, created)
        return True

    def _write(
        self, db: Connection, events: Sequence[LoggedEvent], known: set[str]
    ) -> set[str]:
        """Apply a batch (given transfers known to exist); return those it created."""
        sealer = self.sealer
        rows, transfers, holds = self._rows_of(db, events, known)
        lines: list[dict[str, Any]] = []
        for position, domain_event in events:
            notification_id = position.notification_id
            if not isinstance(domain_event, Account.Event):
                if isinstance(domain_event, Transfer.Created):
                    transfers.create(domain_event, notification_id, sealer)
                elif not isinstance(domain_event, Transfer.Reversed):
                    transfers.end_pending(domain_event)
                # A Reversed is applied with its reversal's Created.
                continue
            row = rows.get(domain_event.originator_id)
            if row is None:
                row = rows[domain_event.originator_id] = new_row(domain_event, sealer)
            row.changed = True
            if isinstance(domain_event, Account.TransferSent):
                if domain_event.transfer_id not in transfers.known:
                    # Made before Transfer aggregates: only its halves tell of it.
                    legacy = legacy_row(
                        domain_event, row.values, notification_id, sealer
                    )
                    transfers.add(legacy, loaded=False)
            elif isinstance(domain_event, HOLD_EVENTS):
                holds.apply(row.values, domain_event)
            line = statement_line(row.values, domain_event, notification_id)
            line["reference"] = sealer.seal(line["reference"])
            line["metadata"] = sealer.seal_metadata(line["metadata"])
            lines.append(line)
        _save(db, self.accounts, "account_id", rows.values())
        _save(db, self.transfers, "transfer_id", transfers.rows.values())
        _delete_holds(db, self.holds, holds.ended())
        _insert(db, self.holds, holds.placed())
        _insert(db, self.statement_lines, lines)
        return {tid for tid, row in transfers.rows.items() if row.is_new}

    def _rows_of(
        self, db: Connection, events: Sequence[LoggedEvent], known: set[str]
    ) -> tuple[dict[UUID, Row], TransferRows, HoldRows]:
        """The stored rows of the accounts, transfers and holds a batch names.

        Of a transfer the batch creates, nothing is read; of one whose half it
        records, only whether it has a row.
        """
        accounts: set[UUID] = set()
        ending: set[UUID] = set()  # the streams of pending transfers that end
        halves: set[str] = set()
        holds: set[str] = set()
        originals: set[str] = set()
        created: set[str] = set()
        for _, domain_event in events:
            if isinstance(domain_event, Account.Event):
                accounts.add(domain_event.originator_id)
                if isinstance(domain_event, Account.TransferSent):
                    halves.add(domain_event.transfer_id)
                elif isinstance(domain_event, HOLD_EVENTS):
                    holds.add(domain_event.transfer_id)
            elif isinstance(domain_event, Transfer.Created):
                created.add(domain_event.transfer_id)
                if domain_event.reverses_transfer_id is not None:
                    originals.add(domain_event.reverses_transfer_id)
            elif not isinstance(domain_event, Transfer.Reversed):
                ending.add(domain_event.originator_id)
        table = self.accounts
        # By the text the table keeps: parsing it back costs more than this.
        named = {str(aggregate_id): aggregate_id for aggregate_id in accounts}
        rows = {
            named[values["aggregate_id"]]: Row.loaded(values)
            for values in _select_in(db, select(table), table.c.aggregate_id, named)
        }
        transfers = TransferRows(known=set(known))
        table = self.transfers
        query = select(table).where(is_pending(table))
        for values in _select_in(db, query, table.c.aggregate_id, map(str, ending)):
            transfers.add(values, loaded=True)
        for values in _select_in(
            db, select(table), table.c.transfer_id, originals - created
        ):
            transfers.add(values, loaded=True)
        query = select(table.c.transfer_id)
        unknown = halves - created - transfers.known
        for values in _select_in(db, query, table.c.transfer_id, unknown):
            transfers.known.add(values["transfer_id"])
        placed = HoldRows()
        table = self.holds
        for values in _select_in(db, select(table), table.c.transfer_id, holds):
            key = (values["transfer_id"], values["account_id"])
            placed.rows[key] = values
            placed.stored.add(key)
        return rows, transfers, placed


def _select_in(
    db: Connection, query: Select[Any], column: Any, keys: Iterable[str]
) -> list[dict[str, Any]]:
    """The query's rows whose column is one of the keys, asked in one query.

    On PostgreSQL the keys are one array parameter, each looked up in the
    column's index by a LATERAL subquery: given `column = ANY(keys)` (or a
    join) instead, the planner scans the whole table once the keys are a fair
    share of its rows, a cost that grows with the table. Elsewhere the keys
    are as many parameters as the database takes in one statement.
    """
    keys = list(keys)
    if not keys:
        return []
    if db.dialect.name == "postgresql":
        given = (
            func.unnest(_array(keys, column))
            .table_valued("key")
            .render_derived(name="k")
        )
        # OFFSET 0 keeps the planner from flattening the LATERAL into a join
        # (hashed, over a scan of the whole table).
        found = query.where(column == given.c.key).offset(0).lateral("r")
        statements = [select(found).select_from(given).join(found, true())]
    else:
        size = db.dialect.insertmanyvalues_max_parameters
        statements = [
            query.where(column.in_(keys[i : i + size]))
            for i in range(0, len(keys), size)
        ]
    rows: list[dict[str, Any]] = []
    for statement in statements:
        rows.extend(dict(values) for values in db.execute(statement).mappings())
    return rows


def _save(db: Connection, table: Table, key: str, rows: Iterable[Row]) -> None:
    """Insert the new rows and update the changed ones, each set in one statement.

    An update sets only the columns some row changed: setting the others, if
    only to the values they have, would rewrite the entries of the indexes on
    them, a page each per row, which grows the cost with the table.
    """
    inserts = []
    updates = []
    columns: dict[str, None] = {}
    for row in rows:
        if row.is_new:
            inserts.append(row.values)
        elif row.changed:
            changed = row.changed_columns()
            if changed:
                updates.append(row.values)
                columns.update(dict.fromkeys(changed))
    columns.pop(key, None)
    _insert(db, table, inserts)
    if updates and columns:
        _update(db, table, key, sorted(columns), updates)


def _insert(db: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert the rows (all with the same keys) in one statement."""
    if not rows:
        return
    if db.dialect.name == "postgresql":
        names = list(rows[0])
        db.execute(table.insert().from_select(names, _records(table, names, rows)))
    else:
        db.execute(table.insert(), rows)


def _update(
    db: Connection,
    table: Table,
    key: str,
    columns: Sequence[str],
    rows: list[dict[str, Any]],
) -> None:
    """Set these columns of the rows, which exist, found by their key column.

    On PostgreSQL, one INSERT ... ON CONFLICT (key) DO UPDATE of all the rows:
    they were read in this transaction, under the position's lock, so it
    updates each, found in the key's index. (An UPDATE ... FROM the rows would
    be planned as a join, which can scan the whole table.) Elsewhere, an
    UPDATE of just those columns, which the driver runs for each row.
    """
    if db.dialect.name == "postgresql":
        names = list(rows[0])
        statement = postgresql.insert(table).from_select(
            names, _records(table, names, rows)
        )
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c[key]],
                set_={name: statement.excluded[name] for name in columns},
            )
        )
        return
    db.execute(
        update(table).where(table.c[key] == bindparam("key")),
        [{name: row[name] for name in columns} | {"key": row[key]} for row in rows],
    )


def _delete_holds(db: Connection, table: Table, keys: list[tuple[str, str]]) -> None:
    """Delete the holds of these (transfer id, account id) keys."""
    if not keys:
        return
    columns = table.c
    if db.dialect.name == "postgresql":
        pairs = _records(
            table,
            ["transfer_id", "account_id"],
            [{"transfer_id": t, "account_id": a} for t, a in keys],
        )
        transfer_ids = [transfer_id for transfer_id, _ in keys]
        db.execute(
            delete(table).where(
                # The primary key's first column, for the index.
                columns.transfer_id == any_(_array(transfer_ids, columns.transfer_id)),
                tuple_(columns.transfer_id, columns.account_id).in_(select(*pairs.c)),
            )
        )
        return
    db.execute(
        delete(table).where(
            columns.transfer_id == bindparam("t"),
            columns.account_id == bindparam("a"),
        ),
        [{"t": transfer_id, "a": account_id} for transfer_id, account_id in keys],
    )


def _records(table: Table, names: list[str], rows: list[dict[str, Any]]) -> Any:
    """The rows as a relation with these columns of the table, sent as one JSON.

    json_to_recordset() makes the rows on the server. In the client, encoding
    the JSON costs about half of what an array per column does (the driver
    quotes each value of those) and a third of sending a statement per row.
    """
    payload = json.dumps(rows, default=_json_value)
    columns = [sql_column(name, table.c[name].type) for name in names]
    return (
        func.json_to_recordset(cast(literal(payload), postgresql.JSON))
        .table_valued(*columns)
        .render_derived(name="v", with_types=True)
    )


def _json_value(value: object) -> str:
    """A value JSON has no type for, as PostgreSQL reads it back."""
    if isinstance(value, datetime):
        return value.isoformat()
    msg = f"{type(value).__name__} is not a column value"
    raise TypeError(msg)


def _array(values: list[Any], column: Any) -> Any:
    """The values as one PostgreSQL array parameter of the column's type."""
    return literal(values, postgresql.ARRAY(column.type))
