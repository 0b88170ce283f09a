"""What the read endpoints answer: accounts, their events and transfers, as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, Field, JsonValue

from bank import projections
from bank.commands import AccountState
from bank.domain import ACCOUNT_EVENT_TYPES, event_fields
from bank.feed import FEED_TYPES
from bank.persistence.base import POSITION_TOKEN_LENGTH
from bank.transfers import STATUSES

if TYPE_CHECKING:
    from bank import Account
    from bank.commands import TransferState

# Every kind of account event, by its name and by its statement kind.
EVENT_TYPES: list[JsonValue] = list(ACCOUNT_EVENT_TYPES)
LINE_KINDS: list[JsonValue] = list(projections.LINE_KINDS)
TRANSFER_STATUSES: list[JsonValue] = list(STATUSES)
FEED_EVENT_TYPES: list[JsonValue] = list(FEED_TYPES)
CURRENCY_PATTERN = "^[A-Z]{3}$"
POSITION_PATTERN = f"^[0-9a-f]{{{POSITION_TOKEN_LENGTH}}}$"
MAX_PAGE_SIZE = 1000
MAX_QUERY_INT = 10**18 - 1  # the most a whole-number query parameter may be
_LEAP_YEAR = (
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
)
_DAY = (
    "(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    "|(?:0[13-9]|1[0-2])-(?:29|30)"
    "|(?:0[13578]|1[02])-31"
)
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
# RFC 3339 as Python reads it: years 1-9999, real days, an upper-case T and Z.
TIME_PATTERN = (
    f"^(?:{_YEAR}-(?:{_DAY})|{_LEAP_YEAR}-02-29)"
    "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]+)?"
    "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


def account_fields(account: AccountState) -> dict[str, Any]:
    """An account as clients see it: the API's names for its state."""
    # The API keeps the original product's names ("account_owner_email",
    # "closed"); the domain's are "owner_email" and "is_closed".
    return {
        "account_id": account.account_id,
        "account_owner_email": account.owner_email,
        "currency": account.currency,
        "balance_in_cents": account.balance_in_cents,
        "overdraft_limit_in_cents": account.overdraft_limit_in_cents,
        "pending_debits_in_cents": account.pending_debits_in_cents,
        "pending_credits_in_cents": account.pending_credits_in_cents,
        "available_in_cents": account.available_in_cents,
        "closed": account.is_closed,
        "version": account.version,
    }


class AccountView(BaseModel):
    """An account as GET /api/accounts/<id> shows it."""

    account_id: str
    account_owner_email: str
    currency: str = Field(pattern=CURRENCY_PATTERN)
    balance_in_cents: int
    overdraft_limit_in_cents: int
    pending_debits_in_cents: int = Field(ge=0)
    pending_credits_in_cents: int = Field(ge=0)
    available_in_cents: int
    closed: bool
    version: int

    @classmethod
    def of(cls, account: AccountState) -> Self:
        """Describe an account's state."""
        return cls(**account_fields(account))


class EventView(BaseModel):
    """One recorded event of an account."""

    type: str = Field(json_schema_extra={"enum": EVENT_TYPES})
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
        state = AccountState(
            account_id=row["account_id"],
            owner_email=row["owner_email"],
            balance_in_cents=row["balance_in_cents"],
            overdraft_limit_in_cents=row["overdraft_limit_in_cents"],
            is_closed=row["closed"],
            version=row["version"],
            currency=row["currency"],
            pending_debits_in_cents=row["pending_debits_in_cents"],
            pending_credits_in_cents=row["pending_credits_in_cents"],
        )
        return cls(
            **account_fields(state),
            opened_at=row["opened_at"],
            updated_at=row["updated_at"],
        )


class AccountsPage(BaseModel):
    """GET /api/accounts?owner_email=...: a page of an owner's accounts."""

    accounts: list[AccountListItem]
    next_cursor: str | None


class StatementLine(BaseModel):
    """One line of a statement: an event of the account, shaped for reading."""

    version: int
    kind: str = Field(json_schema_extra={"enum": LINE_KINDS})
    amount_in_cents: int
    balance_after_in_cents: int
    transfer_id: str | None
    counterparty_account_id: str | None
    reference: str | None
    metadata: dict[str, str]
    timestamp: datetime


class StatementPage(BaseModel):
    """GET /api/accounts/<id>/statement: a page of statement lines."""

    account_id: str
    lines: list[StatementLine]
    next_cursor: str | None


class TransferView(BaseModel):
    """A transfer as GET /api/transfers/<id> shows it."""

    transfer_id: str
    from_account_id: str
    to_account_id: str
    currency: str = Field(pattern=CURRENCY_PATTERN)
    amount_in_cents: int = Field(ge=1)
    status: str = Field(json_schema_extra={"enum": TRANSFER_STATUSES})
    posted_amount_in_cents: int = Field(ge=0)
    reversed_amount_in_cents: int = Field(ge=0)
    reverses_transfer_id: str | None
    metadata: dict[str, str]
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, transfer: TransferState | dict[str, Any]) -> Self:
        """Describe a transfer's state, or a row of the transfers view."""
        if isinstance(transfer, dict):
            return cls.model_validate(transfer)
        return cls.model_validate(transfer, from_attributes=True)


class TransfersPage(BaseModel):
    """GET /api/accounts/<id>/transfers: a page of an account's transfers."""

    account_id: str
    transfers: list[TransferView]
    next_cursor: str | None


class FeedEventView(BaseModel):
    """One event of the feed: where it is in the log, whose it is, what it says."""

    position: str = Field(pattern=POSITION_PATTERN)
    account_id: str | None
    type: str = Field(json_schema_extra={"enum": FEED_EVENT_TYPES})
    version: int = Field(ge=1)
    timestamp: datetime
    data: dict[str, Any]


class FeedPageView(BaseModel):
    """GET /api/events: some events in log order, and where the next page starts."""

    events: list[FeedEventView]
    next_after: str = Field(pattern=POSITION_PATTERN)
