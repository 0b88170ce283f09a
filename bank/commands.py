"""The application's commands, what they answer, and the unit of work they run in.

A command names the accounts (and transfers) it changes and calls one domain
method on each. It runs inside an `Accounts` unit of work, which loads every
aggregate once, notices holds that have lapsed, and hands the changed
aggregates back to be saved together, all or nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from eventsourcing.domain import datetime_now_with_tzinfo

from bank import transfers
from bank.domain import (
    DEFAULT_CURRENCY,
    Account,
    AccountAlreadyExistsError,
    InvalidCommandError,
    expiry,
    normalise_account_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from eventsourcing.domain import Aggregate

    from bank.persistence import LogPosition

AccountId = str | int
MAX_BATCH_SIZE = 1000


def check_batch_size(size: int) -> None:
    """Refuse a batch of fewer than one or more than MAX_BATCH_SIZE commands."""
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidCommandError(
            f"A batch holds 1 to {MAX_BATCH_SIZE} commands.", field="batch"
        )


@dataclass(frozen=True)
class AccountState:
    """An account's state at one version, detached from the aggregate."""

    account_id: str
    owner_email: str
    balance_in_cents: int
    overdraft_limit_in_cents: int
    is_closed: bool
    version: int
    # Defaults for results recorded before currencies and holds existed.
    currency: str = DEFAULT_CURRENCY
    pending_debits_in_cents: int = 0
    pending_credits_in_cents: int = 0

    @property
    def available_in_cents(self) -> int:
        """What may be debited: balance plus overdraft limit minus debit holds."""
        return (
            self.balance_in_cents
            + self.overdraft_limit_in_cents
            - self.pending_debits_in_cents
        )

    @classmethod
    def of(cls, account: Account, now: datetime | None = None) -> AccountState:
        """Copy the public state of an account (holds as they stand now)."""
        if not account.holds:  # the common case: no clock needed
            return cls(
                account.account_id,
                account.owner_email,
                account.balance_in_cents,
                account.overdraft_limit_in_cents,
                account.is_closed,
                account.version,
                account.currency,
            )
        now = now or datetime_now_with_tzinfo()
        return cls(
            account_id=account.account_id,
            owner_email=account.owner_email,
            balance_in_cents=account.balance_in_cents,
            overdraft_limit_in_cents=account.overdraft_limit_in_cents,
            is_closed=account.is_closed,
            version=account.version,
            currency=account.currency,
            pending_debits_in_cents=account.pending_at(now, is_debit=True),
            pending_credits_in_cents=account.pending_at(now, is_debit=False),
        )


@dataclass(frozen=True)
class TransferState:
    """A transfer's state, detached from the aggregate."""

    transfer_id: str
    from_account_id: str
    to_account_id: str
    currency: str
    amount_in_cents: int
    status: str
    posted_amount_in_cents: int
    reversed_amount_in_cents: int
    reverses_transfer_id: str | None
    metadata: dict[str, str]
    created_at: datetime
    expires_at: datetime | None
    version: int

    @classmethod
    def of(
        cls, transfer: transfers.Transfer, now: datetime | None = None
    ) -> TransferState:
        """Copy the public state of a transfer (its status as it stands now)."""
        return cls(
            transfer_id=transfer.transfer_id,
            from_account_id=transfer.from_account_id,
            to_account_id=transfer.to_account_id,
            currency=transfer.currency,
            amount_in_cents=transfer.amount_in_cents,
            status=transfer.status_at(now or datetime_now_with_tzinfo()),
            posted_amount_in_cents=transfer.posted_amount_in_cents,
            reversed_amount_in_cents=transfer.reversed_amount_in_cents,
            reverses_transfer_id=transfer.reverses_transfer_id,
            metadata=dict(transfer.metadata),
            created_at=transfer.created_on,
            expires_at=transfer.expires_at,
            version=transfer.version,
        )


@dataclass(frozen=True)
class CommandResult:
    """What an accepted command changed: the accounts it touched, in order."""

    accounts: tuple[AccountState, ...]
    transfer_id: str | None = None
    # True when answered from an idempotency key's first execution.
    replayed: bool = False
    # The transfer a transfer command made or changed.
    transfer: TransferState | None = None
    # Where the log is just after the command's events (or, for a replay,
    # a point after its first execution's): where a read sees the command.
    position: LogPosition | None = None

    @property
    def account(self) -> AccountState:
        """The first (for most commands the only) account touched."""
        return self.accounts[0]

    def as_record(self) -> dict[str, Any]:
        """Plain data, as kept in an idempotency record."""
        return {
            "accounts": [asdict(account) for account in self.accounts],
            "transfer_id": self.transfer_id,
            "transfer": None if self.transfer is None else asdict(self.transfer),
        }

    @classmethod
    def replay(cls, record: dict[str, Any]) -> CommandResult:
        """The result an idempotency record kept, marked as replayed."""
        accounts = tuple(AccountState(**account) for account in record["accounts"])
        transfer = record.get("transfer")
        return cls(
            accounts,
            record["transfer_id"],
            replayed=True,
            transfer=None if transfer is None else TransferState(**transfer),
        )


class Accounts:
    """The accounts and transfers one unit of work reads and changes.

    Each is loaded once: `load` and `load_transfer` read from the store;
    `cached`, when given, offers this process's copy of an account first, and
    `used_cache` then says whether it did. An account's holds that have lapsed
    by `now` are expired (on the transfer and both accounts) when it is first
    loaded, so the next command on an account records what time did.
    """

    def __init__(
        self,
        load: Callable[[str], Account],
        cached: Callable[[str], Account | None] | None = None,
        *,
        load_transfer: Callable[[str], transfers.Transfer] | None = None,
        now: datetime | None = None,
        default_currency: str = DEFAULT_CURRENCY,
    ) -> None:
        self._load = load
        self._cached = cached
        self._load_transfer = load_transfer
        self._now = now
        self.default_currency = default_currency
        self._loaded: dict[str, Account] = {}
        self._transfers: dict[str, transfers.Transfer] = {}
        self.opened: list[Account] = []
        self.used_cache = False

    @property
    def now(self) -> datetime:
        """The one moment this unit of work decides at (read from the clock once)."""
        if self._now is None:
            self._now = datetime_now_with_tzinfo()
        return self._now

    def get(self, account_id: AccountId) -> Account:
        """Load an account (once per unit of work), expiring its lapsed holds."""
        account_id = normalise_account_id(account_id)
        try:
            return self._loaded[account_id]
        except KeyError:
            account = self._cached(account_id) if self._cached else None
            self.used_cache |= account is not None
            account = account or self._load(account_id)
            self._loaded[account_id] = account
            if account.holds:
                for transfer_id in account.lapsed_transfer_ids(self.now):
                    self.expire(transfer_id)
            return account

    def add(self, account: Account) -> None:
        """Take in a newly opened account."""
        if account.account_id in self._loaded:
            raise AccountAlreadyExistsError(account.account_id)
        self._loaded[account.account_id] = account
        self.opened.append(account)

    def transfer(self, transfer_id: str) -> transfers.Transfer:
        """Load a transfer (once per unit of work); TransferNotFoundError if none."""
        try:
            return self._transfers[transfer_id]
        except KeyError:
            if self._load_transfer is None:
                raise transfers.TransferNotFoundError(transfer_id) from None
            transfer = self._load_transfer(transfer_id)
            self._transfers[transfer_id] = transfer
            return transfer

    def add_transfer(self, transfer: transfers.Transfer) -> None:
        """Take in a new transfer."""
        self._transfers[transfer.transfer_id] = transfer

    def expire(self, transfer_id: str) -> None:
        """Record that a lapsed hold expired, on the transfer and both its accounts."""
        transfer = self.transfer(transfer_id)
        if transfer.is_lapsed(self.now):
            transfer.expire(self.now)
        for account_id in (transfer.from_account_id, transfer.to_account_id):
            account = self.get(account_id)
            if transfer_id in account.holds:
                account.expire_hold(transfer_id)

    def changed(self) -> list[Aggregate]:
        """The transfers, then the accounts, with events still to be saved."""
        touched: list[Aggregate] = [*self._transfers.values(), *self._loaded.values()]
        return [aggregate for aggregate in touched if aggregate.pending_events]


class Command(Protocol):
    """A request to change accounts, run inside one unit of work."""

    def run(self, accounts: Accounts) -> CommandResult:
        """Apply the command to the accounts it names."""
        ...


def result_of(account: Account, accounts: Accounts) -> CommandResult:
    """The result of a command that changed one account."""
    now = accounts.now if account.holds else None
    return CommandResult((AccountState.of(account, now),))


def transfer_result(transfer: transfers.Transfer, accounts: Accounts) -> CommandResult:
    """The result of a command that made or changed a transfer."""
    source = accounts.get(transfer.from_account_id)
    target = accounts.get(transfer.to_account_id)
    return CommandResult(
        (AccountState.of(source, accounts.now), AccountState.of(target, accounts.now)),
        transfer.transfer_id,
        transfer=TransferState.of(transfer, accounts.now),
    )


@dataclass(frozen=True)
class OpenAccount:
    """Open an account, with a client-chosen id or a fresh one, in a currency."""

    owner_email: str
    account_id: AccountId | None = None
    # None: the bank's default currency.
    currency: str | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Open the account."""
        account_id = self.account_id
        account = Account.open(
            self.owner_email,
            str(uuid.uuid4()) if account_id is None else account_id,
            self.currency or accounts.default_currency,
        )
        accounts.add(account)
        return result_of(account, accounts)


@dataclass(frozen=True)
class Deposit:
    """Pay money into an account."""

    account_id: AccountId
    amount_in_cents: int
    reference: str = ""
    metadata: Mapping[str, str] | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Deposit the amount."""
        account = accounts.get(self.account_id)
        account.deposit(self.amount_in_cents, self.reference, self.metadata)
        return result_of(account, accounts)


@dataclass(frozen=True)
class Withdraw:
    """Pay money out of an account."""

    account_id: AccountId
    amount_in_cents: int
    metadata: Mapping[str, str] | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Withdraw the amount."""
        account = accounts.get(self.account_id)
        account.withdraw(self.amount_in_cents, self.metadata, now=accounts.now)
        return result_of(account, accounts)


@dataclass(frozen=True)
class Transfer:
    """Move money between two accounts, both halves or neither; or hold it."""

    from_account_id: AccountId
    to_account_id: AccountId
    amount_in_cents: int
    # Pending: the amount is held on both accounts until posted or voided.
    pending: bool = False
    timeout_seconds: int | None = None
    metadata: Mapping[str, str] | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Debit one account and credit the other, or place a hold on both."""
        source = accounts.get(self.from_account_id)
        target = accounts.get(self.to_account_id)
        source.check_not_itself(target.account_id)
        source.check_same_currency(target)
        transfer_id = str(uuid.uuid4())
        amount, now = self.amount_in_cents, accounts.now
        if not isinstance(self.pending, bool):
            raise InvalidCommandError("'pending' is true or false.", field="pending")
        if not self.pending and self.timeout_seconds is not None:
            raise InvalidCommandError(
                "A timeout applies only to a pending transfer.",
                field="timeout_seconds",
            )
        expires_at = expiry(now, self.timeout_seconds)
        if self.pending:
            for account, other in ((source, target), (target, source)):
                account.place_hold(
                    transfer_id,
                    other.account_id,
                    amount,
                    is_debit=account is source,
                    expires_at=expires_at,
                    metadata=self.metadata,
                    now=now,
                )
        else:
            source.send_transfer(
                transfer_id, target.account_id, amount, self.metadata, now=now
            )
            target.receive_transfer(
                transfer_id, source.account_id, amount, self.metadata
            )
        transfer = transfers.Transfer.make(
            transfer_id,
            source.account_id,
            target.account_id,
            source.currency,
            amount,
            is_pending=self.pending,
            expires_at=expires_at,
            metadata=self.metadata,
        )
        accounts.add_transfer(transfer)
        return transfer_result(transfer, accounts)


@dataclass(frozen=True)
class PostTransfer:
    """Move a pending transfer's held money, or less of it, and free the rest."""

    transfer_id: str
    amount_in_cents: int | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Post the transfer on itself and both its accounts."""
        transfer = accounts.transfer(self.transfer_id)
        amount = transfer.post(self.amount_in_cents, accounts.now)
        for account_id in (transfer.from_account_id, transfer.to_account_id):
            accounts.get(account_id).post_hold(transfer.transfer_id, amount)
        return transfer_result(transfer, accounts)


@dataclass(frozen=True)
class VoidTransfer:
    """Release all of a pending transfer's held money."""

    transfer_id: str

    def run(self, accounts: Accounts) -> CommandResult:
        """Void the transfer on itself and both its accounts."""
        transfer = accounts.transfer(self.transfer_id)
        transfer.void(accounts.now)
        for account_id in (transfer.from_account_id, transfer.to_account_id):
            accounts.get(account_id).void_hold(transfer.transfer_id)
        return transfer_result(transfer, accounts)


@dataclass(frozen=True)
class ReverseTransfer:
    """Move a posted transfer's money back, all or part, as a new transfer."""

    transfer_id: str
    amount_in_cents: int | None = None
    metadata: Mapping[str, str] | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Pay the amount back from the payee to the payer; note it on the original."""
        original = accounts.transfer(self.transfer_id)
        reversal_id = str(uuid.uuid4())
        amount = original.reverse(self.amount_in_cents, reversal_id, accounts.now)
        payee = accounts.get(original.to_account_id)
        payer = accounts.get(original.from_account_id)
        payee.send_transfer(
            reversal_id, payer.account_id, amount, self.metadata, now=accounts.now
        )
        payer.receive_transfer(reversal_id, payee.account_id, amount, self.metadata)
        reversal = transfers.Transfer.make(
            reversal_id,
            payee.account_id,
            payer.account_id,
            original.currency,
            amount,
            reverses_transfer_id=original.transfer_id,
            metadata=self.metadata,
        )
        accounts.add_transfer(reversal)
        return transfer_result(reversal, accounts)


@dataclass(frozen=True)
class ExpireTransfer:
    """Record that a pending transfer has lapsed (nothing, if it has not)."""

    transfer_id: str

    def run(self, accounts: Accounts) -> CommandResult:
        """Expire the transfer and its holds, if its time has come."""
        transfer = accounts.transfer(self.transfer_id)
        if transfer.is_lapsed(accounts.now):
            accounts.expire(transfer.transfer_id)
        return transfer_result(transfer, accounts)


@dataclass(frozen=True)
class ExpireHolds:
    """Record every lapsed hold of an account (loading it is enough)."""

    account_id: AccountId

    def run(self, accounts: Accounts) -> CommandResult:
        """Load the account, which expires its lapsed holds."""
        return result_of(accounts.get(self.account_id), accounts)


@dataclass(frozen=True)
class SetOverdraftLimit:
    """Change how far below zero an account's balance may go."""

    account_id: AccountId
    overdraft_limit_in_cents: int

    def run(self, accounts: Accounts) -> CommandResult:
        """Set the limit."""
        account = accounts.get(self.account_id)
        account.set_overdraft_limit(self.overdraft_limit_in_cents)
        return result_of(account, accounts)


@dataclass(frozen=True)
class CloseAccount:
    """Close an empty account without pending holds, for good."""

    account_id: AccountId

    def run(self, accounts: Accounts) -> CommandResult:
        """Close the account."""
        account = accounts.get(self.account_id)
        account.close(now=accounts.now)
        return result_of(account, accounts)
