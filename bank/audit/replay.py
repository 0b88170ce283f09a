"""The log replayed: every account and transfer re-derived, checked on the way.

The streams and overdraft checks are made here, as the events are applied, and
so is each part of the transfers and holds checks that needs the state of the
moment (what an account held when a hold ended, what a transfer was when it
was posted).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from bank.audit.report import (
    CHECKS,
    HOLDS,
    OVERDRAFT,
    STREAMS,
    TRANSFERS,
    CheckResult,
    CurrencyTotals,
    Violation,
)
from bank.commands import AccountState
from bank.domain import Account, event_fields
from bank.persistence.base import LOG_START, LogPosition
from bank.projections import STATEMENT_KINDS, statement_kind
from bank.transfers import PENDING, POSTED, Transfer

if TYPE_CHECKING:
    from uuid import UUID

    from bank.application import BankApplication

DEBITS = (Account.Withdrawn, Account.TransferSent)
HOLD_ENDS = (Account.HoldPosted, Account.HoldVoided, Account.HoldExpired)
HOLD_EVENTS = (Account.HoldPlaced, *HOLD_ENDS)
# Before any expiry: an account's state "now" at this moment has every hold
# it recorded, lapsed or not, which is how the audit compares states.
DAWN = datetime.min.replace(tzinfo=UTC)


class Line(NamedTuple):
    """A statement line: as stored (unsealed), or as an event gives it."""

    version: int
    kind: str
    amount_in_cents: int
    balance_in_cents: int
    counterparty: str | None
    transfer_id: str | None
    reference: str | None
    metadata: dict[str, str]


class _After(NamedTuple):
    """An account right after one of its events, and the statement line it gives."""

    overdraft_limit_in_cents: int
    is_closed: bool
    pending_debits_in_cents: int
    pending_credits_in_cents: int
    line: Line


class _Half(NamedTuple):
    """One half of a transfer, as the account that recorded it tells it."""

    account_id: str
    version: int
    counterparty: str
    amount_in_cents: int
    currency: str

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
            account.currency,
        )


@dataclass
class TransferHalves:
    """Both sides of one transfer id, as recorded (each exactly once if all is well)."""

    sent: list[_Half] = field(default_factory=list)
    received: list[_Half] = field(default_factory=list)
    # What the transfers view should say of one made before Transfer aggregates.
    legacy_view: dict[str, Any] | None = None


class _Hold(NamedTuple):
    """One account's hold for a pending transfer, as placed."""

    account_id: str
    version: int
    counterparty: str
    amount_in_cents: int
    is_debit: bool
    expires_at: datetime | None
    currency: str


@dataclass
class Holds:
    """The holds recorded for one transfer id, and how each account ended its own."""

    placed: list[_Hold] = field(default_factory=list)
    # By account id: the type of the event that ended its hold, and its amount.
    ends: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass
class TransferReplayed:
    """A Transfer aggregate re-derived from the log."""

    transfer: Transfer
    notification_id: int
    created_pending: bool
    # Its Reversed events: (the reversal's transfer id, the amount).
    reversals: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Replayed:
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
            self.account.currency,
            after.pending_debits_in_cents,
            after.pending_credits_in_cents,
        )


def recorded_state(account: Account) -> AccountState:
    """An account's state with every hold it has recorded (lapsed or not)."""
    return AccountState.of(account, DAWN)


def _held(account: Account, *, is_debit: bool) -> int:
    """The money an account's recorded holds reserve (debits) or expect (credits)."""
    return account.pending_at(DAWN, is_debit=is_debit)


class Replay:
    """Reads the log in order and re-derives every account and transfer."""

    def __init__(self, app: BankApplication) -> None:
        self.app = app
        self.accounts: dict[UUID, Replayed] = {}
        self.by_account_id: dict[str, Replayed] = {}
        self.orphan_streams: set[UUID] = set()
        self.transfers: dict[str, TransferHalves] = {}
        self.holds: dict[str, Holds] = defaultdict(Holds)
        self.aggregates: dict[UUID, TransferReplayed] = {}
        self.by_transfer_id: dict[str, TransferReplayed] = {}
        self.violations: list[Violation] = []
        self.position = LOG_START
        self.last_event = LOG_START  # the position of the last ledger event read
        self.events = self.transfer_events = self.debits = self.holds_placed = 0
        self.deposits: dict[str, int] = defaultdict(int)
        self.withdrawals: dict[str, int] = defaultdict(int)

    def violation(self, check: str, message: str, **where: Any) -> None:
        """Record a violation."""
        self.violations.append(Violation(check, message, **where))

    def read(self, stop: LogPosition) -> None:
        """Apply every ledger event after the position, up to position `stop`."""
        for position, event in self.app.event_log.events(self.position, stop):
            notification_id = position.notification_id
            if isinstance(event, Account.Event):
                self.apply(event, notification_id)
            else:
                self.apply_transfer(event, notification_id)
            self.last_event = self.position = position
        self.position = max(self.position, stop)

    def apply(self, event: Account.Event, notification_id: int) -> None:
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
        if isinstance(event, HOLD_EVENTS):
            self._check_hold_event(event, account)
        balance_before = account.balance_in_cents
        event.mutate(account)
        self._check_debit(event, account)
        self._note_money(event, account, notification_id)
        replayed.history.append(self._after(event, account, balance_before))

    def _open(self, event: Account.Event) -> None:
        if not isinstance(event, Account.Opened) or event.originator_version != 1:
            self._orphan(event, "Opened")
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
        replayed = Replayed(account, [self._after(event, account, 0)])
        self.accounts[account.id] = replayed
        self.by_account_id[account.account_id] = replayed

    def _orphan(self, event: Account.Event | Transfer.Event, first: str) -> None:
        if event.originator_id not in self.orphan_streams:
            self.orphan_streams.add(event.originator_id)
            self.violation(
                STREAMS,
                f"Stream {event.originator_id}: {type(event).__name__} (version "
                f"{event.originator_version}) comes before any {first} event.",
                version=event.originator_version,
            )

    def _check_debit(self, event: Account.Event, account: Account) -> None:
        if isinstance(event, Account.HoldPlaced) and event.is_debit:
            self._check_hold_funds(event, account)
        if not isinstance(event, DEBITS):
            return
        self.debits += 1
        held = _held(account, is_debit=True)
        floor = held - account.overdraft_limit_in_cents
        if account.balance_in_cents < floor:
            on_hold = f", {held} cents on hold" if held else ""
            self.violation(
                OVERDRAFT,
                f"Account {account.account_id}: {type(event).__name__} of "
                f"{event.amount_in_cents} cents (version {event.originator_version}) "
                f"took the balance to {account.balance_in_cents} cents, below its "
                f"floor of {floor} cents (overdraft limit "
                f"{account.overdraft_limit_in_cents}{on_hold}).",
                account_id=account.account_id,
                version=event.originator_version,
            )

    def _check_hold_funds(self, event: Account.HoldPlaced, account: Account) -> None:
        held = _held(account, is_debit=True)
        available = account.balance_in_cents + account.overdraft_limit_in_cents - held
        if available < 0:
            self._hold_problem(
                event,
                account,
                f"holds {event.amount_in_cents} cents, which leaves {available} cents "
                f"available (balance {account.balance_in_cents} + overdraft limit "
                f"{account.overdraft_limit_in_cents} - {held} cents on hold).",
            )

    def _check_hold_event(self, event: Any, account: Account) -> None:
        """Check a hold event against the account's holds before it is applied."""
        hold = account.holds.get(event.transfer_id)
        if isinstance(event, Account.HoldPlaced):
            self.holds_placed += 1
            if hold is not None:
                self._hold_problem(event, account, "places a second hold for it.")
            return
        if hold is None:
            self._hold_problem(event, account, "ends a hold that is not placed.")
            return
        direction = "debit" if hold["is_debit"] else "credit"
        held = hold["amount_in_cents"]
        if hold["is_debit"] is not event.is_debit:
            problem = f"ends its {direction} hold as the other direction."
        elif hold["counterparty_account_id"] != event.counterparty_account_id:
            problem = (
                f"names counterparty {event.counterparty_account_id}, but the hold "
                f"names {hold['counterparty_account_id']}."
            )
        elif isinstance(event, Account.HoldPosted) and event.amount_in_cents > held:
            problem = f"posts {event.amount_in_cents} cents of a hold of {held}."
        elif not isinstance(event, Account.HoldPosted) and (
            event.amount_in_cents != held
        ):
            problem = f"releases {event.amount_in_cents} cents of a hold of {held}."
        elif isinstance(event, Account.HoldExpired) and not _expired_by(
            hold["expires_at"], event.timestamp
        ):
            problem = (
                f"was recorded at {event.timestamp.isoformat()}, but the hold "
                f"expires at {when(hold['expires_at'])}."
            )
        else:
            return
        self._hold_problem(event, account, problem)

    def _hold_problem(self, event: Any, account: Account, problem: str) -> None:
        self.violation(
            HOLDS,
            f"Account {account.account_id}: {type(event).__name__} (version "
            f"{event.originator_version}) of transfer {event.transfer_id} {problem}",
            account_id=account.account_id,
            version=event.originator_version,
            transfer_id=event.transfer_id,
        )

    def _note_money(
        self, event: Account.Event, account: Account, notification_id: int
    ) -> None:
        if isinstance(event, Account.Deposited):
            self.deposits[account.currency] += event.amount_in_cents
        elif isinstance(event, Account.Withdrawn):
            self.withdrawals[account.currency] += event.amount_in_cents
        elif isinstance(event, Account.TransferSent):
            transfer = self._transfer(event.transfer_id)
            transfer.sent.append(_Half.of(event, account, event.to_account_id))
            if event.transfer_id not in self.by_transfer_id and len(transfer.sent) == 1:
                transfer.legacy_view = _legacy_view(event, account, notification_id)
        elif isinstance(event, Account.TransferReceived):
            self._transfer(event.transfer_id).received.append(
                _Half.of(event, account, event.from_account_id)
            )
        elif isinstance(event, Account.HoldPlaced):
            self.holds[event.transfer_id].placed.append(
                _Hold(
                    account.account_id,
                    event.originator_version,
                    event.counterparty_account_id,
                    event.amount_in_cents,
                    event.is_debit,
                    event.expires_at,
                    account.currency,
                )
            )
        elif isinstance(event, HOLD_ENDS):
            self.holds[event.transfer_id].ends[account.account_id] = (
                type(event).__name__,
                event.amount_in_cents,
            )

    def _transfer(self, transfer_id: str) -> TransferHalves:
        return self.transfers.setdefault(transfer_id, TransferHalves())

    @staticmethod
    def _after(event: Account.Event, account: Account, balance_before: int) -> _After:
        if type(event) in STATEMENT_KINDS:
            kind = statement_kind(event)[0]
        else:
            kind = type(event).__name__
        fields = event_fields(event)
        line = Line(
            account.version,
            kind,
            account.balance_in_cents - balance_before,
            account.balance_in_cents,
            fields.get("to_account_id")
            or fields.get("from_account_id")
            or fields.get("counterparty_account_id"),
            fields.get("transfer_id"),
            fields.get("reference") or None,
            dict(fields.get("metadata") or {}),
        )
        return _After(
            account.overdraft_limit_in_cents,
            account.is_closed,
            _held(account, is_debit=True),
            _held(account, is_debit=False),
            line,
        )

    def apply_transfer(self, event: Transfer.Event, notification_id: int) -> None:
        """Check one of a transfer's own events, then apply it with the domain."""
        self.transfer_events += 1
        replayed = self.aggregates.get(event.originator_id)
        if replayed is None:
            self._create(event, notification_id)
            return
        transfer = replayed.transfer
        version = event.originator_version
        if version != transfer.version + 1:
            self.transfer_problem(
                STREAMS,
                transfer,
                f"{type(event).__name__} has version {version} but follows version "
                f"{transfer.version}; versions must run on without gaps.",
                version,
            )
            if version <= transfer.version:
                return
            transfer.version = version - 1
        self._check_transfer_event(event, replayed)
        event.mutate(transfer)
        if isinstance(event, Transfer.Reversed):
            replayed.reversals.append(
                (event.reversal_transfer_id, event.amount_in_cents)
            )

    def _create(self, event: Transfer.Event, notification_id: int) -> None:
        if not isinstance(event, Transfer.Created) or event.originator_version != 1:
            self._orphan(event, "Created")
            return
        transfer = cast("Transfer", event.mutate(None))
        if Transfer.create_id(transfer.transfer_id) != transfer.id:
            self.transfer_problem(
                STREAMS,
                transfer,
                f"its Created event is stored in stream {transfer.id}, not in the "
                f"stream its id names ({Transfer.create_id(transfer.transfer_id)}).",
                1,
            )
        replayed = TransferReplayed(transfer, notification_id, event.is_pending)
        self.aggregates[transfer.id] = replayed
        self.by_transfer_id[transfer.transfer_id] = replayed
        if event.reverses_transfer_id is not None:
            self._check_reversal(transfer)

    def _check_reversal(self, reversal: Transfer) -> None:
        """A reversal at its creation: the original exists, was posted, is mirrored."""
        original_id = reversal.reverses_transfer_id
        original = self.by_transfer_id.get(original_id or "")
        if original is None:
            problem = f"reverses transfer {original_id}, which no Transfer records."
        elif original.transfer.state != POSTED:
            problem = (
                f"reverses transfer {original_id}, which is "
                f"{original.transfer.state}, not posted."
            )
        elif (reversal.from_account_id, reversal.to_account_id) != (
            original.transfer.to_account_id,
            original.transfer.from_account_id,
        ):
            problem = (
                f"moves money from {reversal.from_account_id} to "
                f"{reversal.to_account_id}, not back from "
                f"{original.transfer.to_account_id} to "
                f"{original.transfer.from_account_id} as its original did."
            )
        else:
            return
        self.transfer_problem(TRANSFERS, reversal, problem, 1)

    def _check_transfer_event(
        self, event: Transfer.Event, replayed: TransferReplayed
    ) -> None:
        transfer = replayed.transfer
        name = type(event).__name__
        version = event.originator_version
        if isinstance(event, Transfer.Reversed):
            remaining = transfer.posted_amount_in_cents - (
                transfer.reversed_amount_in_cents
            )
            if transfer.state != POSTED:
                problem = f"Reversed (version {version}) but it is {transfer.state}."
            elif event.amount_in_cents > remaining:
                problem = (
                    f"Reversed {event.amount_in_cents} cents (version {version}), "
                    f"but only {remaining} of the {transfer.posted_amount_in_cents} "
                    "posted were left to reverse."
                )
            else:
                return
            self.transfer_problem(TRANSFERS, transfer, problem, version)
            return
        if transfer.state != PENDING:
            problem = f"{name} (version {version}) but it was {transfer.state}."
        elif isinstance(event, Transfer.Posted) and (
            event.amount_in_cents > transfer.amount_in_cents
        ):
            problem = (
                f"Posted {event.amount_in_cents} cents (version {version}) of the "
                f"{transfer.amount_in_cents} it held."
            )
        elif isinstance(event, Transfer.Expired) and not _expired_by(
            transfer.expires_at, event.timestamp
        ):
            problem = (
                f"Expired (version {version}) at {event.timestamp.isoformat()}, but "
                f"it expires at {when(transfer.expires_at)}."
            )
        else:
            return
        self.transfer_problem(HOLDS, transfer, problem, version)

    def transfer_problem(
        self, check: str, transfer: Transfer, problem: str, version: int | None
    ) -> None:
        self.violation(
            check,
            f"Transfer {transfer.transfer_id}: {problem}",
            version=version,
            transfer_id=transfer.transfer_id,
        )


def _expired_by(expires_at: datetime | None, moment: datetime) -> bool:
    return expires_at is not None and expires_at <= moment


def when(expires_at: datetime | None) -> str:
    """An expiry in words: its time, or "never"."""
    return "never" if expires_at is None else expires_at.isoformat()


def _legacy_view(
    event: Account.TransferSent, account: Account, notification_id: int
) -> dict[str, Any]:
    """What the transfers view says of a transfer that has no Transfer aggregate."""
    return {
        "from_account_id": account.account_id,
        "to_account_id": event.to_account_id,
        "currency": account.currency,
        "amount_in_cents": event.amount_in_cents,
        "status": POSTED,
        "posted_amount_in_cents": event.amount_in_cents,
        "reversed_amount_in_cents": 0,
        "reverses_transfer_id": None,
        "metadata": dict(event.metadata),
        "created_at": event.timestamp,
        "expires_at": None,
        "position": notification_id,
    }


def result(replay: Replay, check: str, examined: str) -> CheckResult:
    """A check's result: what it examined and the violations of it found so far."""
    found = sum(1 for violation in replay.violations if violation.check == check)
    return CheckResult(check, CHECKS[check], examined, found)


def transfer_ids(replay: Replay) -> set[str]:
    """Every transfer the log tells of: by its halves, its holds or its aggregate."""
    return {*replay.transfers, *replay.holds, *replay.by_transfer_id}


def currency_totals(replay: Replay) -> dict[str, CurrencyTotals]:
    """The money of each currency the replay has seen, by currency code."""
    balances: dict[str, int] = defaultdict(int)
    for replayed in replay.accounts.values():
        balances[replayed.account.currency] += replayed.account.balance_in_cents
    return {
        currency: CurrencyTotals(
            balances[currency],
            replay.deposits[currency],
            replay.withdrawals[currency],
        )
        for currency in sorted({*balances, *replay.deposits, *replay.withdrawals})
    }


def state_differences(stored: AccountState, derived: AccountState) -> str:
    """Which fields differ, e.g. "balance_in_cents is 999, the events give 500"."""
    return "; ".join(
        f"{name} is {value!r}, the events give {getattr(derived, name)!r}"
        for name, value in vars(stored).items()
        if value != getattr(derived, name)
    )
