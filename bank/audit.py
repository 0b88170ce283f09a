"""The audit: re-derive every account from the event log and check what is stored.

The log is read once, in notification order, and every account is rebuilt by
applying its events with the domain's own `@event` methods (`event.mutate`).
On the way, and then against the rebuilt accounts, six things are checked:

1. streams: each account's events start with its Opened and run on version by
   version, and nothing follows Closed;
2. overdraft: no debit (Withdrawn, TransferSent) took a balance below minus the
   overdraft limit as it stood then. Debits only: lowering a limit below an
   existing debt is allowed by the domain, so a balance under a later, lower
   limit is not a violation;
3. transfers: every transfer is exactly one TransferSent and one
   TransferReceived with the same amount, each naming the other's account;
4. money: the balances add up to deposits minus withdrawals;
5. read models (when a Ledger is given): the accounts view and the statement
   lines equal the rebuilt accounts and their events, row for row;
6. snapshots: the library's repository (which starts from the latest snapshot)
   rebuilds each account to the same state, and so does every stored snapshot.

Against a live bank the read models are read in one snapshot of the database
(REPEATABLE READ on PostgreSQL, one read transaction on SQLite) and the log is
audited at least up to the projection's position in that snapshot, so writers
and projectors that keep working during the audit cause no false alarms.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqlalchemy import select

from bank.commands import AccountState
from bank.domain import Account, event_fields
from bank.projections import PROJECTION_NAME, STATEMENT_KINDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from uuid import UUID

    from sqlalchemy.engine import Connection, Engine

    from bank.application import BankApplication
    from bank.projections import Ledger

PAGE_SIZE = 1000
DEBITS = (Account.Withdrawn, Account.TransferSent)

STREAMS = "streams"
OVERDRAFT = "overdraft"
TRANSFERS = "transfers"
MONEY = "money"
READ_MODELS = "read models"
SNAPSHOTS = "snapshots"
CHECKS = {
    STREAMS: "each account's events start with Opened, versions run on without "
    "gaps, nothing follows Closed",
    OVERDRAFT: "no debit took a balance below minus the overdraft limit of the time "
    "(debits only: lowering a limit below an existing debt is allowed)",
    TRANSFERS: "each transfer is one TransferSent and one TransferReceived, same "
    "amount, each naming the other's account, netting to zero",
    MONEY: "the balances add up to deposits minus withdrawals",
    READ_MODELS: "the accounts view and statement lines equal the events, row for row",
    SNAPSHOTS: "the repository (from snapshots) and every stored snapshot give the "
    "same state as the events",
}


@dataclass(frozen=True)
class Violation:
    """One thing the audit found wrong, said in a sentence."""

    check: str
    message: str
    account_id: str | None = None
    version: int | None = None
    transfer_id: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """One check: how much it examined and how many violations it found."""

    name: str
    description: str
    examined: str
    violations: int
    ran: bool = True

    @property
    def passed(self) -> bool:
        """Whether the check ran and found nothing wrong."""
        return self.ran and not self.violations


@dataclass(frozen=True)
class AuditReport:
    """What the audit checked, the figures it re-derived and what it found."""

    up_to_notification_id: int
    accounts: int
    events: int
    transfers: int
    total_balance_in_cents: int
    total_deposits_in_cents: int
    total_withdrawals_in_cents: int
    checks: list[CheckResult]
    violations: list[Violation]

    @property
    def clean(self) -> bool:
        """Whether no violation was found."""
        return not self.violations


class _Line(NamedTuple):
    """A statement line: as stored (its reference unsealed), or as an event gives it."""

    version: int
    kind: str
    amount_in_cents: int
    balance_in_cents: int
    counterparty: str | None
    transfer_id: str | None
    reference: str | None


class _After(NamedTuple):
    """An account right after one of its events, and the statement line it gives."""

    overdraft_limit_in_cents: int
    is_closed: bool
    line: _Line


class _Half(NamedTuple):
    """One half of a transfer, as the account that recorded it tells it."""

    account_id: str
    version: int
    counterparty: str
    amount_in_cents: int

    @classmethod
    def of(
        cls,
        event: Account.TransferSent | Account.TransferReceived,
        account: Account,
        counterparty: str,
    ) -> _Half:
        """The half an account recorded with this event."""
        return cls(
            account.account_id,
            event.originator_version,
            counterparty,
            event.amount_in_cents,
        )


@dataclass
class _Transfer:
    """Both sides of one transfer id, as recorded (each exactly once if all is well)."""

    sent: list[_Half] = field(default_factory=list)
    received: list[_Half] = field(default_factory=list)


@dataclass
class _Replayed:
    """An account re-derived from the log, with its state after every event."""

    account: Account
    # By version from 1; None where the log has no event of that version.
    history: list[_After | None]

    def after(self, version: int) -> _After | None:
        """The account right after its event of this version, if there is one."""
        return self.history[version - 1] if 1 <= version <= len(self.history) else None

    def state_at(self, version: int) -> AccountState | None:
        """The account's state right after its event of this version."""
        after = self.after(version)
        if after is None:
            return None
        return AccountState(
            self.account.account_id,
            self.account.owner_email,
            after.line.balance_in_cents,
            after.overdraft_limit_in_cents,
            after.is_closed,
            after.line.version,
        )


class _Replay:
    """Reads the log in order and re-derives every account with the domain."""

    def __init__(self, app: BankApplication) -> None:
        self.app = app
        self.accounts: dict[UUID, _Replayed] = {}
        self.by_account_id: dict[str, _Replayed] = {}
        self.orphan_streams: set[UUID] = set()
        self.transfers: dict[str, _Transfer] = {}
        self.violations: list[Violation] = []
        self.position = 0
        self.last_account_event_id = 0
        self.events = self.debits = 0
        self.deposits_in_cents = self.withdrawals_in_cents = 0

    def violation(self, check: str, message: str, **where: Any) -> None:
        """Record a violation."""
        self.violations.append(Violation(check, message, **where))

    def read(self, stop: int) -> None:
        """Apply every account event after the position, up to notification `stop`."""
        for notification_id, event in self.app.event_log.events(self.position, stop):
            self.apply(event)
            self.last_account_event_id = self.position = notification_id
        self.position = max(self.position, stop)

    def apply(self, event: Account.Event) -> None:
        """Check one event's place in its stream, then apply it with the domain."""
        self.events += 1
        replayed = self.accounts.get(event.originator_id)
        if replayed is None:
            self._open(event)
            return
        account = replayed.account
        version = event.originator_version
        where = {"account_id": account.account_id, "version": version}
        if version != account.version + 1:
            self.violation(
                STREAMS,
                f"Account {account.account_id}: {type(event).__name__} has version "
                f"{version} but follows version {account.version}; versions must "
                "run on without gaps.",
                **where,
            )
            if version <= account.version:
                return  # out of order: it cannot be applied
            # Audit on from here: later checks show what the missing events did.
            replayed.history.extend([None] * (version - account.version - 1))
            account.version = version - 1
        if account.is_closed:
            self.violation(
                STREAMS,
                f"Account {account.account_id}: {type(event).__name__} (version "
                f"{version}) was recorded after the account was closed.",
                **where,
            )
        balance_before = account.balance_in_cents
        event.mutate(account)
        self._check_debit(event, account)
        self._note_money(event, account)
        replayed.history.append(self._after(event, account, balance_before))

    def _open(self, event: Account.Event) -> None:
        if not isinstance(event, Account.Opened) or event.originator_version != 1:
            if event.originator_id not in self.orphan_streams:
                self.orphan_streams.add(event.originator_id)
                self.violation(
                    STREAMS,
                    f"Stream {event.originator_id}: {type(event).__name__} (version "
                    f"{event.originator_version}) comes before any Opened event.",
                    version=event.originator_version,
                )
            return
        account = cast("Account", event.mutate(None))
        if Account.create_id(account.account_id) != account.id:
            self.violation(
                STREAMS,
                f"Account {account.account_id}: its Opened event is stored in stream "
                f"{account.id}, not in the stream its id names "
                f"({Account.create_id(account.account_id)}).",
                account_id=account.account_id,
                version=1,
            )
        replayed = _Replayed(account, [self._after(event, account, 0)])
        self.accounts[account.id] = replayed
        self.by_account_id[account.account_id] = replayed

    def _check_debit(self, event: Account.Event, account: Account) -> None:
        if not isinstance(event, DEBITS):
            return
        self.debits += 1
        floor = -account.overdraft_limit_in_cents
        if account.balance_in_cents < floor:
            self.violation(
                OVERDRAFT,
                f"Account {account.account_id}: {type(event).__name__} of "
                f"{event.amount_in_cents} cents (version {event.originator_version}) "
                f"took the balance to {account.balance_in_cents} cents, below its "
                f"floor of {floor} cents (overdraft limit "
                f"{account.overdraft_limit_in_cents}).",
                account_id=account.account_id,
                version=event.originator_version,
            )

    def _note_money(self, event: Account.Event, account: Account) -> None:
        if isinstance(event, Account.Deposited):
            self.deposits_in_cents += event.amount_in_cents
        elif isinstance(event, Account.Withdrawn):
            self.withdrawals_in_cents += event.amount_in_cents
        elif isinstance(event, Account.TransferSent):
            self._transfer(event.transfer_id).sent.append(
                _Half.of(event, account, event.to_account_id)
            )
        elif isinstance(event, Account.TransferReceived):
            self._transfer(event.transfer_id).received.append(
                _Half.of(event, account, event.from_account_id)
            )

    def _transfer(self, transfer_id: str) -> _Transfer:
        return self.transfers.setdefault(transfer_id, _Transfer())

    @staticmethod
    def _after(event: Account.Event, account: Account, balance_before: int) -> _After:
        kind = STATEMENT_KINDS.get(type(event), (type(event).__name__, 0))[0]
        fields = event_fields(event)
        line = _Line(
            account.version,
            kind,
            account.balance_in_cents - balance_before,
            account.balance_in_cents,
            fields.get("to_account_id") or fields.get("from_account_id"),
            fields.get("transfer_id"),
            fields.get("reference") or None,
        )
        return _After(account.overdraft_limit_in_cents, account.is_closed, line)


def audit(app: BankApplication, ledger: Ledger | None = None) -> AuditReport:
    """Re-derive every account from the whole log and check everything stored."""
    replay = _Replay(app)
    replay.read(stop=app.event_log.head())
    read_models = _check_read_models(replay, ledger)  # may read the log further
    results = [
        _result(replay, STREAMS, f"{replay.events:,} events"),
        _result(replay, OVERDRAFT, f"{replay.debits:,} debits"),
        _check_transfers(replay),
        _check_money(replay),
        read_models,
        _check_snapshots(replay),
    ]
    order = list(CHECKS)
    return AuditReport(
        up_to_notification_id=replay.position,
        accounts=len(replay.accounts),
        events=replay.events,
        transfers=len(replay.transfers),
        total_balance_in_cents=_total_balance(replay),
        total_deposits_in_cents=replay.deposits_in_cents,
        total_withdrawals_in_cents=replay.withdrawals_in_cents,
        checks=results,
        violations=sorted(replay.violations, key=lambda v: order.index(v.check)),
    )


def _result(replay: _Replay, check: str, examined: str) -> CheckResult:
    found = sum(1 for violation in replay.violations if violation.check == check)
    return CheckResult(check, CHECKS[check], examined, found)


def _total_balance(replay: _Replay) -> int:
    return sum(r.account.balance_in_cents for r in replay.accounts.values())


def _check_transfers(replay: _Replay) -> CheckResult:
    for transfer_id, transfer in replay.transfers.items():
        problem = _transfer_problem(transfer)
        if problem:
            halves = transfer.sent or transfer.received
            replay.violation(
                TRANSFERS,
                f"Transfer {transfer_id}: {problem}",
                account_id=halves[0].account_id,
                version=halves[0].version,
                transfer_id=transfer_id,
            )
    return _result(replay, TRANSFERS, f"{len(replay.transfers):,} transfers")


def _transfer_problem(transfer: _Transfer) -> str | None:
    """What is wrong with a transfer's two halves, if anything."""
    if not transfer.sent:
        [received, *_] = transfer.received
        return (
            f"account {received.account_id} received {received.amount_in_cents} "
            f"cents from {received.counterparty}, which never sent them "
            "(no TransferSent)."
        )
    if not transfer.received:
        [sent, *_] = transfer.sent
        return (
            f"account {sent.account_id} sent {sent.amount_in_cents} cents to "
            f"{sent.counterparty}, which never received them (no TransferReceived)."
        )
    if len(transfer.sent) > 1 or len(transfer.received) > 1:
        return (
            f"recorded {len(transfer.sent)} times as sent and "
            f"{len(transfer.received)} times as received; once each is right."
        )
    [sent], [received] = transfer.sent, transfer.received
    if (sent.counterparty, received.counterparty) != (
        received.account_id,
        sent.account_id,
    ):
        return (
            f"the halves disagree on the accounts: {sent.account_id} sent to "
            f"{sent.counterparty}, {received.account_id} received from "
            f"{received.counterparty}."
        )
    if sent.amount_in_cents != received.amount_in_cents:
        return (
            f"{sent.amount_in_cents} cents were sent but {received.amount_in_cents} "
            f"received, so it nets to "
            f"{received.amount_in_cents - sent.amount_in_cents} cents instead of 0."
        )
    return None


def _check_money(replay: _Replay) -> CheckResult:
    total = _total_balance(replay)
    expected = replay.deposits_in_cents - replay.withdrawals_in_cents
    if total != expected:
        replay.violation(
            MONEY,
            f"The balances add up to {total} cents, but deposits minus withdrawals "
            f"are {expected} cents ({replay.deposits_in_cents} - "
            f"{replay.withdrawals_in_cents}): transfers net to {total - expected} "
            "cents instead of 0.",
        )
    return _result(replay, MONEY, f"{len(replay.accounts):,} accounts")


@contextmanager
def _consistent_reads(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one moment of the database."""
    with engine.connect() as db:
        if db.dialect.name == "sqlite":
            # pysqlite starts no transaction for reads; one read transaction
            # sees a single snapshot of the (WAL-mode) file.
            db.exec_driver_sql("BEGIN")
        else:
            db.execution_options(isolation_level="REPEATABLE READ")
        yield db


def _check_read_models(replay: _Replay, ledger: Ledger | None) -> CheckResult:
    if ledger is None:
        return CheckResult(READ_MODELS, CHECKS[READ_MODELS], "", 0, ran=False)
    projection = ledger.projection
    try:
        projection.catch_up()
    except Exception as error:  # the audit reports it; it must not stop
        replay.violation(READ_MODELS, f"The projection cannot catch up: {error!r}.")
    with _consistent_reads(projection.engine) as db:
        position = db.execute(
            select(projection.positions.c.position).where(
                projection.positions.c.name == PROJECTION_NAME
            )
        ).scalar_one()
        replay.read(stop=position)
        if position < replay.last_account_event_id:
            replay.violation(
                READ_MODELS,
                f"The read models stop at notification {position} but the log has "
                f"account events up to {replay.last_account_event_id}.",
            )
            return _result(replay, READ_MODELS, "nothing")
        rows = _check_account_views(replay, db, ledger)
        lines = _check_statement_lines(replay, db, ledger)
    return _result(
        replay, READ_MODELS, f"{rows:,} view rows, {lines:,} statement lines"
    )


def _check_account_views(replay: _Replay, db: Connection, ledger: Ledger) -> int:
    """Compare each accounts view row with its account; return the rows read."""
    seen = set()
    sealer = ledger.projection.sealer
    for row in db.execute(select(ledger.projection.accounts)).mappings():
        account_id = row["account_id"]
        seen.add(account_id)
        replayed = _opened(replay, account_id, "the accounts view has a row for it")
        if replayed is None:
            continue
        if row["owner_key"] != sealer.lookup_key(replayed.account.owner_email):
            _read_model_problem(
                replay,
                account_id,
                "the accounts view files it under the wrong owner key, so its "
                "owner's listing misses it.",
            )
        view = AccountState(
            account_id,
            sealer.open(row["owner_email"]) or "",
            row["balance_in_cents"],
            row["overdraft_limit_in_cents"],
            bool(row["closed"]),
            row["version"],
        )
        differences = _differences(view, AccountState.of(replayed.account))
        if differences:
            _read_model_problem(
                replay,
                account_id,
                f"the accounts view row differs from the events: {differences}.",
            )
    for account_id in replay.by_account_id.keys() - seen:
        _read_model_problem(replay, account_id, "it has no row in the accounts view.")
    return len(seen)


def _opened(replay: _Replay, account_id: str, found: str) -> _Replayed | None:
    """The account a read model names, or None (a violation) if never opened."""
    replayed = replay.by_account_id.get(account_id)
    if replayed is None:
        _read_model_problem(
            replay, account_id, f"{found}, but the log never opened it."
        )
    return replayed


def _read_model_problem(
    replay: _Replay, account_id: str, problem: str, version: int | None = None
) -> None:
    replay.violation(
        READ_MODELS,
        f"Account {account_id}: {problem}",
        account_id=account_id,
        version=version,
    )


def _check_statement_lines(replay: _Replay, db: Connection, ledger: Ledger) -> int:
    """Match statement lines and events one to one; return the lines read."""
    table = ledger.projection.statement_lines
    query = (
        select(
            table.c.account_id,
            table.c.version,
            table.c.kind,
            table.c.amount_in_cents,
            table.c.balance_after_in_cents,
            table.c.counterparty_account_id,
            table.c.transfer_id,
            table.c.reference,
        )
        .order_by(table.c.account_id, table.c.version)
        .execution_options(yield_per=PAGE_SIZE)
    )
    sealer = ledger.projection.sealer
    read = 0
    with_lines = set()
    for account_id, group in itertools.groupby(db.execute(query), lambda r: r[0]):
        lines = [_Line._make((*row[1:-1], sealer.open(row[-1]))) for row in group]
        read += len(lines)
        with_lines.add(account_id)
        replayed = _opened(replay, account_id, f"{len(lines)} statement lines")
        if replayed is not None:
            _compare_statement(replay, replayed, lines)
    for account_id in replay.by_account_id.keys() - with_lines:
        events = replay.by_account_id[account_id].account.version
        _read_model_problem(
            replay,
            account_id,
            f"it has no statement lines; each of its {events} events needs one.",
        )
    return read


def _compare_statement(
    replay: _Replay, replayed: _Replayed, lines: list[_Line]
) -> None:
    account_id = replayed.account.account_id
    history = replayed.history
    for line in lines:
        version = line.version
        after = replayed.after(version)
        if after is None:
            problem = (
                f"statement line {version} has no event of that version in the log."
            )
        elif line != after.line:
            problem = (
                f"statement line {version} says {_describe(line)}; its event says "
                f"{_describe(after.line)}."
            )
        else:
            continue
        _read_model_problem(replay, account_id, problem, version)
    listed = {line.version for line in lines}
    for after in history:
        if after and after.line.version not in listed:
            _read_model_problem(
                replay,
                account_id,
                f"the {after.line.kind} event of version {after.line.version} has no "
                "statement line.",
                after.line.version,
            )


def _check_snapshots(replay: _Replay) -> CheckResult:
    app = replay.app
    snapshots = 0
    audited = replay.accounts.values()
    for replayed in audited:
        account = replayed.account
        differences = _loaded_differences(
            # A version keeps the repository off its cache: it reads the store.
            partial(app.repository.get, account.id, version=account.version),
            AccountState.of(account),
        )
        if differences:
            _snapshot_problem(
                replay,
                account.account_id,
                account.version,
                f"the repository rebuilds version {account.version} differently "
                f"from the events: {differences}.",
            )
        for snapshot in app.snapshots.get(account.id) if app.snapshots else ():
            version = snapshot.originator_version
            if version > account.version and _has_event(app, account.id, version):
                continue  # taken after the part of the log audited
            snapshots += 1
            _compare_snapshot(replay, replayed, snapshot)
    return _result(
        replay, SNAPSHOTS, f"{len(audited):,} accounts, {snapshots:,} snapshots"
    )


def _has_event(app: BankApplication, aggregate_id: UUID, version: int) -> bool:
    """Whether the account's event of this version is stored."""
    return any(True for _ in app.events.get(aggregate_id, gt=version - 1, lte=version))


def _compare_snapshot(replay: _Replay, replayed: _Replayed, snapshot: Any) -> None:
    version = snapshot.originator_version
    differences = _loaded_differences(
        partial(snapshot.mutate, None), replayed.state_at(version)
    )
    if differences:
        _snapshot_problem(
            replay,
            replayed.account.account_id,
            version,
            f"the snapshot of version {version} differs from the events: "
            f"{differences}.",
        )


def _loaded_differences(
    load: Callable[[], Account], expected: AccountState | None
) -> str:
    """How an account loaded another way differs from the events ("" if not at all)."""
    try:
        loaded = AccountState.of(load())
    except Exception as error:  # a corrupt snapshot may not even load
        return f"it cannot be loaded: {error!r}"
    if expected is None:
        return "the log has no event of that version"
    return _differences(loaded, expected)


def _snapshot_problem(
    replay: _Replay, account_id: str, version: int, problem: str
) -> None:
    replay.violation(
        SNAPSHOTS,
        f"Account {account_id}: {problem}",
        account_id=account_id,
        version=version,
    )


def _describe(line: _Line) -> str:
    """A statement line in words, e.g. "deposit +500, balance after 1500"."""
    text = (
        f"{line.kind} {line.amount_in_cents:+d}, balance after {line.balance_in_cents}"
    )
    extras = zip(
        ("counterparty", "transfer", "reference"),
        (line.counterparty, line.transfer_id, line.reference),
        strict=True,
    )
    return text + "".join(f", {name} {value}" for name, value in extras if value)


def _differences(stored: AccountState, derived: AccountState) -> str:
    """Which fields differ, e.g. "balance_in_cents is 999, the events give 500"."""
    return "; ".join(
        f"{name} is {value!r}, the events give {getattr(derived, name)!r}"
        for name, value in vars(stored).items()
        if value != getattr(derived, name)
    )
