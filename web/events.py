"""The event feed over HTTP: pages of events, and the same as Server-Sent Events."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from flask import Response, current_app, jsonify, request

from bank.domain import normalise_account_id
from bank.feed import FEED_TYPES, EventFeed, FeedEvent
from bank.persistence import LOG_START
from web.api import (
    api,
    checked,
    page_size,
    parse_position,
    query_position,
    read_side,
)
from web.errors import ApiError
from web.reads import FeedEventView, FeedPageView

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bank.persistence import LogPosition

HEARTBEAT_SECONDS = "BANK_FEED_HEARTBEAT_SECONDS"
STREAM_SECONDS = "BANK_FEED_STREAM_SECONDS"
MAX_STREAMS = "BANK_FEED_MAX_STREAMS"
DEFAULT_HEARTBEAT_SECONDS = 15.0
DEFAULT_STREAM_SECONDS = 300.0
DEFAULT_MAX_STREAMS = 32
POLL_SECONDS = 0.05
STREAM_PAGE = 100
RECONNECT_MILLISECONDS = 1000


def feed() -> EventFeed:
    """The event feed of this app's bank, built on first use."""
    extensions = current_app.extensions
    if "feed" not in extensions:
        extensions["feed"] = EventFeed(read_side())
    found: EventFeed = extensions["feed"]
    return found


@api.get("/events")
def list_events() -> Response:
    """Every event of the bank in log order: `?after=&limit=&account_id=&type=`."""
    after = query_position("after") or LOG_START
    limit = page_size()
    account_id, event_type = feed_filters()
    page = feed().page(
        after,
        limit,
        account_id=account_id,
        event_type=event_type,
        min_position=query_position("min_position"),
    )
    body = FeedPageView(
        events=[event_view(event) for event in page.events],
        next_after=page.next_after.token(),
    )
    return jsonify(body.model_dump(mode="json"))


@api.get("/events/stream")
def stream_events() -> Response:
    """The feed as Server-Sent Events: `?after=` or Last-Event-ID resumes."""
    after = query_position("after") or LOG_START
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id:
        after = parse_position(last_event_id, "Last-Event-ID", "headers")
    account_id, event_type = feed_filters()
    slots = stream_slots()
    if not slots.acquire(blocking=False):
        raise ApiError(
            "too_many_streams",
            "This worker serves as many event streams as it may; retry later.",
        )
    try:
        events = EventStream(
            feed(), after, account_id, event_type, setting, slots.release
        )
    except BaseException:
        slots.release()
        raise
    return Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def setting(name: str, default: float) -> float:
    """A feed setting from the app's config or the environment."""
    raw = current_app.config.get(name) or current_app.extensions["bank"].env.get(
        name.removeprefix("BANK_")
    )
    return float(raw) if raw else default


def stream_slots() -> threading.BoundedSemaphore:
    """The streams this worker may serve at once (BANK_FEED_MAX_STREAMS)."""
    extensions = current_app.extensions
    if "feed_streams" not in extensions:
        most = int(setting(MAX_STREAMS, DEFAULT_MAX_STREAMS))
        extensions["feed_streams"] = threading.BoundedSemaphore(max(1, most))
    found: threading.BoundedSemaphore = extensions["feed_streams"]
    return found


class EventStream:
    """One client's stream: events as they are recorded, heartbeats between.

    An iterable of the stream's bytes, as WSGI takes it: `close()` (which
    the server calls however the stream ends, even before it began) hands
    back the stream's slot, once.
    """

    def __init__(
        self,
        events: EventFeed,
        after: LogPosition,
        account_id: str | None,
        event_type: str | None,
        settings: Callable[[str, float], float],
        release: Callable[[], None],
    ) -> None:
        self.feed = events
        self.after = after
        self.account_id = account_id
        self.event_type = event_type
        self.heartbeat = settings(HEARTBEAT_SECONDS, DEFAULT_HEARTBEAT_SECONDS)
        self.lasts = settings(STREAM_SECONDS, DEFAULT_STREAM_SECONDS)
        self._release: Callable[[], None] | None = release
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        """The stream's bytes, until it has lasted its time or is closed."""
        yield f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
        ends = time.monotonic() + self.lasts
        beat = time.monotonic() + self.heartbeat
        while time.monotonic() < ends and not self._closed.is_set():
            page = self.feed.follow(
                self.after,
                STREAM_PAGE,
                account_id=self.account_id,
                event_type=self.event_type,
            )
            self.after = page.next_after
            if page.events:
                yield b"".join(sse(event) for event in page.events)
                beat = time.monotonic() + self.heartbeat
                continue
            if time.monotonic() >= beat:
                yield b": heartbeat\n\n"
                beat = time.monotonic() + self.heartbeat
            self._closed.wait(POLL_SECONDS)

    def close(self) -> None:
        """End the stream and give its slot back (once, however often called)."""
        self._closed.set()
        release, self._release = self._release, None
        if release is not None:
            release()


def sse(event: FeedEvent) -> bytes:
    """One event as Server-Sent Events lines: its position is its id."""
    data = json.dumps(event_view(event).model_dump(mode="json"), separators=(",", ":"))
    return (
        f"id: {event.position.token()}\nevent: {event.type}\ndata: {data}\n\n".encode()
    )


def event_view(event: FeedEvent) -> FeedEventView:
    """Describe one feed event."""
    return FeedEventView(
        position=event.position.token(),
        account_id=event.account_id,
        type=event.type,
        version=event.version,
        timestamp=event.timestamp,
        data=event.data,
    )


def feed_filters() -> tuple[str | None, str | None]:
    """The `account_id` and `type` filters, checked."""
    account_id = request.args.get("account_id")
    if account_id is not None:
        reason = "must be 1 to 64 letters, digits or any of '-_.:'"
        account_id = checked(normalise_account_id, account_id, "account_id", reason)
    event_type = request.args.get("type")
    if event_type is not None and event_type not in FEED_TYPES:
        raise ApiError(
            "validation_error",
            "Query parameter 'type' must be an event type the feed knows.",
            {
                "errors": [
                    {
                        "field": "query.type",
                        "reason": "must be one of " + ", ".join(FEED_TYPES),
                    }
                ]
            },
        )
    return account_id, event_type
