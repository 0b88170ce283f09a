"""What the read endpoints answer: accounts and their events as plain JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel

from bank.domain import event_fields

if TYPE_CHECKING:
    from bank import Account
    from bank.commands import AccountState

MAX_PAGE_SIZE = 1000
MAX_QUERY_INT = 10**18 - 1  # the most a whole-number query parameter may be


def account_fields(account: AccountState) -> dict[str, Any]:
    """An account as clients see it: the API's names for its state."""
    # The API keeps the original product's names ("account_owner_email",
    # "closed"); the domain's are "owner_email" and "is_closed".
    return {
        "account_id": account.account_id,
        "account_owner_email": account.owner_email,
        "balance_in_cents": account.balance_in_cents,
        "overdraft_limit_in_cents": account.overdraft_limit_in_cents,
        "closed": account.is_closed,
        "version": account.version,
    }


class AccountView(BaseModel):
    """An account as GET /api/accounts/<id> shows it."""

    account_id: str
    account_owner_email: str
    balance_in_cents: int
    overdraft_limit_in_cents: int
    closed: bool
    version: int

    @classmethod
    def of(cls, account: AccountState) -> Self:
        """Describe an account's state."""
        return cls(**account_fields(account))


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


class AccountListItem(AccountView):
    """An account as the owner listing shows it (from the accounts view)."""

    opened_at: datetime
    updated_at: datetime

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Self:
        """Describe a row of the accounts view."""
        return cls(account_owner_email=row["owner_email"], **row)


class AccountsPage(BaseModel):
    """GET /api/accounts?owner_email=...: a page of an owner's accounts."""

    accounts: list[AccountListItem]
    next_cursor: str | None


class StatementLine(BaseModel):
    """One line of a statement: an event of the account, shaped for reading."""

    version: int
    kind: str
    amount_in_cents: int
    balance_after_in_cents: int
    transfer_id: str | None
    counterparty_account_id: str | None
    reference: str | None
    timestamp: datetime


class StatementPage(BaseModel):
    """GET /api/accounts/<id>/statement: a page of statement lines."""

    account_id: str
    lines: list[StatementLine]
    next_cursor: str | None
