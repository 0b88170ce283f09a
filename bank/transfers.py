"""The Transfer aggregate: a transfer's life, from pending or posted to its end.

Every transfer made since transfers became first-class is one of these, beside
the events its two accounts record. A plain transfer is created posted; a
pending one (a hold) is created pending and then posted (in full or in part),
voided, or lapses at its expiry. A posted transfer may be reversed, in full or
in parts, each reversal being a new transfer that names the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from bank.domain import BankError, check_amount

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

TRANSFER_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:eventsourced-bank:transfer")
PENDING = "pending"
POSTED = "posted"
VOIDED = "voided"
EXPIRED = "expired"
STATUSES = (PENDING, POSTED, VOIDED, EXPIRED)


class TransferNotFoundError(BankError):
    """No transfer has this id."""

    code = "transfer_not_found"

    def __init__(self, transfer_id: str) -> None:
        super().__init__(
            f"There is no transfer {transfer_id}.", transfer_id=transfer_id
        )


class TransferNotPendingError(BankError):
    """Only a pending transfer can be posted or voided."""

    code = "transfer_not_pending"

    def __init__(self, transfer_id: str, status: str) -> None:
        super().__init__(
            f"Transfer {transfer_id} is {status}, not pending.",
            transfer_id=transfer_id,
            status=status,
        )


class TransferNotPostedError(BankError):
    """Only a posted transfer can be reversed."""

    code = "transfer_not_posted"

    def __init__(self, transfer_id: str, status: str) -> None:
        super().__init__(
            f"Transfer {transfer_id} is {status}; only a posted transfer can be "
            "reversed.",
            transfer_id=transfer_id,
            status=status,
        )


class AmountExceedsTransferError(BankError):
    """A posting or reversal asked for more than the transfer has left."""

    code = "amount_exceeds_transfer"

    def __init__(
        self, transfer_id: str, amount_in_cents: int, remaining_in_cents: int
    ) -> None:
        super().__init__(
            f"Transfer {transfer_id} has {remaining_in_cents} cents left to move; "
            f"{amount_in_cents} were asked for.",
            transfer_id=transfer_id,
            amount_in_cents=amount_in_cents,
            remaining_in_cents=remaining_in_cents,
        )


class Transfer(Aggregate):
    """Money moving from one account to another, once or in two phases."""

    class Created(Aggregate.Created):
        """A transfer was made: posted at once, or pending until posted or voided."""

        transfer_id: str
        from_account_id: str
        to_account_id: str
        currency: str
        amount_in_cents: int
        is_pending: bool
        expires_at: datetime | None
        reverses_transfer_id: str | None
        metadata: dict[str, str]

    class Posted(Aggregate.Event):
        """A pending transfer moved this much of what it held; the rest was freed."""

        amount_in_cents: int

    class Voided(Aggregate.Event):
        """A pending transfer was released without moving money."""

    class Expired(Aggregate.Event):
        """A pending transfer lapsed at its expiry without moving money."""

    class Reversed(Aggregate.Event):
        """This much of a posted transfer was moved back, by another transfer."""

        amount_in_cents: int
        reversal_transfer_id: str

    @staticmethod
    def create_id(transfer_id: str) -> UUID:
        """Derive the aggregate id from the public transfer id."""
        return uuid5(TRANSFER_ID_NAMESPACE, transfer_id)

    @event(Created)
    def __init__(
        self,
        transfer_id: str,
        from_account_id: str,
        to_account_id: str,
        currency: str,
        amount_in_cents: int,
        is_pending: bool,
        expires_at: datetime | None,
        reverses_transfer_id: str | None,
        metadata: dict[str, str],
    ) -> None:
        self.transfer_id = transfer_id
        self.from_account_id = from_account_id
        self.to_account_id = to_account_id
        self.currency = currency
        self.amount_in_cents = amount_in_cents
        self.expires_at = expires_at
        self.reverses_transfer_id = reverses_transfer_id
        self.metadata = metadata
        self.state = PENDING if is_pending else POSTED
        self.posted_amount_in_cents = 0 if is_pending else amount_in_cents
        self.reversed_amount_in_cents = 0

    @classmethod
    def make(
        cls,
        transfer_id: str,
        from_account_id: str,
        to_account_id: str,
        currency: str,
        amount_in_cents: int,
        *,
        is_pending: bool = False,
        expires_at: datetime | None = None,
        reverses_transfer_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Transfer:
        """A new transfer, posted at once or pending."""
        return cls(
            transfer_id=transfer_id,
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            currency=currency,
            amount_in_cents=amount_in_cents,
            is_pending=is_pending,
            expires_at=expires_at,
            reverses_transfer_id=reverses_transfer_id,
            metadata=dict(metadata or {}),
        )

    def status_at(self, now: datetime) -> str:
        """pending, posted, voided or expired: a lapsed hold reads expired at once."""
        if self.state == PENDING and self.is_lapsed(now):
            return EXPIRED
        return str(self.state)

    def is_lapsed(self, now: datetime) -> bool:
        """Whether a pending transfer has passed its expiry (without Expired yet)."""
        return self.state == PENDING and (
            self.expires_at is not None and self.expires_at <= now
        )

    def post(self, amount_in_cents: int | None, now: datetime) -> int:
        """Post the whole hold or less of it; return the amount posted."""
        self.check_pending(now)
        amount = self.amount_in_cents if amount_in_cents is None else amount_in_cents
        check_amount(amount)
        if amount > self.amount_in_cents:
            raise AmountExceedsTransferError(
                self.transfer_id, amount, self.amount_in_cents
            )
        self._posted(amount)
        return amount

    def void(self, now: datetime) -> None:
        """Release the whole hold."""
        self.check_pending(now)
        self._voided()

    def expire(self, now: datetime) -> None:
        """Record that the hold lapsed (only once it has)."""
        if not self.is_lapsed(now):
            raise TransferNotPendingError(self.transfer_id, self.status_at(now))
        self._expired()

    def reverse(
        self, amount_in_cents: int | None, reversal_transfer_id: str, now: datetime
    ) -> int:
        """Note a reversal of all that is left, or part of it; return its amount."""
        status = self.status_at(now)
        if status != POSTED:
            raise TransferNotPostedError(self.transfer_id, status)
        remaining = self.posted_amount_in_cents - self.reversed_amount_in_cents
        amount = remaining if amount_in_cents is None else amount_in_cents
        if amount_in_cents is not None or remaining > 0:
            check_amount(amount)
        if amount > remaining or remaining == 0:
            raise AmountExceedsTransferError(self.transfer_id, amount, remaining)
        self._reversed(amount, reversal_transfer_id)
        return amount

    def check_pending(self, now: datetime) -> None:
        """Refuse to post or void a transfer that is not pending (now)."""
        status = self.status_at(now)
        if status != PENDING:
            raise TransferNotPendingError(self.transfer_id, status)

    @event(Posted)
    def _posted(self, amount_in_cents: int) -> None:
        self.state = POSTED
        self.posted_amount_in_cents = amount_in_cents

    @event(Voided)
    def _voided(self) -> None:
        self.state = VOIDED

    @event(Expired)
    def _expired(self) -> None:
        self.state = EXPIRED

    @event(Reversed)
    def _reversed(self, amount_in_cents: int, reversal_transfer_id: str) -> None:
        self.reversed_amount_in_cents += amount_in_cents


TRANSFER_EVENT_TYPES: dict[str, type[Transfer.Event]] = {
    event_class.__name__: event_class
    for event_class in (
        Transfer.Created,
        Transfer.Posted,
        Transfer.Voided,
        Transfer.Expired,
        Transfer.Reversed,
    )
}
