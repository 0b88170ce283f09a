"""The event feed: every event of the bank, in log order, for outside consumers.

A consumer of the feed is the same kind of thing as the projector that keeps
the read models: it follows the log from a position of its own, and keeps
that position with what it did. Processing an event (deciding, on the write
side) happens once, in the command; following the log happens any number of
times, in any number of consumers, each at its own pace.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.utils import get_topic

from bank.domain import ACCOUNT_EVENT_TYPES, Account, event_fields
from bank.eventlog import LEDGER_TOPICS
from bank.persistence import LOG_START, LogPosition
from bank.transfers import TRANSFER_EVENT_TYPES, Transfer

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from bank.eventlog import LoggedEvent
    from bank.readside import ReadSide

# The feed's name for each kind of event: an account's by its class, a
# transfer's prefixed ("TransferCreated"), as both have a "Created"-like name.
FEED_TYPES: dict[str, type[Account.Event] | type[Transfer.Event]] = {
    **ACCOUNT_EVENT_TYPES,
    **{f"Transfer{name}": cls for name, cls in TRANSFER_EVENT_TYPES.items()},
}
_TOPIC_OF_TYPE = {name: get_topic(cls) for name, cls in FEED_TYPES.items()}
_TYPE_OF_CLASS = {cls: name for name, cls in FEED_TYPES.items()}
_ACCOUNT_IDS_CACHED = 65536


@dataclass(frozen=True)
class FeedEvent:
    """One event as the feed shows it."""

    position: LogPosition
    account_id: str | None
    type: str
    version: int
    timestamp: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class FeedPage:
    """Some events in log order, and the position to ask after for the next."""

    events: list[FeedEvent]
    next_after: LogPosition


class EventFeed:
    """Reads the log a page at a time, optionally one account's or one type's."""

    def __init__(self, read_side: ReadSide) -> None:
        self.read_side = read_side
        self.log = read_side.log

    def page(
        self,
        after: LogPosition = LOG_START,
        limit: int = 100,
        *,
        account_id: str | None = None,
        event_type: str | None = None,
        min_position: LogPosition | None = None,
    ) -> FeedPage:
        """Up to `limit` events after `after`, and where the next page starts.

        Waits like every read: for `min_position`, else for the head at
        arrival. `next_after` moves past events the filters skipped, so
        paging never rescans them.
        """
        read_side = self.read_side
        deadline = read_side.deadline()
        read_side.wait_for_log(read_side.target(min_position, deadline), deadline)
        return self.follow(after, limit, account_id=account_id, event_type=event_type)

    def follow(
        self,
        after: LogPosition,
        limit: int,
        *,
        account_id: str | None = None,
        event_type: str | None = None,
    ) -> FeedPage:
        """The next page after `after`, of what can be read now (no waiting)."""
        head = self.log.head()
        topics = LEDGER_TOPICS if event_type is None else (_TOPIC_OF_TYPE[event_type],)
        stream = None if account_id is None else Account.create_id(account_id)
        logged = self.log.page(after, limit, stop=head, topics=topics, stream=stream)
        events = [self._shown(event) for event in logged]
        if len(logged) == limit:
            return FeedPage(events, logged[-1].position)
        # Nothing more up to the head: the next page starts there.
        return FeedPage(events, max(after, head))

    def _shown(self, logged: LoggedEvent) -> FeedEvent:
        domain_event = logged.event
        account_id = (
            self._account_id(domain_event.originator_id)
            if isinstance(domain_event, Account.Event)
            else None
        )
        return FeedEvent(
            position=logged.position,
            account_id=account_id,
            type=_TYPE_OF_CLASS[type(domain_event)],
            version=domain_event.originator_version,
            timestamp=domain_event.timestamp,
            data=event_fields(domain_event),
        )

    @functools.lru_cache(maxsize=_ACCOUNT_IDS_CACHED)  # noqa: B019  # one feed per app
    def _account_id(self, aggregate_id: UUID) -> str:
        """The public id of an account, from its first event (ids are one-way)."""
        [opened] = self.read_side.events.get(aggregate_id, lte=1)
        return str(opened.account_id)  # type: ignore[attr-defined]
