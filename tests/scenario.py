"""Given/when/then with events: record the facts production would, then compare."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import datetime_now_with_tzinfo
from eventsourcing.utils import get_topic

from bank import Account, BankApplication
from bank.domain import event_fields

if TYPE_CHECKING:
    from bank.commands import Command, CommandResult


@dataclass(frozen=True)
class Fact:
    """One event of one account, described by its type and its own fields."""

    account_id: str
    kind: type[Account.Event]
    fields: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.fields.items())
        return f"{self.kind.__name__}({self.account_id!r}, {arguments})"


def opened(account_id: str, owner_email: str = "owner@example.com") -> Fact:
    """The account was opened."""
    return Fact(
        account_id,
        Account.Opened,
        {"account_id": account_id, "owner_email": owner_email},
    )


def deposited(account_id: str, amount_in_cents: int, reference: str = "") -> Fact:
    """Money was paid in."""
    return Fact(
        account_id,
        Account.Deposited,
        {"amount_in_cents": amount_in_cents, "reference": reference},
    )


def withdrawn(account_id: str, amount_in_cents: int) -> Fact:
    """Money was paid out."""
    return Fact(account_id, Account.Withdrawn, {"amount_in_cents": amount_in_cents})


def transfer_sent(
    account_id: str, to_account_id: str, amount_in_cents: int, transfer_id: Any
) -> Fact:
    """Money left for another account."""
    return Fact(
        account_id,
        Account.TransferSent,
        {
            "transfer_id": transfer_id,
            "to_account_id": to_account_id,
            "amount_in_cents": amount_in_cents,
        },
    )


def transfer_received(
    account_id: str, from_account_id: str, amount_in_cents: int, transfer_id: Any
) -> Fact:
    """Money arrived from another account."""
    return Fact(
        account_id,
        Account.TransferReceived,
        {
            "transfer_id": transfer_id,
            "from_account_id": from_account_id,
            "amount_in_cents": amount_in_cents,
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


class Scenario:
    """Records given facts as real events, runs a command, reports new events."""

    def __init__(self, app: BankApplication) -> None:
        self.app = app
        self._versions: dict[str, int] = defaultdict(int)
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
            facts.append(self._fact(domain_event))
        return facts

    def event_count(self) -> int:
        """How many events the store holds in all."""
        return self.app.recorder.max_notification_id() or 0

    def _event(self, fact: Fact) -> Account.Event:
        self._versions[fact.account_id] += 1
        aggregate_id = Account.create_id(fact.account_id)
        self._public_ids[aggregate_id] = fact.account_id
        extra = (
            {"originator_topic": get_topic(Account)}
            if fact.kind is Account.Opened
            else {}
        )
        return fact.kind(
            originator_id=aggregate_id,
            originator_version=self._versions[fact.account_id],
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
