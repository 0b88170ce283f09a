"""BankApplication: the bank's commands and queries over the event store."""

from __future__ import annotations

import base64
import contextlib
import copy
import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    InterfaceError,
    MapperDeserialisationError,
    OperationalError,
    PersistenceError,
    RecordConflictError,
)

from bank.domain import (
    Account,
    AccountAlreadyExistsError,
    AccountNotFoundError,
    BankError,
    ConcurrencyError,
    InvalidCommandError,
    normalise_account_id,
    project_account,
)
from bank.idempotency import (
    IdempotencyKey,
    IdempotencyKeyReusedError,
    IdempotencyRecord,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.application import ProjectorFunction
    from eventsourcing.utils import Environment, EnvType

logger = logging.getLogger(__name__)

AccountId = str | int
MAX_BATCH_SIZE = 1000


@dataclass(frozen=True)
class AccountState:
    """An account's state right after a command, detached from the aggregate."""

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
    """The accounts one unit of work reads and changes, each loaded once."""

    def __init__(self, app: BankApplication, *, trust_cache: bool) -> None:
        self._app = app
        self._trust_cache = trust_cache
        self._loaded: dict[str, Account] = {}
        self.opened: list[Account] = []
        self.used_cache = False

    def get(self, account_id: AccountId) -> Account:
        """Load an account (once per unit of work)."""
        account_id = normalise_account_id(account_id)
        try:
            return self._loaded[account_id]
        except KeyError:
            cached = self._app.cached_account(account_id) if self._trust_cache else None
            self.used_cache |= cached is not None
            account = cached or self._app.load_account(account_id)
            self._loaded[account_id] = account
            return account

    def add(self, account: Account) -> None:
        """Take in a newly opened account."""
        if account.account_id in self._loaded:
            raise AccountAlreadyExistsError(
                f"Account {account.account_id} already exists.",
                account_id=account.account_id,
            )
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
        return CommandResult((AccountState.of(account),))


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
        return CommandResult((AccountState.of(account),))


@dataclass(frozen=True)
class Withdraw:
    """Pay money out of an account."""

    account_id: AccountId
    amount_in_cents: int

    def run(self, accounts: Accounts) -> CommandResult:
        """Withdraw the amount."""
        account = accounts.get(self.account_id)
        account.withdraw(self.amount_in_cents)
        return CommandResult((AccountState.of(account),))


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
        return CommandResult((AccountState.of(account),))


@dataclass(frozen=True)
class CloseAccount:
    """Close an empty account for good."""

    account_id: AccountId

    def run(self, accounts: Accounts) -> CommandResult:
        """Close the account."""
        account = accounts.get(self.account_id)
        account.close()
        return CommandResult((AccountState.of(account),))


class BankApplication(Application[UUID]):
    """The bank: commands that record events, queries that replay them."""

    name = "Bank"
    env: ClassVar[dict[str, str]] = {
        "PERSISTENCE_MODULE": "bank.persistence",
        "SQLALCHEMY_URL": "sqlite:///bank.db",
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Account: 100}
    snapshotting_projectors: ClassVar[dict[type[Any], ProjectorFunction[Any, Any]]] = {
        Account: project_account
    }

    CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"
    SNAPSHOT_INTERVAL = "SNAPSHOT_INTERVAL"
    COMMAND_MAX_ATTEMPTS = "COMMAND_MAX_ATTEMPTS"
    SQLITE_BUSY_TIMEOUT_SECONDS = "15"

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        self._check_stored_events_are_readable()
        interval = int(self.env.get(self.SNAPSHOT_INTERVAL) or "100")
        # Per instance, so each application follows its own environment.
        self.snapshotting_intervals = {Account: interval} if interval > 0 else {}  # type: ignore[misc]
        self.max_attempts = max(1, int(self.env.get(self.COMMAND_MAX_ATTEMPTS) or "30"))

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """Read the environment, then make the SQLite and schema settings safe."""
        environment = super().construct_env(name, env)
        explicit = dict(env or {})
        for key in explicit:
            # The library reads BANK_KEY before KEY: a BANK_KEY left in the
            # process environment must not beat a KEY given here explicitly.
            prefixed = environment.create_keys(key)[0]
            if prefixed not in explicit:
                environment.pop(prefixed, None)
        for key in environment.create_keys("SQLALCHEMY_SCHEMA"):
            # An empty schema name would qualify tables as ".bank_events".
            if environment.get(key) == "":
                del environment[key]
        for key in environment.create_keys("SQLALCHEMY_URL"):
            if key in environment:
                environment[key] = with_sqlite_busy_timeout(
                    environment[key], self.SQLITE_BUSY_TIMEOUT_SECONDS
                )
                break
        cipher_key = environment.get("CIPHER_KEY")
        if cipher_key:
            check_cipher_key(cipher_key)
            if not environment.get("CIPHER_TOPIC"):
                environment["CIPHER_TOPIC"] = self.CIPHER_TOPIC
        return environment

    def _check_stored_events_are_readable(self) -> None:
        # A wrong or missing cipher key must stop the bank at start-up, not
        # surface later as failures in the middle of serving requests.
        try:
            latest = self.recorder.max_notification_id()
        except (OperationalError, InterfaceError):
            # Unreachable now: health checks report it, and nothing can be
            # misread before it is reachable again.
            logger.warning("database unreachable at start-up", exc_info=True)
            return
        if latest is None:
            return
        [notification] = self.recorder.select_notifications(start=latest, limit=1)
        try:
            self.mapper.to_domain_event(notification)
        except MapperDeserialisationError as error:
            encrypted = "with" if self.mapper.cipher else "without"
            raise ConfigurationError(
                f"The stored events cannot be read {encrypted} encryption: is "
                f"BANK_CIPHER_KEY missing or wrong? ({error})"
            ) from None

    # Commands.

    def open_account(
        self,
        owner_email: str,
        account_id: AccountId | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Open an account and return its id."""
        command = OpenAccount(owner_email, account_id)
        result = self.execute(command, idempotency_key=idempotency_key)[0]
        return result.account.account_id

    def deposit(
        self,
        account_id: AccountId,
        amount_in_cents: int,
        *,
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> int:
        """Pay money in and return the new balance."""
        command = Deposit(account_id, amount_in_cents, reference)
        result = self.execute(command, idempotency_key=idempotency_key)[0]
        return result.account.balance_in_cents

    def withdraw(
        self,
        account_id: AccountId,
        amount_in_cents: int,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Pay money out and return the new balance."""
        command = Withdraw(account_id, amount_in_cents)
        result = self.execute(command, idempotency_key=idempotency_key)[0]
        return result.account.balance_in_cents

    def transfer(
        self,
        from_account_id: AccountId,
        to_account_id: AccountId,
        amount_in_cents: int,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Move money between two accounts atomically and return the transfer id."""
        command = Transfer(from_account_id, to_account_id, amount_in_cents)
        result = self.execute(command, idempotency_key=idempotency_key)[0]
        assert result.transfer_id is not None
        return result.transfer_id

    def set_overdraft_limit(
        self,
        account_id: AccountId,
        overdraft_limit_in_cents: int,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Let an account's balance go this many cents below zero."""
        command = SetOverdraftLimit(account_id, overdraft_limit_in_cents)
        self.execute(command, idempotency_key=idempotency_key)

    def close_account(
        self, account_id: AccountId, *, idempotency_key: str | None = None
    ) -> None:
        """Close an account whose balance is zero."""
        self.execute(CloseAccount(account_id), idempotency_key=idempotency_key)

    def execute(
        self, *commands: Command, idempotency_key: str | None = None
    ) -> list[CommandResult]:
        """Run commands as one all-or-nothing unit, retrying lost write races.

        With an idempotency key, the first accepted execution is recorded in
        the same transaction as its events, and any later execution with the
        same key and the same commands is answered from that record.
        """
        if idempotency_key is None:
            return self._execute(commands, None)
        idempotency = IdempotencyKey.of(idempotency_key, commands)
        try:
            return self._replay(idempotency) or self._execute(commands, idempotency)
        except IdempotencyKeyReusedError:
            raise
        except BankError:
            # A duplicate that lost the race to its twin is refused (say, for
            # funds the twin spent): it must get the twin's answer instead.
            replayed = self._replay(idempotency)
            if replayed is None:
                raise
            return replayed

    def _replay(self, idempotency: IdempotencyKey) -> list[CommandResult] | None:
        try:
            record: IdempotencyRecord = self.repository.get(idempotency.record_id)
        except AggregateNotFoundError:
            return None
        idempotency.check_matches(record)
        return [CommandResult.replay(result) for result in record.results]

    def _execute(
        self, commands: Sequence[Command], idempotency: IdempotencyKey | None
    ) -> list[CommandResult]:
        # Commands first run on this process's cached accounts without reading
        # the store. That is safe: a stale account cannot be saved, because its
        # next version already exists, and a refusal decided on a cached
        # account is decided again on the stored one before it is reported.
        trust_cache = True
        for attempt in range(1, self.max_attempts + 1):
            accounts = Accounts(self, trust_cache=trust_cache)
            try:
                results = self._run(commands, accounts)
            except BankError:
                if not accounts.used_cache:
                    raise
                trust_cache = False
                continue
            changed = accounts.changed()
            record = idempotency.record(results) if idempotency else None
            try:
                self.save(*changed, record)
            except RecordConflictError:
                if idempotency and (replayed := self._replay(idempotency)):
                    return replayed
                self._raise_if_already_opened(accounts.opened)
                # Another writer saved one of these accounts first: reload and
                # decide again, so rules are checked against the latest balance.
                logger.debug("write conflict, attempt %d", attempt)
                self._forget_cached(changed)
                trust_cache = False
                if attempt < self.max_attempts:
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
            else:
                self._remember_saved(changed)
                return results
        raise ConcurrencyError(
            f"The accounts kept changing under this command; gave up after "
            f"{self.max_attempts} attempts. Retry later.",
            attempts=self.max_attempts,
        )

    def execute_batch(
        self, commands: Sequence[Command], *, idempotency_key: str | None = None
    ) -> list[CommandResult]:
        """Run up to MAX_BATCH_SIZE commands in one transaction, all or nothing.

        Each account is loaded once and saved once. A refusal carries the
        position of the refused command in `command_index`.
        """
        if not 1 <= len(commands) <= MAX_BATCH_SIZE:
            raise InvalidCommandError(
                f"A batch holds 1 to {MAX_BATCH_SIZE} commands.", field="batch"
            )
        return self.execute(*commands, idempotency_key=idempotency_key)

    @staticmethod
    def _run(commands: Sequence[Command], accounts: Accounts) -> list[CommandResult]:
        results = []
        for index, command in enumerate(commands):
            try:
                results.append(command.run(accounts))
            except BankError as error:
                error.command_index = index
                raise
        return results

    def _forget_cached(self, stale: Sequence[Account]) -> None:
        if self.repository.cache is not None:
            for account in stale:
                with contextlib.suppress(KeyError):
                    self.repository.cache.get(account.id, evict=True)

    def _remember_saved(self, saved: Sequence[Account]) -> None:
        if self.repository.cache is not None:
            for account in saved:
                self.repository.cache.put(account.id, account)

    def cached_account(self, account_id: str) -> Account | None:
        """A private copy of the account as this process last saw it, if cached."""
        if self.repository.cache is None:
            return None
        try:
            cached = self.repository.cache.get(Account.create_id(account_id))
        except KeyError:
            return None
        return cast("Account", copy.deepcopy(cached))

    def _raise_if_already_opened(self, opened: Sequence[Account]) -> None:
        for account in opened:
            if list(self.events.get(account.id, limit=1)):
                raise AccountAlreadyExistsError(
                    f"Account {account.account_id} already exists.",
                    account_id=account.account_id,
                )

    # Queries.

    def load_account(
        self, account_id: AccountId, version: int | None = None
    ) -> Account:
        """Rebuild an account from its snapshot and events (the latest by default)."""
        account_id = normalise_account_id(account_id)
        if version is not None and (type(version) is not int or version < 1):
            raise InvalidCommandError(
                "A version is a whole number from 1.", field="version"
            )
        try:
            account: Account = self.repository.get(
                Account.create_id(account_id),
                version=version,
                projector_func=project_account,
            )
        except AggregateNotFoundError:
            raise AccountNotFoundError(
                f"There is no account {account_id}.", account_id=account_id
            ) from None
        return account

    def get_account(
        self,
        account_id: AccountId,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> Account:
        """The account now, or as it was at a past version or moment."""
        if as_of is not None:
            version = self.version_at(account_id, as_of)
        return self.load_account(account_id, version)

    def version_at(self, account_id: AccountId, moment: datetime) -> int:
        """The account's version at a moment (AccountNotFoundError before opening).

        A binary search over the timestamps of the account's events, which
        increase with its versions: about 17 single-event reads for 100,000.
        """
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidCommandError(
                "A moment must be a datetime with a time zone.", field="as_of"
            )
        account_id = normalise_account_id(account_id)
        aggregate_id = Account.create_id(account_id)

        def events(**kwargs: Any) -> list[Account.Event]:
            return cast(
                "list[Account.Event]", list(self.events.get(aggregate_id, **kwargs))
            )

        def timestamp_of(version: int) -> datetime:
            [event] = events(gt=version - 1, lte=version)
            return event.timestamp

        latest = events(desc=True, limit=1)
        if not latest or timestamp_of(1) > moment:
            raise AccountNotFoundError(
                f"There was no account {account_id} at {moment.isoformat()}.",
                account_id=account_id,
            )
        known_at, after = 1, latest[0].originator_version + 1
        if latest[0].timestamp <= moment:
            return after - 1
        while after - known_at > 1:
            middle = (known_at + after) // 2
            if timestamp_of(middle) <= moment:
                known_at = middle
            else:
                after = middle
        return known_at

    def get_balance(self, account_id: AccountId) -> int:
        """The account's current balance in cents."""
        return self.load_account(account_id).balance_in_cents

    def get_history(
        self,
        account_id: AccountId,
        after_version: int | None = None,
        limit: int | None = None,
    ) -> list[Account.Event]:
        """The account's recorded events, oldest first."""
        aggregate_id = Account.create_id(normalise_account_id(account_id))
        events = cast(
            "list[Account.Event]",
            list(self.events.get(aggregate_id, gt=after_version, limit=limit)),
        )
        if not events and not list(self.events.get(aggregate_id, limit=1)):
            raise AccountNotFoundError(
                f"There is no account {account_id}.", account_id=str(account_id)
            )
        return events

    def take_snapshot(
        self,
        aggregate_id: UUID,
        version: int | None = None,
        projector_func: ProjectorFunction[Any, Any] | None = None,
    ) -> None:
        """Snapshot an account; a failure is logged, never fails the command."""
        try:
            if projector_func is None:
                super().take_snapshot(aggregate_id, version)
            else:
                super().take_snapshot(aggregate_id, version, projector_func)
        except PersistenceError:
            # The command's events are already committed: a missing snapshot
            # only costs a longer replay, while raising would invite a retry.
            logger.warning("snapshot of %s at %s failed", aggregate_id, version)


class ConfigurationError(Exception):
    """The bank's settings cannot work (a malformed or wrong cipher key)."""


def check_cipher_key(cipher_key: str) -> None:
    """Refuse a cipher key that is not base64 of 16, 24 or 32 bytes."""
    try:
        size = len(base64.b64decode(cipher_key, validate=True))
    except ValueError:
        size = 0
    if size not in (16, 24, 32):
        raise ConfigurationError(
            "BANK_CIPHER_KEY must be base64 of 16, 24 or 32 random bytes; "
            "`bank keygen` prints one."
        )


def with_sqlite_busy_timeout(url: str, seconds: str) -> str:
    """Add a busy timeout to a SQLite file URL so writers wait, not fail."""
    if not url.startswith("sqlite") or "memory" in url or "timeout=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}timeout={seconds}"
