"""Given/when/then with events: record the facts production would, then compare."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate, datetime_now_with_tzinfo
from eventsourcing.utils import get_topic

from bank import Account, BankApplication
from bank.domain import event_fields
from bank.transfers import Transfer

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from bank.commands import Command, CommandResult


@dataclass(frozen=True)
class Fact:
    """One event of one account (or transfer): its type and its own fields.

    `public_id` is the account id, or for a transfer's own events the transfer id.
    """

    public_id: str
    kind: type[Account.Event] | type[Transfer.Event]
    fields: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.fields.items())
        return f"{self.kind.__qualname__}({self.public_id!r}, {arguments})"


def opened(
    account_id: str, owner_email: str = "owner@example.com", currency: str = "USD"
) -> Fact:
    """The account was opened."""
    return Fact(
        account_id,
        Account.Opened,
        {"account_id": account_id, "owner_email": owner_email, "currency": currency},
    )


def deposited(
    account_id: str,
    amount_in_cents: int,
    reference: str = "",
    metadata: dict[str, str] | None = None,
) -> Fact:
    """Money was paid in."""
    return Fact(
        account_id,
        Account.Deposited,
        {
            "amount_in_cents": amount_in_cents,
            "reference": reference,
            "metadata": metadata or {},
        },
    )


def withdrawn(
    account_id: str, amount_in_cents: int, metadata: dict[str, str] | None = None
) -> Fact:
    """Money was paid out."""
    return Fact(
        account_id,
        Account.Withdrawn,
        {"amount_in_cents": amount_in_cents, "metadata": metadata or {}},
    )


def transfer_sent(
    account_id: str,
    to_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    metadata: dict[str, str] | None = None,
) -> Fact:
    """Money left for another account."""
    return Fact(
        account_id,
        Account.TransferSent,
        {
            "transfer_id": transfer_id,
            "to_account_id": to_account_id,
            "amount_in_cents": amount_in_cents,
            "metadata": metadata or {},
        },
    )


def transfer_received(
    account_id: str,
    from_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    metadata: dict[str, str] | None = None,
) -> Fact:
    """Money arrived from another account."""
    return Fact(
        account_id,
        Account.TransferReceived,
        {
            "transfer_id": transfer_id,
            "from_account_id": from_account_id,
            "amount_in_cents": amount_in_cents,
            "metadata": metadata or {},
        },
    )


def hold_placed(
    account_id: str,
    counterparty_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    *,
    is_debit: bool,
    expires_at: datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> Fact:
    """A pending transfer reserves money here (a debit) or will bring it (credit)."""
    return Fact(
        account_id,
        Account.HoldPlaced,
        {
            "transfer_id": transfer_id,
            "counterparty_account_id": counterparty_account_id,
            "amount_in_cents": amount_in_cents,
            "is_debit": is_debit,
            "expires_at": expires_at,
            "metadata": metadata or {},
        },
    )


def _hold_ended(
    kind: type[Account.Event],
    account_id: str,
    counterparty_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    is_debit: bool,
) -> Fact:
    return Fact(
        account_id,
        kind,
        {
            "transfer_id": transfer_id,
            "counterparty_account_id": counterparty_account_id,
            "amount_in_cents": amount_in_cents,
            "is_debit": is_debit,
        },
    )


def hold_posted(
    account_id: str,
    counterparty_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    *,
    is_debit: bool,
) -> Fact:
    """This much of a hold moved."""
    return _hold_ended(
        Account.HoldPosted,
        account_id,
        counterparty_account_id,
        amount_in_cents,
        transfer_id,
        is_debit,
    )


def hold_voided(
    account_id: str,
    counterparty_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    *,
    is_debit: bool,
) -> Fact:
    """A hold was released."""
    return _hold_ended(
        Account.HoldVoided,
        account_id,
        counterparty_account_id,
        amount_in_cents,
        transfer_id,
        is_debit,
    )


def hold_expired(
    account_id: str,
    counterparty_account_id: str,
    amount_in_cents: int,
    transfer_id: Any,
    *,
    is_debit: bool,
) -> Fact:
    """A hold lapsed."""
    return _hold_ended(
        Account.HoldExpired,
        account_id,
        counterparty_account_id,
        amount_in_cents,
        transfer_id,
        is_debit,
    )


def transfer_created(
    transfer_id: str,
    from_account_id: str,
    to_account_id: str,
    amount_in_cents: int,
    *,
    currency: str = "USD",
    is_pending: bool = False,
    expires_at: datetime | None = None,
    reverses_transfer_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Fact:
    """A transfer was made (posted at once, or pending)."""
    return Fact(
        transfer_id,
        Transfer.Created,
        {
            "transfer_id": transfer_id,
            "from_account_id": from_account_id,
            "to_account_id": to_account_id,
            "currency": currency,
            "amount_in_cents": amount_in_cents,
            "is_pending": is_pending,
            "expires_at": expires_at,
            "reverses_transfer_id": reverses_transfer_id,
            "metadata": metadata or {},
        },
    )


def transfer_posted(transfer_id: str, amount_in_cents: int) -> Fact:
    """A pending transfer moved this much."""
    return Fact(transfer_id, Transfer.Posted, {"amount_in_cents": amount_in_cents})


def transfer_voided(transfer_id: str) -> Fact:
    """A pending transfer was released."""
    return Fact(transfer_id, Transfer.Voided)


def transfer_expired(transfer_id: str) -> Fact:
    """A pending transfer lapsed."""
    return Fact(transfer_id, Transfer.Expired)


def transfer_reversed(
    transfer_id: str, amount_in_cents: int, reversal_transfer_id: Any
) -> Fact:
    """This much of a posted transfer was moved back."""
    return Fact(
        transfer_id,
        Transfer.Reversed,
        {
            "amount_in_cents": amount_in_cents,
            "reversal_transfer_id": reversal_transfer_id,
        },
    )


def overdraft_limit_set(account_id: str, overdraft_limit_in_cents: int) -> Fact:
    """The overdraft limit was changed."""
    return Fact(
        account_id,
        Account.OverdraftLimitSet,
        {"overdraft_limit_in_cents": overdraft_limit_in_cents},
    )


def closed(account_id: str) -> Fact:
    """The account was closed."""
    return Fact(account_id, Account.Closed)


# Whole transfers as the bank records them, and a log of every kind of them.

OLD = "00000000-0000-4000-8000-000000000001"  # made before Transfer aggregates
HELD = "00000000-0000-4000-8000-000000000002"
VOID = "00000000-0000-4000-8000-000000000003"
GONE = "00000000-0000-4000-8000-000000000004"
LAPSED = "00000000-0000-4000-8000-000000000005"
OPEN = "00000000-0000-4000-8000-000000000006"
PAID = "00000000-0000-4000-8000-000000000007"
BACK = "00000000-0000-4000-8000-000000000008"
EURO = "00000000-0000-4000-8000-000000000009"
SOON = "00000000-0000-4000-8000-000000000010"


def pending(
    transfer_id: str,
    payer: str,
    payee: str,
    amount: int,
    *,
    expires_at: datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> list[Fact]:
    """A pending transfer as the bank records it: its Transfer, then both holds."""
    return [
        transfer_created(
            transfer_id,
            payer,
            payee,
            amount,
            is_pending=True,
            expires_at=expires_at,
            metadata=metadata,
        ),
        hold_placed(
            payer,
            payee,
            amount,
            transfer_id,
            is_debit=True,
            expires_at=expires_at,
            metadata=metadata,
        ),
        hold_placed(
            payee,
            payer,
            amount,
            transfer_id,
            is_debit=False,
            expires_at=expires_at,
            metadata=metadata,
        ),
    ]


def posted(transfer_id: str, payer: str, payee: str, amount: int) -> list[Fact]:
    """A pending transfer posted (this much of it), on itself and both holds."""
    return [
        transfer_posted(transfer_id, amount),
        hold_posted(payer, payee, amount, transfer_id, is_debit=True),
        hold_posted(payee, payer, amount, transfer_id, is_debit=False),
    ]


def voided(transfer_id: str, payer: str, payee: str, amount: int) -> list[Fact]:
    """A pending transfer voided, on itself and both holds."""
    return [
        transfer_voided(transfer_id),
        hold_voided(payer, payee, amount, transfer_id, is_debit=True),
        hold_voided(payee, payer, amount, transfer_id, is_debit=False),
    ]


def expired(transfer_id: str, payer: str, payee: str, amount: int) -> list[Fact]:
    """A lapsed pending transfer recorded as expired, on itself and both holds."""
    return [
        transfer_expired(transfer_id),
        hold_expired(payer, payee, amount, transfer_id, is_debit=True),
        hold_expired(payee, payer, amount, transfer_id, is_debit=False),
    ]


def moved(
    transfer_id: str,
    payer: str,
    payee: str,
    amount: int,
    *,
    currency: str = "USD",
    reverses: str | None = None,
    metadata: dict[str, str] | None = None,
) -> list[Fact]:
    """A transfer posted at once: its Transfer, then both halves."""
    return [
        transfer_created(
            transfer_id,
            payer,
            payee,
            amount,
            currency=currency,
            reverses_transfer_id=reverses,
            metadata=metadata,
        ),
        *halves(transfer_id, payer, payee, amount, metadata=metadata),
    ]


def halves(
    transfer_id: str,
    payer: str,
    payee: str,
    amount: int,
    metadata: dict[str, str] | None = None,
) -> list[Fact]:
    """Both halves of a transfer: all a transfer made before aggregates has."""
    return [
        transfer_sent(payer, payee, amount, transfer_id, metadata),
        transfer_received(payee, payer, amount, transfer_id, metadata),
    ]


def reversal(
    original: str, reversal_id: str, payer: str, payee: str, amount: int
) -> list[Fact]:
    """This much of a posted transfer moved back, by a new transfer."""
    return [
        transfer_reversed(original, amount, reversal_id),
        *moved(reversal_id, payee, payer, amount, reverses=original),
    ]


def every_new_kind_of_event() -> list[Fact]:
    """A log with every kind of hold and transfer event, in two currencies.

    A pays B: 10 before transfers were aggregates (OLD); holds 300 and posts
    200 (HELD); holds and voids 100 (VOID); holds 50 that lapsed and expired
    (GONE); holds 40 that lapsed unrecorded (LAPSED); holds 30 still (OPEN);
    pays 100 (PAID), of which B pays 60 back (BACK). E pays F 5 euros (EURO).
    """
    now = datetime_now_with_tzinfo()
    past, soon = now - timedelta(hours=1), now + timedelta(hours=1)
    return [
        opened("A"),
        opened("B"),
        opened("E", currency="EUR"),
        opened("F", currency="EUR"),
        deposited("A", 1000, metadata={"invoice": "42"}),
        *halves(OLD, "A", "B", 10),
        *pending(HELD, "A", "B", 300, expires_at=soon, metadata={"order": "7"}),
        *posted(HELD, "A", "B", 200),
        *pending(VOID, "A", "B", 100),
        *voided(VOID, "A", "B", 100),
        *pending(GONE, "A", "B", 50, expires_at=past),
        *expired(GONE, "A", "B", 50),
        *pending(LAPSED, "A", "B", 40, expires_at=past),
        *pending(OPEN, "A", "B", 30),
        *moved(PAID, "A", "B", 100, metadata={"note": "rent"}),
        *reversal(PAID, BACK, "A", "B", 60),
        deposited("E", 500),
        *moved(EURO, "E", "F", 5, currency="EUR"),
    ]


# What the issue names for a transfer's answer: the keys clients read.
TRANSFER_KEYS = {
    "transfer_id",
    "from_account_id",
    "to_account_id",
    "currency",
    "amount_in_cents",
    "status",
    "posted_amount_in_cents",
    "reversed_amount_in_cents",
    "reverses_transfer_id",
    "metadata",
    "created_at",
    "expires_at",
}


def per_stream(facts: list[Fact]) -> dict[str, list[Fact]]:
    """Facts by account (or transfer), each stream's in order.

    A command that touches several aggregates saves them in one transaction,
    one after another; only the order within each of them is a rule.
    """
    streams: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        streams[fact.public_id].append(fact)
    return dict(streams)


class Scenario:
    """Records given facts as real events, runs a command, reports new events."""

    def __init__(self, app: BankApplication) -> None:
        self.app = app
        self._versions: dict[UUID, int] = defaultdict(int)
        self._public_ids: dict[Any, str] = {}
        self._position = 0

    def given(self, *facts: Fact) -> None:
        """Store these events exactly as production would have stored them."""
        events = [self._event(fact) for fact in facts]
        self.app.events.put(events)
        self._position = self.app.recorder.max_notification_id() or 0

    def when(self, command: Command) -> CommandResult:
        """Run one command through the application."""
        return self.app.execute(command)[0]

    def new_events(self) -> list[Fact]:
        """The facts recorded since the last `given` (all accounts, in order)."""
        notifications = self.app.recorder.select_notifications(
            start=self._position + 1, limit=10_000
        )
        facts = []
        for notification in notifications:
            domain_event = self.app.mapper.to_domain_event(notification)
            if isinstance(domain_event, Account.Opened):
                self._public_ids[domain_event.originator_id] = domain_event.account_id
            if isinstance(domain_event, Transfer.Created):
                self._public_ids[domain_event.originator_id] = domain_event.transfer_id
            facts.append(self._fact(domain_event))
        return facts

    def event_count(self) -> int:
        """How many events the store holds in all."""
        return self.app.recorder.max_notification_id() or 0

    def _event(self, fact: Fact) -> Account.Event | Transfer.Event:
        aggregate = Transfer if issubclass(fact.kind, Transfer.Event) else Account
        aggregate_id = aggregate.create_id(fact.public_id)
        self._versions[aggregate_id] += 1
        self._public_ids[aggregate_id] = fact.public_id
        extra = (
            {"originator_topic": get_topic(aggregate)}
            if issubclass(fact.kind, Aggregate.Created)
            else {}
        )
        return fact.kind(
            originator_id=aggregate_id,
            originator_version=self._versions[aggregate_id],
            timestamp=datetime_now_with_tzinfo(),
            **extra,
            **fact.fields,
        )

    def _fact(self, domain_event: Any) -> Fact:
        return Fact(
            self._public_ids[domain_event.originator_id],
            type(domain_event),
            event_fields(domain_event),
        )
