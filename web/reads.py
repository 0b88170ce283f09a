"""What the read endpoints answer: accounts and their events as plain JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel

from bank.domain import event_fields

if TYPE_CHECKING:
    from bank import Account


class AccountView(BaseModel):
    """An account as GET /api/accounts/<id> shows it."""

    account_id: str
    account_owner_email: str
    balance_in_cents: int
    overdraft_limit_in_cents: int
    closed: bool
    version: int

    @classmethod
    def of(cls, account: Account) -> Self:
        """Describe an account aggregate."""
        return cls(
            account_id=account.account_id,
            account_owner_email=account.owner_email,
            balance_in_cents=account.balance_in_cents,
            overdraft_limit_in_cents=account.overdraft_limit_in_cents,
            closed=account.is_closed,
            version=account.version,
        )


class EventView(BaseModel):
    """One recorded event of an account."""

    type: str
    version: int
    timestamp: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, domain_event: Account.Event) -> Self:
        """Describe one domain event."""
        return cls(
            type=type(domain_event).__name__,
            version=domain_event.originator_version,
            timestamp=domain_event.timestamp,
            data=event_fields(domain_event),
        )
