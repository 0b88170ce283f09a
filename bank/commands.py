"""The application's commands, what they answer, and the unit of work they run in.

A command names the accounts it changes and calls one domain method on each.
It runs inside an `Accounts` unit of work, which loads every account once and
hands the changed ones back to be saved together, all or nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bank.domain import (
    Account,
    AccountAlreadyExistsError,
    InvalidCommandError,
    normalise_account_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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

    @classmethod
    def of(cls, account: Account) -> AccountState:
        """Copy the public state of an account."""
        return cls(
            account_id=account.account_id,
            owner_email=account.owner_email,
            balance_in_cents=account.balance_in_cents,
            overdraft_limit_in_cents=account.overdraft_limit_in_cents,
            is_closed=account.is_closed,
            version=account.version,
        )


@dataclass(frozen=True)
class CommandResult:
    """What an accepted command changed: the accounts it touched, in order."""

    accounts: tuple[AccountState, ...]
    transfer_id: str | None = None
    # True when answered from an idempotency key's first execution.
    replayed: bool = False

    @property
    def account(self) -> AccountState:
        """The first (for most commands the only) account touched."""
        return self.accounts[0]

    def as_record(self) -> dict[str, Any]:
        """Plain data, as kept in an idempotency record."""
        return {
            "accounts": [asdict(account) for account in self.accounts],
            "transfer_id": self.transfer_id,
        }

    @classmethod
    def replay(cls, record: dict[str, Any]) -> CommandResult:
        """The result an idempotency record kept, marked as replayed."""
        accounts = tuple(AccountState(**account) for account in record["accounts"])
        return cls(accounts, record["transfer_id"], replayed=True)


class Accounts:
    """The accounts one unit of work reads and changes, each loaded once.

    `load` reads an account from the store; `cached`, when given, offers this
    process's copy first, and `used_cache` then says whether it did.
    """

    def __init__(
        self,
        load: Callable[[str], Account],
        cached: Callable[[str], Account | None] | None = None,
    ) -> None:
        self._load = load
        self._cached = cached
        self._loaded: dict[str, Account] = {}
        self.opened: list[Account] = []
        self.used_cache = False

    def get(self, account_id: AccountId) -> Account:
        """Load an account (once per unit of work)."""
        account_id = normalise_account_id(account_id)
        try:
            return self._loaded[account_id]
        except KeyError:
            account = self._cached(account_id) if self._cached else None
            self.used_cache |= account is not None
            account = account or self._load(account_id)
            self._loaded[account_id] = account
            return account

    def add(self, account: Account) -> None:
        """Take in a newly opened account."""
        if account.account_id in self._loaded:
            raise AccountAlreadyExistsError(account.account_id)
        self._loaded[account.account_id] = account
        self.opened.append(account)

    def changed(self) -> list[Account]:
        """The accounts with events still to be saved."""
        return [account for account in self._loaded.values() if account.pending_events]


class Command(Protocol):
    """A request to change accounts, run inside one unit of work."""

    def run(self, accounts: Accounts) -> CommandResult:
        """Apply the command to the accounts it names."""
        ...


def result_of(account: Account) -> CommandResult:
    """The result of a command that changed one account."""
    return CommandResult((AccountState.of(account),))


@dataclass(frozen=True)
class OpenAccount:
    """Open an account, with a client-chosen id or a fresh one."""

    owner_email: str
    account_id: AccountId | None = None

    def run(self, accounts: Accounts) -> CommandResult:
        """Open the account."""
        account_id = self.account_id
        account = Account.open(
            self.owner_email, str(uuid.uuid4()) if account_id is None else account_id
        )
        accounts.add(account)
        return result_of(account)


@dataclass(frozen=True)
class Deposit:
    """Pay money into an account."""

    account_id: AccountId
    amount_in_cents: int
    reference: str = ""

    def run(self, accounts: Accounts) -> CommandResult:
        """Deposit the amount."""
        account = accounts.get(self.account_id)
        account.deposit(self.amount_in_cents, self.reference)
        return result_of(account)


@dataclass(frozen=True)
class Withdraw:
    """Pay money out of an account."""

    account_id: AccountId
    amount_in_cents: int

    def run(self, accounts: Accounts) -> CommandResult:
        """Withdraw the amount."""
        account = accounts.get(self.account_id)
        account.withdraw(self.amount_in_cents)
        return result_of(account)


@dataclass(frozen=True)
class Transfer:
    """Move money between two accounts, both halves or neither."""

    from_account_id: AccountId
    to_account_id: AccountId
    amount_in_cents: int

    def run(self, accounts: Accounts) -> CommandResult:
        """Debit one account and credit the other."""
        source = accounts.get(self.from_account_id)
        target = accounts.get(self.to_account_id)
        transfer_id = str(uuid.uuid4())
        source.send_transfer(transfer_id, target.account_id, self.amount_in_cents)
        target.receive_transfer(transfer_id, source.account_id, self.amount_in_cents)
        return CommandResult(
            (AccountState.of(source), AccountState.of(target)), transfer_id
        )


@dataclass(frozen=True)
class SetOverdraftLimit:
    """Change how far below zero an account's balance may go."""

    account_id: AccountId
    overdraft_limit_in_cents: int

    def run(self, accounts: Accounts) -> CommandResult:
        """Set the limit."""
        account = accounts.get(self.account_id)
        account.set_overdraft_limit(self.overdraft_limit_in_cents)
        return result_of(account)


@dataclass(frozen=True)
class CloseAccount:
    """Close an empty account for good."""

    account_id: AccountId

    def run(self, accounts: Accounts) -> CommandResult:
        """Close the account."""
        account = accounts.get(self.account_id)
        account.close()
        return result_of(account)
