"""Questions answered from the read models, each after catching them up."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import datetime_now_with_tzinfo
from eventsourcing.utils import strtobool
from sqlalchemy import or_, select, union_all

from bank.domain import (
    BankError,
    InvalidCommandError,
    check_email,
    in_utc,
    normalise_account_id,
)
from bank.persistence.base import Database
from bank.projections.projector import LedgerProjection
from bank.projections.sealer import Sealer
from bank.projections.tables import (
    MAX_POSITION,
    MAX_VERSION,
    TRANSFER_FIELDS,
    is_pending,
    pending_column,
)
from bank.readside import ReadModelRebuildingError, ReadSide, wait_until
from bank.transfers import EXPIRED, PENDING, STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Table
    from sqlalchemy.sql import ColumnElement

    from bank.application import BankApplication
    from bank.persistence import LogPosition


class ReadModelsUnavailableError(BankError):
    """The bank's store has no SQL database to keep read models in."""

    code = "read_models_unavailable"


@dataclass(frozen=True)
class Page:
    """Some rows of a longer answer, and the cursor for the rest (None: no more)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class Ledger:
    """Questions answered from the read models, once they have caught up.

    A query waits until the read models have reached a position: the one it
    is given (`min_position`, from a command's answer), else the log's head
    when it arrived, so a query that starts after a command returned sees
    that command (and everyone else's writes before it). A background
    projector (`bank projector`) keeps them current; without one
    (`BANK_CATCH_UP_IN_REQUEST`, the default outside `bank serve`) the query
    catches them up itself, in the asking process. The wait is bounded by
    `BANK_READ_WAIT_SECONDS`: past it, ReadBehindError; during a rebuild,
    ReadModelRebuildingError. Holds are answered as of the query: one past
    its expiry reserves nothing and its transfer reads expired, whether or
    not the log has recorded that yet.
    """

    def __init__(self, app: BankApplication, read_side: ReadSide | None = None) -> None:
        self.read_side = read_side or ReadSide(app)
        engine = self.read_side.primary_engine
        read_engine = self.read_side.engine
        if engine is None or read_engine is None:
            msg = "Read models need a SQL database (SQLALCHEMY_URL)."
            raise ReadModelsUnavailableError(msg)
        schema = app.env.get("SQLALCHEMY_SCHEMA")
        sealer = Sealer(app.mapper.cipher, app.env.get("CIPHER_KEY"))
        database = getattr(app.recorder, "database", None)
        write_lock = (
            database.writer_lock if isinstance(database, Database) else nullcontext
        )
        # The projection kept on the primary, and the one read (on a standby,
        # the same tables as replayed there).
        self.writer = LedgerProjection(
            engine, app.event_log, schema, sealer, write_lock
        )
        self.projection = (
            LedgerProjection(read_engine, self.read_side.log, schema, sealer)
            if self.read_side.on_replica
            else self.writer
        )
        if strtobool(app.env.get("CREATE_TABLE") or "y"):
            self.writer.create_tables()

    def reached(self, min_position: LogPosition | None = None) -> LogPosition:
        """Wait until the read models reach the target (returned); else raise."""
        read_side = self.read_side
        deadline = read_side.deadline()
        target = read_side.target(min_position, deadline)
        catch_up = read_side.settings.catch_up_in_request

        def position() -> LogPosition:
            reached, rebuilding = self.projection.state()
            if rebuilding:
                raise ReadModelRebuildingError
            if catch_up and reached < target and self.writer.catch_up(settle=False):
                reached, _ = self.projection.state()
            return reached

        wait_until(target, position, deadline)
        return target

    def accounts_by_owner(
        self,
        owner_email: str,
        limit: int = 100,
        cursor: str | None = None,
        *,
        min_position: LogPosition | None = None,
    ) -> Page:
        """The owner's accounts, by account id, a page at a time."""
        check_email(owner_email)
        if cursor is not None:
            cursor = _account_cursor(cursor)
        self.reached(min_position)
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
        rows = self._accounts_now(query)
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
        *,
        min_position: LogPosition | None = None,
    ) -> Page:
        """An account's statement lines in order, optionally within [since, until)."""
        account_id = normalise_account_id(account_id)
        after = None if cursor is None else _version_cursor(cursor)
        self.reached(min_position)
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

    def account_view(
        self, account_id: str, *, min_position: LogPosition | None = None
    ) -> dict[str, Any] | None:
        """The account's row in the accounts view, or None."""
        account_id = normalise_account_id(account_id)
        self.reached(min_position)
        accounts = self.projection.accounts
        rows = self._accounts_now(
            select(accounts).where(accounts.c.account_id == account_id)
        )
        return rows[0] if rows else None

    def transfers(
        self,
        account_id: str,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        *,
        min_position: LogPosition | None = None,
    ) -> Page:
        """An account's transfers, either way, oldest first; or those of one status."""
        account_id = normalise_account_id(account_id)
        if status is not None and status not in STATUSES:
            msg = f"a status is one of {', '.join(STATUSES)}"
            raise InvalidCommandError(msg, field="status")
        after = None if cursor is None else _position_cursor(cursor)
        self.reached(min_position)
        now = datetime_now_with_tzinfo()
        table = self.projection.transfers

        def side(account_column: Any) -> Any:
            """The first page of the transfers that name the account this way."""
            query = select(table).where(account_column == account_id)
            if status is not None:
                query = query.where(_has_status(table, status, now))
            if after is not None:
                query = query.where(table.c.position > after)
            return select(query.order_by(table.c.position).limit(limit + 1).subquery())

        # Each side's page comes in order from its own index; one OR of both
        # would sort every transfer the account ever made, for each page.
        both = union_all(side(table.c.from_account_id), side(table.c.to_account_id))
        merged = both.subquery()
        query = select(merged).order_by(merged.c.position).limit(limit + 1)
        page = _page(self._rows(query), limit, lambda row: str(row["position"]))
        return Page([_transfer_item(row, now) for row in page.items], page.next_cursor)

    def transfer_view(
        self, transfer_id: str, *, min_position: LogPosition | None = None
    ) -> dict[str, Any] | None:
        """One transfer as `transfers` lists it, or None if the view has no row."""
        if not isinstance(transfer_id, str) or len(transfer_id) > 64:
            return None
        self.reached(min_position)
        table = self.projection.transfers
        rows = self._rows(select(table).where(table.c.transfer_id == transfer_id))
        return _transfer_item(rows[0], datetime_now_with_tzinfo()) if rows else None

    def lapsed_transfer_ids(self, now: datetime, limit: int = 1000) -> list[str]:
        """Pending transfers whose expiry is at or before `now`, soonest first."""
        now = _stored_time(now, "now")
        self.reached()
        table = self.projection.transfers
        query = (
            select(table.c.transfer_id)
            .where(is_pending(table), table.c.expires_at <= now)
            .order_by(table.c.expires_at, table.c.position)
            .limit(limit)
        )
        with self.projection.engine.connect() as db:
            return [str(transfer_id) for transfer_id in db.execute(query).scalars()]

    def _accounts_now(self, query: Any) -> list[dict[str, Any]]:
        """Accounts view rows, less what holds lapsed by now still reserve in them."""
        rows = self._rows(query)
        by_id = {row["account_id"]: row for row in rows}
        if not by_id:
            return rows
        table = self.projection.holds
        lapsed = select(
            table.c.account_id, table.c.is_debit, table.c.amount_in_cents
        ).where(
            table.c.account_id.in_(by_id),
            table.c.expires_at <= datetime_now_with_tzinfo(),
        )
        with self.projection.engine.connect() as db:
            for account_id, is_debit, amount in db.execute(lapsed):
                by_id[account_id][pending_column(is_debit)] -= amount
        return rows

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        with self.projection.engine.connect() as db:
            rows = [dict(row) for row in db.execute(query).mappings()]
        sealer = self.projection.sealer
        for row in rows:
            row.pop("owner_key", None)
            for sealed in ("owner_email", "reference"):
                if sealed in row:
                    row[sealed] = sealer.open(row[sealed])
            if "metadata" in row:
                row["metadata"] = sealer.open_metadata(row["metadata"])
            for key, value in row.items():
                if isinstance(value, datetime) and value.tzinfo is None:
                    # SQLite keeps no zone; everything is stored in UTC.
                    row[key] = value.replace(tzinfo=UTC)
        return rows


def _has_status(table: Table, status: str, now: datetime) -> ColumnElement[bool]:
    """The condition that a transfer reads as this status at `now`."""
    pending = is_pending(table)
    if status == EXPIRED:
        return or_(table.c.status == EXPIRED, pending & (table.c.expires_at <= now))
    if status == PENDING:
        return pending & or_(table.c.expires_at.is_(None), table.c.expires_at > now)
    return table.c.status == status


def _transfer_item(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A transfers view row as answered: its status as of now."""
    item = {name: row[name] for name in TRANSFER_FIELDS}
    expires_at = item["expires_at"]
    if item["status"] == PENDING and expires_at is not None and expires_at <= now:
        item["status"] = EXPIRED
    return item


def _page(
    rows: list[dict[str, Any]], limit: int, cursor_of: Callable[..., str]
) -> Page:
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, cursor_of(rows[-1]))
    return Page(rows, None)


def _stored_time(moment: datetime, field: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        msg = "a time must say its zone, e.g. 2026-11-27T18:00:00Z"
        raise InvalidCommandError(msg, field=field)
    return in_utc(moment)


def _whole_number(cursor: str, most: int, refusal: InvalidCommandError) -> int:
    """The number a cursor of digits stands for, from 0 to `most`."""
    if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit()):
        raise refusal
    # Digits are counted first: int() of a long string is slow, or even refused.
    digits = cursor.lstrip("0") or "0"
    if len(digits) > len(str(most)) or int(digits) > most:
        raise refusal
    return int(digits)


def _version_cursor(cursor: str) -> int:
    """The version a statement cursor (a version, as digits) stands for."""
    refusal = InvalidCommandError(
        f"a statement cursor is a version from 0 to {MAX_VERSION}", field="cursor"
    )
    return _whole_number(cursor, MAX_VERSION, refusal)


def _position_cursor(cursor: str) -> int:
    """Where a transfers cursor (a position in the log, as digits) resumes."""
    refusal = InvalidCommandError(
        "a transfers cursor is the next_cursor of a previous page", field="cursor"
    )
    return _whole_number(cursor, MAX_POSITION, refusal)


def _account_cursor(cursor: str) -> str:
    """An owner-listing cursor: the account id the previous page ended at."""
    try:
        return normalise_account_id(cursor)
    except InvalidCommandError:
        msg = "an owner-listing cursor is an account id from a previous page"
        raise InvalidCommandError(msg, field="cursor") from None
