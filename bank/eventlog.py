"""The one reader of the notification log: ledger events in the order stored.

The read models, the audit and the CLI's replay all follow the log through
this module, a page at a time, so a log of any length streams. Ledger events
are the accounts' events and the transfers' own; idempotency records are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

from eventsourcing.utils import get_topic

from bank.domain import ACCOUNT_EVENT_TYPES, Account
from bank.transfers import TRANSFER_EVENT_TYPES, Transfer

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from uuid import UUID

    from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

PAGE_SIZE = 1000
ACCOUNT_TOPICS = tuple(get_topic(cls) for cls in ACCOUNT_EVENT_TYPES.values())
TRANSFER_TOPICS = tuple(get_topic(cls) for cls in TRANSFER_EVENT_TYPES.values())
LEDGER_TOPICS = ACCOUNT_TOPICS + TRANSFER_TOPICS
LedgerEvent: TypeAlias = Account.Event | Transfer.Event


class LoggedEvent(NamedTuple):
    """A ledger event and its position in the log (its notification id)."""

    notification_id: int
    event: LedgerEvent


class EventLog:
    """An application's notification log, read as ledger events."""

    def __init__(self, recorder: ApplicationRecorder, mapper: Mapper[Any]) -> None:
        self.recorder = recorder
        self.mapper = mapper

    def head(self) -> int:
        """The notification id of the last event recorded (0 for an empty log)."""
        return self.recorder.max_notification_id() or 0

    def page(
        self,
        after: int,
        limit: int = PAGE_SIZE,
        *,
        stop: int | None = None,
        topics: Sequence[str] = LEDGER_TOPICS,
    ) -> list[LoggedEvent]:
        """Up to `limit` events after position `after` (up to `stop`), in order."""
        return [
            self._decoded(notification)
            for notification in self._select(after, limit, stop, topics)
        ]

    def events(
        self,
        after: int = 0,
        stop: int | None = None,
        *,
        topics: Sequence[str] = LEDGER_TOPICS,
        stream: UUID | None = None,
    ) -> Iterator[LoggedEvent]:
        """Every event after `after` up to `stop` (default: the head when asked).

        With `stream`, only that aggregate's events, which are the only ones
        decoded.
        """
        stop = self.head() if stop is None else stop
        while after < stop:
            notifications = self._select(after, PAGE_SIZE, stop, topics)
            if not notifications:
                return
            after = notifications[-1].id
            for notification in notifications:
                if stream is None or notification.originator_id == stream:
                    yield self._decoded(notification)

    def _select(
        self, after: int, limit: int, stop: int | None, topics: Sequence[str]
    ) -> Sequence[Notification]:
        return self.recorder.select_notifications(
            after, limit, stop=stop, topics=topics, inclusive_of_start=False
        )

    def _decoded(self, notification: Notification) -> LoggedEvent:
        event = cast("LedgerEvent", self.mapper.to_domain_event(notification))
        return LoggedEvent(notification.id, event)
