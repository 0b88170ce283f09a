"""The one reader of the notification log: ledger events in the order stored.

The read models, the audit and the CLI's replay all follow the log through
this module, a page at a time, so a log of any length streams. Ledger events
are the accounts' events and the transfers' own; idempotency records are not.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

from eventsourcing.utils import get_topic

from bank.domain import ACCOUNT_EVENT_TYPES, Account
from bank.persistence.base import LOG_START, LogPosition, SqlApplicationRecorder
from bank.transfers import TRANSFER_EVENT_TYPES, Transfer

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from uuid import UUID

    from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

PAGE_SIZE = 1000
SETTLE_SECONDS = 5.0  # the longest a query waits for older commits to land
ACCOUNT_TOPICS = tuple(get_topic(cls) for cls in ACCOUNT_EVENT_TYPES.values())
TRANSFER_TOPICS = tuple(get_topic(cls) for cls in TRANSFER_EVENT_TYPES.values())
LEDGER_TOPICS = ACCOUNT_TOPICS + TRANSFER_TOPICS
LedgerEvent: TypeAlias = Account.Event | Transfer.Event


class LoggedEvent(NamedTuple):
    """A ledger event and its position in the log."""

    position: LogPosition
    event: LedgerEvent

    @property
    def notification_id(self) -> int:
        """The event's notification id (its row's number, not its place in order)."""
        return self.position.notification_id


class EventLog:
    """An application's notification log, read as ledger events.

    On this package's recorders the log is read in LogPosition order, which
    never passes an event that commits late; on others (the in-memory store),
    by notification id, which their writers commit in order.
    """

    def __init__(self, recorder: ApplicationRecorder, mapper: Mapper[Any]) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self._log = recorder if isinstance(recorder, SqlApplicationRecorder) else None

    def head(self) -> LogPosition:
        """The position of the last ledger event that can be read now (or LOG_START).

        Idempotency records are in the log too, but not in the ledger: no
        reader of the ledger moves past them, so no head names one.
        """
        if self._log is not None:
            return self._log.log_head(LEDGER_TOPICS)
        # Other stores can't read backwards: windows from the end, back.
        stop = self.recorder.max_notification_id() or 0
        while stop > 0:
            start = max(1, stop - PAGE_SIZE + 1)
            window = self.recorder.select_notifications(
                start, PAGE_SIZE, stop=stop, topics=LEDGER_TOPICS
            )
            if window:
                return LogPosition(0, window[-1].id)
            stop = start - 1
        return LOG_START

    def latest(self) -> Notification | None:
        """The stored event with the highest id (of any kind), undecoded."""
        head = self.recorder.max_notification_id()
        if head is None:
            return None
        notifications = self.recorder.select_notifications(head, 1)
        return notifications[0] if notifications else None

    def settled_head(self) -> LogPosition:
        """The head once every event committed before now can be read."""
        self.settle()
        return self.head()

    def settle(self, timeout: float = SETTLE_SECONDS) -> bool:
        """Wait until every event committed before now can be read; False at timeout.

        Read-your-writes: a query that follows a command waits here for any
        older transaction still committing, whose events come first in the log.
        """
        if self._log is None:
            return True
        horizon = self._log.log_horizon()
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while not self._log.log_settled(horizon):
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
        return True

    def count(self, after: LogPosition, stop: LogPosition, most: int = 100_000) -> int:
        """How many ledger events lie after `after` up to `stop` (at most `most`)."""
        if stop <= after:
            return 0
        if self._log is not None:
            return self._log.count_log(after, stop, LEDGER_TOPICS, most)
        return len(self._select(after, most, stop, LEDGER_TOPICS))

    def page(
        self,
        after: LogPosition,
        limit: int = PAGE_SIZE,
        *,
        stop: LogPosition | None = None,
        topics: Sequence[str] = LEDGER_TOPICS,
        stream: UUID | None = None,
    ) -> list[LoggedEvent]:
        """Up to `limit` events after position `after` (up to `stop`), in order.

        With `stream`, only that aggregate's events.
        """
        return [
            self._decoded(position, notification)
            for position, notification in self._select(
                after, limit, stop, topics, stream
            )
        ]

    def events(
        self,
        after: LogPosition = LOG_START,
        stop: LogPosition | None = None,
        *,
        topics: Sequence[str] = LEDGER_TOPICS,
        stream: UUID | None = None,
    ) -> Iterator[LoggedEvent]:
        """Every event after `after` up to `stop` (default: the settled head).

        With `stream`, only that aggregate's events, which are the only ones
        decoded.
        """
        stop = self.settled_head() if stop is None else stop
        while after < stop:
            selected = self._select(after, PAGE_SIZE, stop, topics)
            if not selected:
                return
            after = selected[-1][0]
            for position, notification in selected:
                if stream is None or notification.originator_id == stream:
                    yield self._decoded(position, notification)

    def _select(
        self,
        after: LogPosition,
        limit: int,
        stop: LogPosition | None,
        topics: Sequence[str],
        stream: UUID | None = None,
    ) -> Sequence[tuple[LogPosition, Notification]]:
        if self._log is not None:
            return self._log.select_log(
                after, limit, up_to=stop, topics=topics, originator_id=stream
            )
        selected: list[tuple[LogPosition, Notification]] = []
        # The in-memory store can't select one stream: pages are filtered here.
        while len(selected) < limit:
            notifications = self.recorder.select_notifications(
                after.notification_id,
                limit,
                stop=None if stop is None else stop.notification_id,
                topics=topics,
                inclusive_of_start=False,
            )
            if not notifications:
                break
            after = LogPosition(0, notifications[-1].id)
            selected += [
                (LogPosition(0, n.id), n)
                for n in notifications
                if stream is None or n.originator_id == stream
            ]
        return selected[:limit]

    def _decoded(
        self, position: LogPosition, notification: Notification
    ) -> LoggedEvent:
        event = cast("LedgerEvent", self.mapper.to_domain_event(notification))
        return LoggedEvent(position, event)
