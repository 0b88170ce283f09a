"""Read models: SQL tables kept up to date from the notification log.

Processing an event (the write side) decides and records it; a projection only
follows the recorded log and shapes it for questions the write side can't
answer cheaply ("which accounts does this owner have?", "the statement for
March"). The projection here is a separate consumer: it reads the application's
notification log after its own tracked position and applies a batch of events
to its tables in one transaction, in which it also advances the position with a
compare-and-set (`UPDATE ... WHERE position = <where I started>`). Two
projectors racing over the same batch cannot both commit it, so every event is
applied exactly once, and the tables can be dropped and rebuilt from the log at
any time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.utils import strtobool
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError as SQLAlchemyIntegrityError

from bank.domain import (
    Account,
    BankError,
    InvalidCommandError,
    check_email,
    event_fields,
    in_utc,
    normalise_account_id,
)
from bank.persistence import create_tables

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Cipher
    from sqlalchemy.engine import Connection, Engine

    from bank.application import BankApplication
    from bank.eventlog import EventLog, LoggedEvent

PROJECTION_NAME = "ledger"
BATCH_SIZE = 1000
# The most an Integer (int4) version column holds, so the most a version may be.
MAX_VERSION = 2**31 - 1
# How each event shows on a statement, and the sign it gives its amount.
STATEMENT_KINDS: dict[type[Account.Event], tuple[str, int]] = {
    Account.Opened: ("opened", 0),
    Account.Deposited: ("deposit", 1),
    Account.Withdrawn: ("withdrawal", -1),
    Account.TransferSent: ("transfer_out", -1),
    Account.TransferReceived: ("transfer_in", 1),
    Account.OverdraftLimitSet: ("overdraft_limit_set", 0),
    Account.Closed: ("closed", 0),
}

Money = BigInteger().with_variant(Integer(), "sqlite")
NotificationId = BigInteger().with_variant(Integer(), "sqlite")


class ReadModelsUnavailableError(BankError):
    """The bank's store has no SQL database to keep read models in."""

    code = "read_models_unavailable"


def ledger_tables(metadata: MetaData) -> tuple[Table, Table, Table]:
    """The accounts view, the statement lines and the projection's position."""
    accounts = Table(
        "bank_account_views",
        metadata,
        Column("account_id", String(64), primary_key=True),
        # Events name their account by aggregate id; this finds the row.
        Column("aggregate_id", String(36), nullable=False, unique=True),
        # Sealed (encrypted) when the bank has a cipher key; found by owner_key.
        Column("owner_email", String(512), nullable=False),
        Column("owner_key", String(254), nullable=False),
        Column("balance_in_cents", Money, nullable=False),
        Column("overdraft_limit_in_cents", Money, nullable=False),
        Column("closed", Boolean, nullable=False),
        Column("version", Integer, nullable=False),
        Column("opened_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("bank_account_views_owner_idx", "owner_key", "account_id"),
    )
    statement_lines = Table(
        "bank_statement_lines",
        metadata,
        Column("account_id", String(64), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("amount_in_cents", Money, nullable=False),
        Column("balance_after_in_cents", Money, nullable=False),
        Column("transfer_id", String(64)),
        Column("counterparty_account_id", String(64)),
        Column("reference", String(512)),
        Column("timestamp", DateTime(timezone=True), nullable=False),
        Column("notification_id", NotificationId, nullable=False),
        Index("bank_statement_lines_time_idx", "account_id", "timestamp"),
    )
    positions = Table(
        "bank_projection_positions",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("position", NotificationId, nullable=False),
        Column("rebuilding", Boolean, nullable=False),
    )
    return accounts, statement_lines, positions


class Sealer:
    """Keeps personal text in the read models as encrypted as the event store.

    Without a cipher it changes nothing. With one, text is stored encrypted,
    and an owner is found by a keyed hash of their email instead.
    """

    PREFIX = "sealed:"

    def __init__(self, cipher: Cipher | None, cipher_key: str | None) -> None:
        self.cipher = cipher
        self._hash_key = base64.b64decode(cipher_key) if cipher and cipher_key else None

    def seal(self, text: str | None) -> str | None:
        """The text as stored."""
        if self.cipher is None or not text:
            return text
        sealed = self.cipher.encrypt(text.encode())
        return self.PREFIX + base64.b64encode(sealed).decode()

    def open(self, stored: str | None) -> str | None:
        """The text as it was before sealing."""
        if self.cipher is None or not stored or not stored.startswith(self.PREFIX):
            return stored
        sealed = base64.b64decode(stored.removeprefix(self.PREFIX))
        return self.cipher.decrypt(sealed).decode()

    def lookup_key(self, email: str) -> str:
        """What an owner's accounts are indexed by."""
        if self._hash_key is None:
            return email
        return hmac.new(self._hash_key, email.encode(), hashlib.sha256).hexdigest()


@dataclass
class _AccountRow:
    """One account view row, changed in memory while a batch is applied."""

    values: dict[str, Any]
    is_new: bool = False
    changed: bool = False


class LedgerProjection:
    """Keeps the ledger tables in step with the application's notification log."""

    def __init__(
        self,
        engine: Engine,
        log: EventLog,
        schema: str | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.engine = engine
        self.log = log
        self.sealer = sealer or Sealer(None, None)
        self.metadata = MetaData(schema=schema)
        self.accounts, self.statement_lines, self.positions = ledger_tables(
            self.metadata
        )

    def create_tables(self) -> None:
        """Create the tables and the position row, if missing."""
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
                        name=PROJECTION_NAME, position=0, rebuilding=False
                    )
                )

    def position(self) -> int:
        """The notification id of the last event applied."""
        with self.engine.connect() as db:
            position = db.execute(
                select(self.positions.c.position).where(self._named)
            ).scalar_one()
        return int(position)

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
    ) -> int:
        """Apply every event recorded after the position; return how many."""
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
            db.execute(self.statement_lines.delete())
            db.execute(self.accounts.delete())
            db.execute(
                update(self.positions)
                .where(self._named)
                .values(position=0, rebuilding=True)
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

    def _apply(self, start: int, events: Sequence[LoggedEvent]) -> bool:
        """Apply one batch; False when another projector got there first."""
        with self.engine.begin() as db:
            # The compare-and-set comes first: it takes the write lock on the
            # position row, so a rival waits, then finds the position moved.
            claimed = db.execute(
                update(self.positions)
                .where(self._named)
                .where(self.positions.c.position == start)
                .values(position=events[-1].notification_id)
            ).rowcount
            if claimed != 1:
                return False
            self._write(db, events)
        return True

    def _write(self, db: Connection, events: Sequence[LoggedEvent]) -> None:
        rows = self._rows_of(db, {logged.event.originator_id for logged in events})
        lines = []
        for notification_id, domain_event in events:
            row = rows.get(domain_event.originator_id)
            if row is None:
                row = rows[domain_event.originator_id] = _new_row(
                    domain_event, self.sealer
                )
            row.changed = True
            line = _statement_line(row.values, domain_event, notification_id)
            line["reference"] = self.sealer.seal(line["reference"])
            lines.append(line)
        inserts = [row.values for row in rows.values() if row.is_new]
        updates = [
            {**row.values, "key": row.values["account_id"]}
            for row in rows.values()
            if row.changed and not row.is_new
        ]
        if inserts:
            db.execute(self.accounts.insert(), inserts)
        if updates:
            db.execute(
                update(self.accounts).where(
                    self.accounts.c.account_id == bindparam("key")
                ),
                updates,
            )
        db.execute(self.statement_lines.insert(), lines)

    def _rows_of(
        self, db: Connection, aggregate_ids: set[UUID]
    ) -> dict[UUID, _AccountRow]:
        rows: dict[UUID, _AccountRow] = {}
        keys = [str(aggregate_id) for aggregate_id in aggregate_ids]
        for chunk in (keys[i : i + 500] for i in range(0, len(keys), 500)):
            query = select(self.accounts).where(self.accounts.c.aggregate_id.in_(chunk))
            for values in db.execute(query).mappings():
                rows[UUID(values["aggregate_id"])] = _AccountRow(dict(values))
        return rows


def _new_row(opened: Any, sealer: Sealer) -> _AccountRow:
    if not isinstance(opened, Account.Opened):
        msg = f"event {opened!r} comes before its account was opened"
        raise ValueError(msg)
    return _AccountRow(
        {
            "account_id": opened.account_id,
            "aggregate_id": str(opened.originator_id),
            "owner_email": sealer.seal(opened.owner_email),
            "owner_key": sealer.lookup_key(opened.owner_email),
            "balance_in_cents": 0,
            "overdraft_limit_in_cents": 0,
            "closed": False,
            "version": opened.originator_version,
            "opened_at": opened.timestamp,
            "updated_at": opened.timestamp,
        },
        is_new=True,
    )


def _statement_line(
    account: dict[str, Any], domain_event: Any, notification_id: int
) -> dict[str, Any]:
    """Apply one event to an account row; return its statement line."""
    kind, sign = STATEMENT_KINDS[type(domain_event)]
    fields = event_fields(domain_event)
    amount = sign * fields.get("amount_in_cents", 0)
    account["balance_in_cents"] += amount
    if isinstance(domain_event, Account.OverdraftLimitSet):
        account["overdraft_limit_in_cents"] = domain_event.overdraft_limit_in_cents
    if isinstance(domain_event, Account.Closed):
        account["closed"] = True
    account["version"] = domain_event.originator_version
    account["updated_at"] = domain_event.timestamp
    return {
        "account_id": account["account_id"],
        "version": domain_event.originator_version,
        "kind": kind,
        "amount_in_cents": amount,
        "balance_after_in_cents": account["balance_in_cents"],
        "transfer_id": fields.get("transfer_id"),
        "counterparty_account_id": fields.get("to_account_id")
        or fields.get("from_account_id"),
        "reference": fields.get("reference") or None,
        "timestamp": domain_event.timestamp,
        "notification_id": notification_id,
    }


@dataclass(frozen=True)
class Page:
    """Some rows of a longer answer, and the cursor for the rest (None: no more)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class Ledger:
    """Questions answered from the read models.

    Every query first catches the projection up with the end of the log, in
    the asking process. So a query that starts after a command returned sees
    that command (read-your-writes, and everyone else's writes too), while the
    write path pays nothing for the read models.
    """

    def __init__(self, app: BankApplication) -> None:
        datastore = getattr(app.factory, "datastore", None)
        engine = getattr(datastore, "engine", None)
        if engine is None:
            msg = "Read models need a SQL database (SQLALCHEMY_URL)."
            raise ReadModelsUnavailableError(msg)
        self.projection = LedgerProjection(
            engine,
            app.event_log,
            app.env.get("SQLALCHEMY_SCHEMA"),
            Sealer(app.mapper.cipher, app.env.get("CIPHER_KEY")),
        )
        if strtobool(app.env.get("CREATE_TABLE") or "y"):
            self.projection.create_tables()

    def accounts_by_owner(
        self, owner_email: str, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """The owner's accounts, by account id, a page at a time."""
        check_email(owner_email)
        if cursor is not None:
            cursor = _account_cursor(cursor)
        self.projection.catch_up()
        accounts = self.projection.accounts
        query = (
            select(accounts)
            .where(
                accounts.c.owner_key == self.projection.sealer.lookup_key(owner_email)
            )
            .order_by(accounts.c.account_id)
            .limit(limit + 1)
        )
        if cursor is not None:
            query = query.where(accounts.c.account_id > cursor)
        rows = self._rows(query)
        for row in rows:
            del row["aggregate_id"]
        return _page(rows, limit, lambda row: str(row["account_id"]))

    def statement(
        self,
        account_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """An account's statement lines in order, optionally within [since, until)."""
        account_id = normalise_account_id(account_id)
        after = None if cursor is None else _version_cursor(cursor)
        self.projection.catch_up()
        lines = self.projection.statement_lines
        query = (
            select(lines)
            .where(lines.c.account_id == account_id)
            .order_by(lines.c.version)
            .limit(limit + 1)
        )
        if since is not None:
            query = query.where(lines.c.timestamp >= _stored_time(since, "since"))
        if until is not None:
            query = query.where(lines.c.timestamp < _stored_time(until, "until"))
        if after is not None:
            query = query.where(lines.c.version > after)
        rows = self._rows(query)
        for row in rows:
            del row["notification_id"]
        return _page(rows, limit, lambda row: str(row["version"]))

    def account_view(self, account_id: str) -> dict[str, Any] | None:
        """The account's row in the accounts view, or None."""
        account_id = normalise_account_id(account_id)
        self.projection.catch_up()
        accounts = self.projection.accounts
        rows = self._rows(select(accounts).where(accounts.c.account_id == account_id))
        return rows[0] if rows else None

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        with self.projection.engine.connect() as db:
            rows = [dict(row) for row in db.execute(query).mappings()]
        sealer = self.projection.sealer
        for row in rows:
            row.pop("owner_key", None)
            for sealed in ("owner_email", "reference"):
                if sealed in row:
                    row[sealed] = sealer.open(row[sealed])
            for key, value in row.items():
                if isinstance(value, datetime) and value.tzinfo is None:
                    # SQLite keeps no zone; everything is stored in UTC.
                    row[key] = value.replace(tzinfo=UTC)
        return rows


def _page(
    rows: list[dict[str, Any]], limit: int, cursor_of: Callable[..., str]
) -> Page:
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, cursor_of(rows[-1]))
    return Page(rows, None)


def _stored_time(moment: datetime, field: str) -> datetime:
    if moment.tzinfo is None:
        msg = "a time must say its zone, e.g. 2026-11-27T18:00:00Z"
        raise InvalidCommandError(msg, field=field)
    return in_utc(moment)


def _version_cursor(cursor: str) -> int:
    """The version a statement cursor (a version, as digits) stands for."""
    refusal = InvalidCommandError(
        f"a statement cursor is a version from 0 to {MAX_VERSION}", field="cursor"
    )
    if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit()):
        raise refusal
    # Digits are counted first: int() of a long string is slow, or even refused.
    digits = cursor.lstrip("0") or "0"
    if len(digits) > len(str(MAX_VERSION)) or int(digits) > MAX_VERSION:
        raise refusal
    return int(digits)


def _account_cursor(cursor: str) -> str:
    """An owner-listing cursor: the account id the previous page ended at."""
    try:
        return normalise_account_id(cursor)
    except InvalidCommandError:
        msg = "an owner-listing cursor is an account id from a previous page"
        raise InvalidCommandError(msg, field="cursor") from None
