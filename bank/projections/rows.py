"""The rows one batch of events names, changed in memory before they are saved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from bank.domain import Account, in_utc
from bank.projections.tables import pending_column, statement_kind
from bank.transfers import PENDING, POSTED, Transfer

if TYPE_CHECKING:
    from bank.projections.sealer import Sealer


@dataclass(slots=True)
class Row:
    """One view row, changed in memory while a batch is applied."""

    values: dict[str, Any]
    is_new: bool = False
    changed: bool = False
    # The values as read from the table, if they were: an update sets only the
    # columns that differ, as SQLite rewrites the entries of every index on a
    # column it sets, even to the value it had.
    stored: dict[str, Any] | None = None

    def changed_columns(self) -> list[str]:
        """The columns whose values differ from the stored ones (all, if not read)."""
        stored = self.stored
        if stored is None:
            return list(self.values)
        return [
            name
            for name, value in self.values.items()
            if name not in stored or stored[name] != value
        ]

    @classmethod
    def loaded(cls, values: dict[str, Any]) -> Row:
        """A row as read from its table, to be changed in memory."""
        return cls(dict(values), stored=values)


@dataclass
class TransferRows:
    """The transfers one batch touches, by transfer id, and which others exist."""

    rows: dict[str, Row] = field(default_factory=dict)
    # The transfer id of each pending Transfer: its later events name only that.
    pending: dict[UUID, str] = field(default_factory=dict)
    # Every transfer known to have a row (or to get one in this batch).
    known: set[str] = field(default_factory=set)

    def add(self, values: dict[str, Any], *, loaded: bool) -> None:
        """Take in a row loaded from the table, or one made by an event."""
        transfer_id = values["transfer_id"]
        earlier = self.rows.get(transfer_id)
        is_new = not loaded and (earlier is None or earlier.is_new)
        if loaded:
            self.rows[transfer_id] = Row.loaded(values)
        else:
            self.rows[transfer_id] = Row(values, is_new, changed=True)
        self.known.add(transfer_id)
        if values["status"] == PENDING:
            self.pending[UUID(values["aggregate_id"])] = transfer_id

    def create(
        self, created: Transfer.Created, notification_id: int, sealer: Sealer
    ) -> None:
        """Add a new transfer; a reversal also adds its amount to the original's."""
        self.add(_created_row(created, notification_id, sealer), loaded=False)
        original = self.rows.get(created.reverses_transfer_id or "")
        if original is not None:
            # The original's own Reversed event says the same, but only by its
            # aggregate id, which is indexed for pending transfers alone.
            original.values["reversed_amount_in_cents"] += created.amount_in_cents
            original.values["updated_at"] = created.timestamp
            original.changed = True

    def end_pending(self, domain_event: Transfer.Event) -> None:
        """Apply a pending transfer's Posted, Voided or Expired."""
        transfer_id = self.pending.pop(domain_event.originator_id, None)
        if transfer_id is None:
            # Only a pending transfer can end (the audit reports any other), and
            # only pending ones are found by aggregate id: skipping the rest
            # keeps the view the same however the log is cut into batches.
            return
        row = self.rows[transfer_id]
        values = row.values
        values["aggregate_id"] = None
        if isinstance(domain_event, Transfer.Posted):
            values["status"] = POSTED
            values["posted_amount_in_cents"] = domain_event.amount_in_cents
        else:
            values["status"] = type(domain_event).__name__.lower()
        values["updated_at"] = domain_event.timestamp
        row.changed = True


HoldKey = tuple[str, str]  # (transfer id, account id)


@dataclass
class HoldRows:
    """The holds one batch places or ends, as the domain keeps them."""

    # As they stand: the stored ones the batch names, and those it placed.
    rows: dict[HoldKey, dict[str, Any]] = field(default_factory=dict)
    stored: set[HoldKey] = field(default_factory=set)
    touched: set[HoldKey] = field(default_factory=set)

    def apply(self, account: dict[str, Any], domain_event: Any) -> None:
        """Place or end an account's hold, and change its pending amounts to match."""
        key = (domain_event.transfer_id, account["account_id"])
        self.touched.add(key)
        # Like the domain: an end releases whatever this account holds for the
        # transfer, and a second placement replaces the first.
        ended = self.rows.pop(key, None)
        if ended is not None:
            account[pending_column(ended["is_debit"])] -= ended["amount_in_cents"]
        if isinstance(domain_event, Account.HoldPlaced):
            expires_at = domain_event.expires_at
            self.rows[key] = {
                "transfer_id": key[0],
                "account_id": key[1],
                "is_debit": domain_event.is_debit,
                "amount_in_cents": domain_event.amount_in_cents,
                "expires_at": expires_at and in_utc(expires_at),
            }
            account[pending_column(domain_event.is_debit)] += (
                domain_event.amount_in_cents
            )

    def ended(self) -> list[HoldKey]:
        """The stored holds the batch ended or replaced: to be deleted first."""
        return list(self.touched & self.stored)

    def placed(self) -> list[dict[str, Any]]:
        """The holds the batch placed and left in place: to be inserted."""
        return [self.rows[key] for key in self.touched if key in self.rows]


def _created_row(
    created: Transfer.Created, notification_id: int, sealer: Sealer
) -> dict[str, Any]:
    return {
        "transfer_id": created.transfer_id,
        "aggregate_id": str(created.originator_id) if created.is_pending else None,
        "from_account_id": created.from_account_id,
        "to_account_id": created.to_account_id,
        "currency": created.currency,
        "amount_in_cents": created.amount_in_cents,
        "status": PENDING if created.is_pending else POSTED,
        "posted_amount_in_cents": 0 if created.is_pending else created.amount_in_cents,
        "reversed_amount_in_cents": 0,
        "reverses_transfer_id": created.reverses_transfer_id,
        "metadata": sealer.seal_metadata(created.metadata),
        "created_at": created.timestamp,
        "expires_at": created.expires_at and in_utc(created.expires_at),
        "updated_at": created.timestamp,
        "position": notification_id,
    }


def legacy_row(
    sent: Account.TransferSent,
    account: dict[str, Any],
    notification_id: int,
    sealer: Sealer,
) -> dict[str, Any]:
    """A transfer made before Transfer aggregates existed: posted, from its sender."""
    return {
        "transfer_id": sent.transfer_id,
        "aggregate_id": None,
        "from_account_id": account["account_id"],
        "to_account_id": sent.to_account_id,
        "currency": account["currency"],
        "amount_in_cents": sent.amount_in_cents,
        "status": POSTED,
        "posted_amount_in_cents": sent.amount_in_cents,
        "reversed_amount_in_cents": 0,
        "reverses_transfer_id": None,
        "metadata": sealer.seal_metadata(sent.metadata),
        "created_at": sent.timestamp,
        "expires_at": None,
        "updated_at": sent.timestamp,
        "position": notification_id,
    }


def new_row(opened: Any, sealer: Sealer) -> Row:
    """An account's first row, as its Opened event makes it."""
    if not isinstance(opened, Account.Opened):
        msg = f"event {opened!r} comes before its account was opened"
        raise ValueError(msg)
    return Row(
        {
            "account_id": opened.account_id,
            "aggregate_id": str(opened.originator_id),
            "owner_email": sealer.seal(opened.owner_email),
            "owner_key": sealer.lookup_key(opened.owner_email),
            "currency": opened.currency,
            "balance_in_cents": 0,
            "overdraft_limit_in_cents": 0,
            "pending_debits_in_cents": 0,
            "pending_credits_in_cents": 0,
            "closed": False,
            "version": opened.originator_version,
            "opened_at": opened.timestamp,
            "updated_at": opened.timestamp,
        },
        is_new=True,
    )


def statement_line(
    account: dict[str, Any], domain_event: Any, notification_id: int
) -> dict[str, Any]:
    """Apply one event to an account row; return its statement line."""
    kind, sign = statement_kind(domain_event)
    # Its own fields and its envelope: only the former are asked for, and a
    # copy without the latter would cost as much as the rest of this.
    fields = vars(domain_event)
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
        or fields.get("from_account_id")
        or fields.get("counterparty_account_id"),
        "reference": fields.get("reference") or None,
        "metadata": fields.get("metadata"),
        "timestamp": domain_event.timestamp,
        "notification_id": notification_id,
    }
