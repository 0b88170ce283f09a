"""BankApplication: the bank's commands and queries over the event store."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import random
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import datetime_now_with_tzinfo
from eventsourcing.persistence import PersistenceError, RecordConflictError

from bank.commands import (
    AccountId,
    Accounts,
    CloseAccount,
    Command,
    CommandResult,
    Deposit,
    ExpireHolds,
    ExpireTransfer,
    OpenAccount,
    PostTransfer,
    ReverseTransfer,
    SetOverdraftLimit,
    Transfer,
    TransferState,
    VoidTransfer,
    Withdraw,
    check_batch_size,
)
from bank.domain import (
    TRANSFER_ID_PATTERN,
    Account,
    AccountAlreadyExistsError,
    AccountNotFoundError,
    BankError,
    ConcurrencyError,
    InvalidCommandError,
    normalise_account_id,
    project_account,
)
from bank.eventlog import EventLog
from bank.groupcommit import GroupCommit
from bank.idempotency import (
    IdempotencyKey,
    IdempotencyKeyReusedError,
    IdempotencyRecord,
)
from bank.persistence import LogPosition, SqlAggregateRecorder, SqlRecorder
from bank.settings import Tuning, check_stored_events_are_readable, make_safe
from bank.transfers import Transfer as TransferAggregate
from bank.transfers import TransferNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from eventsourcing.application import ProjectorFunction
    from eventsourcing.domain import Aggregate
    from eventsourcing.persistence import Recording
    from eventsourcing.utils import Environment, EnvType

logger = logging.getLogger(__name__)
# The events of the ledger (not idempotency records): what positions name.
LEDGER_EVENTS = (Account.Event, TransferAggregate.Event)


class _LostRaceError(Exception):
    """A command's save lost a write race; the accounts it would have opened."""

    def __init__(self, opened: Sequence[Account]) -> None:
        super().__init__("lost a write race")
        self.opened = opened


@dataclass(frozen=True)
class _Decided:
    """What one attempt of some commands decided to record."""

    app: BankApplication
    changed: list[Aggregate]
    record: IdempotencyRecord | None
    results: list[CommandResult]
    opened: list[Account]

    @property
    def keys(self) -> list[UUID]:
        """The aggregates it changes."""
        return [aggregate.id for aggregate in self.changed]

    def staged(self) -> list[tuple[UUID, Aggregate]]:
        """Each changed aggregate as it will be once written (no pending events)."""
        staged = []
        for aggregate in self.changed:
            after = copy.deepcopy(aggregate)
            after.collect_events()
            staged.append((aggregate.id, after))
        return staged

    def written(self) -> list[tuple[UUID, Aggregate]]:
        """Each changed aggregate, once written (its events collected by save)."""
        return [(aggregate.id, aggregate) for aggregate in self.changed]

    def write(self) -> list[CommandResult]:
        """Save the events and the idempotency record, all or none."""
        self.app._saved(self)  # the application's own helper
        return self.results

    def abandon(self) -> BaseException:
        """Retry: it built on a command whose write failed."""
        return _LostRaceError(self.opened)


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

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        check_stored_events_are_readable(self.event_log)
        tuning = Tuning.of(self.env)
        # Snapshots are taken here, from the account just saved, not by the
        # library, which would replay up to an interval of events from the
        # store to rebuild the state already in hand (a sixth of a deposit).
        self.snapshot_interval = tuning.snapshot_interval
        self.snapshotting_intervals = {}  # type: ignore[misc]  # per instance
        self.max_attempts = tuning.max_attempts
        self.default_currency = tuning.default_currency
        self.group_commit = self._group_commit(tuning.group_commit_max_size)
        # Lost write races that were retried, and who hears of each (metrics).
        self.write_conflicts = 0
        self.on_write_conflict: Callable[[], None] | None = None
        self._write_conflicts_lock = threading.Lock()

    def _group_commit(self, max_size: int) -> GroupCommit[UUID, Aggregate] | None:
        recorder = self.recorder
        if max_size == 0 or not isinstance(recorder, SqlRecorder):
            return None
        return GroupCommit(
            recorder.deferred_transaction,
            recorder.savepoint,
            publish=self._cache_saved,
            discard=self._evict,
            max_size=max_size,
        )

    @functools.cached_property
    def event_log(self) -> EventLog:
        """The notification log, read as account events."""
        return EventLog(self.recorder, self.mapper)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """Read the environment, then make the SQLite and schema settings safe."""
        return make_safe(super().construct_env(name, env), dict(env or {}))

    # Commands.

    def open_account(
        self,
        owner_email: str,
        account_id: AccountId | None = None,
        *,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Open an account (in the default currency unless told); return its id."""
        command = OpenAccount(owner_email, account_id, currency)
        return self._one(command, idempotency_key).account.account_id

    def deposit(
        self,
        account_id: AccountId,
        amount_in_cents: int,
        *,
        reference: str = "",
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Pay money in and return the new balance."""
        command = Deposit(account_id, amount_in_cents, reference, metadata)
        return self._one(command, idempotency_key).account.balance_in_cents

    def withdraw(
        self,
        account_id: AccountId,
        amount_in_cents: int,
        *,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Pay money out and return the new balance."""
        command = Withdraw(account_id, amount_in_cents, metadata)
        return self._one(command, idempotency_key).account.balance_in_cents

    def transfer(
        self,
        from_account_id: AccountId,
        to_account_id: AccountId,
        amount_in_cents: int,
        *,
        pending: bool = False,
        timeout_seconds: int | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Move money between two accounts atomically (or hold it); return the id."""
        command = Transfer(
            from_account_id,
            to_account_id,
            amount_in_cents,
            pending,
            timeout_seconds,
            metadata,
        )
        return self._transfer_of(command, idempotency_key).transfer_id

    def post_transfer(
        self,
        transfer_id: str,
        amount_in_cents: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> TransferState:
        """Move a pending transfer's money (all, or this much) and free the rest."""
        command = PostTransfer(transfer_id, amount_in_cents)
        return self._transfer_of(command, idempotency_key)

    def void_transfer(
        self, transfer_id: str, *, idempotency_key: str | None = None
    ) -> TransferState:
        """Release all of a pending transfer's money."""
        return self._transfer_of(VoidTransfer(transfer_id), idempotency_key)

    def reverse_transfer(
        self,
        transfer_id: str,
        amount_in_cents: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Move a posted transfer's money back (all, or this much); return its id."""
        command = ReverseTransfer(transfer_id, amount_in_cents, metadata)
        return self._transfer_of(command, idempotency_key).transfer_id

    def _one(self, command: Command, idempotency_key: str | None) -> CommandResult:
        [result] = self.execute(command, idempotency_key=idempotency_key)
        return result

    def _transfer_of(
        self, command: Command, idempotency_key: str | None
    ) -> TransferState:
        transfer = self._one(command, idempotency_key).transfer
        assert transfer is not None  # every transfer command answers with it
        return transfer

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
        # The first execution committed before its record could be read, so
        # the settled head is at or after its events.
        position = self.event_log.settled_head()
        return [
            replace(CommandResult.replay(result), position=position)
            for result in record.results
        ]

    def _execute(
        self, commands: Sequence[Command], idempotency: IdempotencyKey | None
    ) -> list[CommandResult]:
        # Commands first run on this process's cached accounts without reading
        # the store. That is safe: a stale account cannot be saved, because its
        # next version already exists, and a refusal decided on a cached
        # account is decided again on the stored one before it is reported.
        trust_cache = True
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._write(
                    functools.partial(self._attempt, commands, idempotency, trust_cache)
                )
            except _LostRaceError as lost:
                if idempotency and (replayed := self._replay(idempotency)):
                    return replayed
                self._raise_if_already_opened(lost.opened)
                # Another writer saved one of these accounts first: decide
                # again on the stored state, so rules see the latest balance.
                logger.debug("write conflict, attempt %d", attempt)
                with self._write_conflicts_lock:
                    self.write_conflicts += 1
                if self.on_write_conflict is not None:
                    self.on_write_conflict()
                trust_cache = False
                if attempt < self.max_attempts:
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
        raise ConcurrencyError(self.max_attempts)

    def _write(self, job: Callable[[], _Decided]) -> list[CommandResult]:
        group = self.group_commit
        if group is None or cast("SqlRecorder", self.recorder).in_transaction():
            return job().write()
        return group.run(job)

    def _attempt(
        self,
        commands: Sequence[Command],
        idempotency: IdempotencyKey | None,
        trust_cache: bool,
    ) -> _Decided:
        """Decide once what the commands record (a refusal raises)."""
        accounts = self._accounts(trust_cache=trust_cache)
        try:
            results = self._run(commands, accounts)
        except Exception:  # decided again on the stored state
            # A refusal decided on a cached copy is decided again on the store;
            # so is any other failure there (a copy older than the transfer
            # it is asked to post, say).
            if not accounts.used_cache:
                raise
            accounts = self._accounts(trust_cache=False)
            results = self._run(commands, accounts)
        return _Decided(
            self,
            accounts.changed(),
            idempotency.record(results) if idempotency else None,
            results,
            accounts.opened,
        )

    def _saved(self, decided: _Decided) -> None:
        """Write a decision; _LostRaceError if another writer saved first."""
        due = self._snapshots_due(decided.changed)
        try:
            recordings = self.save(*decided.changed, decided.record)
            position = self._position_after(recordings)
            decided.results[:] = [
                replace(result, position=position) for result in decided.results
            ]
            for account, version in due:
                self._take_snapshot_of(account, version)
        except BaseException as error:
            self._evict(decided.keys)
            if isinstance(error, RecordConflictError):
                raise _LostRaceError(decided.opened) from error
            raise
        if self.group_commit is None:
            self._cache_saved(decided.written())

    def _position_after(self, recordings: Sequence[Recording[UUID]]) -> LogPosition:
        """The log position just after the ledger events this thread just saved."""
        ids = [
            recording.notification.id
            for recording in recordings
            if isinstance(recording.domain_event, LEDGER_EVENTS)
        ]
        if not ids:
            # Nothing for the ledger (only an idempotency record): whatever
            # its readers have now is all there is to see of this command.
            return self.event_log.head()
        recorder = self.recorder
        written = (
            recorder.written_position()
            if isinstance(recorder, SqlAggregateRecorder)
            else None
        )
        return LogPosition(0 if written is None else written.transaction_id, max(ids))

    def _snapshots_due(self, changed: Sequence[Aggregate]) -> list[tuple[Account, int]]:
        """Accounts whose new events reach a multiple of the interval, and which."""
        interval = self.snapshot_interval
        if interval <= 0 or self.snapshots is None:
            return []
        due = []
        for account in changed:
            if isinstance(account, Account):
                multiple = account.version - account.version % interval
                if multiple > account.version - len(account.pending_events):
                    due.append((account, multiple))
        return due

    def _take_snapshot_of(self, account: Account, version: int) -> None:
        """Snapshot an account at a version, in the same transaction as its events.

        At its latest version, from the account just saved; at an earlier one
        (a batch past the multiple), by replay, as the library would.
        """
        if version != account.version:
            self.take_snapshot(account.id, version, project_account)
            return
        assert self.snapshots is not None  # _snapshots_due checked
        try:
            self.snapshots.put([Account.Snapshot.take(account)])
        except PersistenceError:
            # A missing snapshot only costs a longer replay.
            logger.warning("snapshot of %s at %s failed", account.id, version)

    def _accounts(self, *, trust_cache: bool) -> Accounts:
        return Accounts(
            self.load_account,
            self.cached_account if trust_cache else None,
            load_transfer=self.load_transfer,
            default_currency=self.default_currency,
        )

    def execute_batch(
        self, commands: Sequence[Command], *, idempotency_key: str | None = None
    ) -> list[CommandResult]:
        """Run up to MAX_BATCH_SIZE commands in one transaction, all or nothing.

        Each account is loaded once and saved once. A refusal carries the
        position of the refused command in `command_index`.
        """
        check_batch_size(len(commands))
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

    def _evict(self, aggregate_ids: Iterable[UUID]) -> None:
        if self.repository.cache is not None:
            for aggregate_id in aggregate_ids:
                with contextlib.suppress(KeyError):
                    self.repository.cache.get(aggregate_id, evict=True)

    def _cache_saved(self, saved: Iterable[tuple[UUID, Aggregate]]) -> None:
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id, aggregate in saved:
            try:
                cached = cache.get(aggregate_id)
            except KeyError:
                cached = None
            # Never put back an older copy than the one cached (a query in
            # another thread may have cached a newer one meanwhile).
            if cached is None or cached.version < aggregate.version:
                cache.put(aggregate_id, aggregate)

    def cached_account(self, account_id: str) -> Account | None:
        """A private copy of the account as this process last saw it, if cached.

        Inside a group commit, that is as an earlier command of the group left it.
        """
        if self.repository.cache is None:
            return None
        aggregate_id = Account.create_id(account_id)
        staged = self._staged_copy(aggregate_id)
        if staged is not None:
            return cast("Account", staged)
        try:
            cached = self.repository.cache.get(aggregate_id)
        except KeyError:
            return None
        return cast("Account", copy.deepcopy(cached))

    def _staged_copy(self, aggregate_id: UUID) -> Aggregate | None:
        """A copy of an aggregate as an earlier command of this group commit left it."""
        group = self.group_commit
        staged = group.staged(aggregate_id) if group is not None else None
        return None if staged is None else copy.deepcopy(staged)

    def _raise_if_already_opened(self, opened: Sequence[Account]) -> None:
        for account in opened:
            if self._exists(account.id):
                raise AccountAlreadyExistsError(account.account_id)

    def _exists(self, aggregate_id: UUID) -> bool:
        return any(True for _ in self.events.get(aggregate_id, limit=1))

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
            raise AccountNotFoundError(account_id) from None
        return account

    def require_account(self, account_id: AccountId) -> str:
        """The account's normalised id; AccountNotFoundError if it was never opened."""
        account_id = normalise_account_id(account_id)
        if not self._exists(Account.create_id(account_id)):
            raise AccountNotFoundError(account_id)
        return account_id

    def get_account(
        self,
        account_id: AccountId,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> Account:
        """The account now, or as it was at a past version or moment.

        Read now, an account whose holds have lapsed records their expiry first,
        so that its history says what the answer shows.
        """
        if as_of is not None:
            version = self.version_at(account_id, as_of)
        account = self.load_account(account_id, version)
        if version is None and account.lapsed_transfer_ids(datetime_now_with_tzinfo()):
            self.execute(ExpireHolds(account.account_id))
            account = self.load_account(account_id)
        return account

    def load_transfer(self, transfer_id: str) -> TransferAggregate:
        """Rebuild a transfer from its events; TransferNotFoundError if none."""
        if not isinstance(transfer_id, str) or not TRANSFER_ID_PATTERN.fullmatch(
            transfer_id
        ):
            raise TransferNotFoundError(str(transfer_id)[:100])
        aggregate_id = TransferAggregate.create_id(transfer_id)
        staged = self._staged_copy(aggregate_id)
        if staged is not None:
            return cast("TransferAggregate", staged)
        try:
            transfer: TransferAggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise TransferNotFoundError(transfer_id) from None
        return transfer

    def get_transfer(self, transfer_id: str) -> TransferState:
        """A transfer now; one that has lapsed records its expiry first."""
        transfer = self.load_transfer(transfer_id)
        if transfer.is_lapsed(datetime_now_with_tzinfo()):
            return self.expire_transfer(transfer_id)
        return TransferState.of(transfer)

    def expire_transfer(self, transfer_id: str) -> TransferState:
        """Record that a pending transfer has lapsed, if it has (else nothing)."""
        return self._transfer_of(ExpireTransfer(transfer_id), None)

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
            raise AccountNotFoundError(account_id, at=moment)
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
        account_id = normalise_account_id(account_id)
        aggregate_id = Account.create_id(account_id)
        events = cast(
            "list[Account.Event]",
            list(self.events.get(aggregate_id, gt=after_version, limit=limit)),
        )
        if not events and not self._exists(aggregate_id):
            raise AccountNotFoundError(account_id)
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
