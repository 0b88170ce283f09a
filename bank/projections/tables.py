"""The read models' tables, and what their rows say of the events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    Text,
    literal_column,
)

from bank.domain import Account
from bank.transfers import PENDING

if TYPE_CHECKING:
    from sqlalchemy.sql import ColumnElement

PROJECTION_NAME = "ledger"
# The most an Integer (int4) version column holds, so the most a version may be.
MAX_VERSION = 2**31 - 1
# The most a BigInteger (int8) notification id holds.
MAX_POSITION = 2**63 - 1
# How each event shows on a statement, and the sign it gives its amount. A
# hold's events also carry a direction: these are their debit sides, and
# CREDIT_KINDS says where the credit side shows differently.
STATEMENT_KINDS: dict[type[Account.Event], tuple[str, int]] = {
    Account.Opened: ("opened", 0),
    Account.Deposited: ("deposit", 1),
    Account.Withdrawn: ("withdrawal", -1),
    Account.TransferSent: ("transfer_out", -1),
    Account.TransferReceived: ("transfer_in", 1),
    Account.HoldPlaced: ("hold_out", 0),
    Account.HoldPosted: ("transfer_out", -1),
    Account.HoldVoided: ("hold_voided", 0),
    Account.HoldExpired: ("hold_expired", 0),
    Account.OverdraftLimitSet: ("overdraft_limit_set", 0),
    Account.Closed: ("closed", 0),
}
CREDIT_KINDS: dict[type[Account.Event], tuple[str, int]] = {
    Account.HoldPlaced: ("hold_in", 0),
    Account.HoldPosted: ("transfer_in", 1),
}
# Every kind of statement line, each once.
LINE_KINDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        kind for kind, _ in [*STATEMENT_KINDS.values(), *CREDIT_KINDS.values()]
    )
)
HOLD_ENDS = (Account.HoldPosted, Account.HoldVoided, Account.HoldExpired)
HOLD_EVENTS = (Account.HoldPlaced, *HOLD_ENDS)
# What a transfers view row shows, in this order (its bookkeeping columns not).
TRANSFER_FIELDS = (
    "transfer_id",
    "from_account_id",
    "to_account_id",
    "currency",
    "amount_in_cents",
    "status",
    "posted_amount_in_cents",
    "reversed_amount_in_cents",
    "reverses_transfer_id",
    "metadata",
    "created_at",
    "expires_at",
)

Money = BigInteger().with_variant(Integer(), "sqlite")
NotificationId = BigInteger().with_variant(Integer(), "sqlite")


def statement_kind(domain_event: Account.Event) -> tuple[str, int]:
    """How an event shows on a statement: its kind and the sign of its amount."""
    if getattr(domain_event, "is_debit", True) is False:
        credit = CREDIT_KINDS.get(type(domain_event))
        if credit is not None:
            return credit
    return STATEMENT_KINDS[type(domain_event)]


@dataclass(frozen=True)
class LedgerTables:
    """The read models' tables: four views of the log and the position in it."""

    accounts: Table
    statement_lines: Table
    transfers: Table
    holds: Table
    positions: Table

    @property
    def derived(self) -> tuple[Table, ...]:
        """The tables that hold nothing but what the log gives."""
        return (self.accounts, self.statement_lines, self.transfers, self.holds)


def ledger_tables(metadata: MetaData) -> LedgerTables:
    """The accounts, statement, transfers and holds views, and the position."""
    accounts = Table(
        "bank_account_views",
        metadata,
        Column("account_id", String(64), primary_key=True),
        # Events name their account by aggregate id; this finds the row.
        Column("aggregate_id", String(36), nullable=False, unique=True),
        # Sealed (encrypted) when the bank has a cipher key; found by owner_key.
        Column("owner_email", String(512), nullable=False),
        Column("owner_key", String(254), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("balance_in_cents", Money, nullable=False),
        Column("overdraft_limit_in_cents", Money, nullable=False),
        # Holds as recorded; queries leave out the ones lapsed by then.
        Column("pending_debits_in_cents", Money, nullable=False),
        Column("pending_credits_in_cents", Money, nullable=False),
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
        # JSON, sealed like the reference; NULL when the event has none.
        Column("metadata", Text),
        Column("timestamp", DateTime(timezone=True), nullable=False),
        Column("notification_id", NotificationId, nullable=False),
        Index("bank_statement_lines_time_idx", "account_id", "timestamp"),
    )
    transfers = Table(
        "bank_transfer_views",
        metadata,
        Column("transfer_id", String(64), primary_key=True),
        # A pending Transfer's aggregate id, which its later events name it by;
        # NULL once it is not pending (and for transfers made before aggregates).
        Column("aggregate_id", String(36)),
        Column("from_account_id", String(64), nullable=False),
        Column("to_account_id", String(64), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("amount_in_cents", Money, nullable=False),
        # As recorded: a pending one past expires_at reads expired at query time.
        Column("status", String(16), nullable=False),
        Column("posted_amount_in_cents", Money, nullable=False),
        Column("reversed_amount_in_cents", Money, nullable=False),
        Column("reverses_transfer_id", String(64)),
        Column("metadata", Text),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        # The notification id of its first event: the listing's order and cursor.
        Column("position", NotificationId, nullable=False),
        Index("bank_transfer_views_from_idx", "from_account_id", "position"),
        Index("bank_transfer_views_to_idx", "to_account_id", "position"),
    )
    # The holds each account has placed and not yet ended, as the domain keeps
    # them: what its pending amounts are the sum of.
    holds = Table(
        "bank_hold_views",
        metadata,
        Column("transfer_id", String(64), primary_key=True),
        Column("account_id", String(64), primary_key=True),
        Column("is_debit", Boolean, nullable=False),
        Column("amount_in_cents", Money, nullable=False),
        Column("expires_at", DateTime(timezone=True)),
        Index("bank_hold_views_account_idx", "account_id"),
    )
    positions = Table(
        "bank_projection_positions",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("position", NotificationId, nullable=False),
        Column("rebuilding", Boolean, nullable=False),
        # The transaction part of the position (see bank.persistence.LogPosition).
        Column("position_transaction", BigInteger, nullable=False, server_default="0"),
    )
    # Only pending transfers lapse, or are posted, voided or expired by their
    # aggregate's events, so only they are indexed for it: the many posted ones
    # stay out of these indexes, which keeps the projection fast.
    for name, column, unique in (
        ("bank_transfer_views_pending_idx", transfers.c.aggregate_id, True),
        ("bank_transfer_views_lapse_idx", transfers.c.expires_at, False),
    ):
        Index(
            name,
            column,
            unique=unique,
            sqlite_where=is_pending(transfers),
            postgresql_where=is_pending(transfers),
        )
    return LedgerTables(accounts, statement_lines, transfers, holds, positions)


def is_pending(transfers: Table) -> ColumnElement[bool]:
    # A literal, not a parameter: a partial index serves only a query that
    # names the very value its WHERE does.
    return transfers.c.status == literal_column(f"'{PENDING}'")


def pending_column(is_debit: bool) -> str:
    """The accounts view column that holds of this direction add up in."""
    return "pending_debits_in_cents" if is_debit else "pending_credits_in_cents"
