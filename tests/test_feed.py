"""The event feed: every event of the bank in log order, by page or as a stream.

An outside system (a fraud check, a warehouse) follows the ledger here the
way the projector does: from a position of its own, each event once, in order.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

import pytest
from conftest import accepted
from live_server import Server, server_fixture

from bank.persistence import LOG_START
from web import create_app
from web.testing import HOST

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient

STREAM = {"BANK_FEED_STREAM_SECONDS": "1.5", "BANK_FEED_HEARTBEAT_SECONDS": "0.1"}


@pytest.fixture
def feed_app(db_env: BankEnv) -> Iterator[Flask]:
    """The web app, its streams ending by themselves after a second and a half."""
    flask_app = create_app({**db_env, **STREAM, "TESTING": True})
    yield flask_app
    flask_app.extensions["bank"].close()


def given_a_little_ledger(client: FlaskClient) -> list[dict[str, Any]]:
    """Two accounts, a deposit, a transfer and a hold; their answers."""
    transfer = {"from_account_id": "a", "to_account_id": "b"}
    return [
        accepted(client, "account_open", account_owner_email="a@x.com", account_id="a"),
        accepted(client, "account_open", account_owner_email="b@x.com", account_id="b"),
        accepted(client, "account_deposit", account_id="a", amount_in_cents=900),
        accepted(client, "account_transfer", **transfer, amount_in_cents=300),
        accepted(
            client, "account_transfer", **transfer, amount_in_cents=100, pending=True
        ),
    ]


def every_event(client: FlaskClient, query: str = "", limit: int = 2) -> list[Any]:
    """The whole feed, paged with next_after `limit` at a time."""
    events: list[Any] = []
    after = ""
    for _ in range(1000):
        response = client.get(f"/api/events?limit={limit}{query}{after}")
        assert response.status_code == 200, response.json
        body = response.json
        assert body is not None
        events += body["events"]
        after = f"&after={body['next_after']}"
        if len(body["events"]) < limit:
            return events
    pytest.fail("the feed never ended")


EXPECTED_TYPES = [
    ("a", "Opened", 1),
    ("b", "Opened", 1),
    ("a", "Deposited", 2),
    (None, "TransferCreated", 1),
    ("a", "TransferSent", 3),
    ("b", "TransferReceived", 2),
    (None, "TransferCreated", 1),
    ("a", "HoldPlaced", 4),
    ("b", "HoldPlaced", 3),
]


def test_the_feed_pages_every_event_once_in_log_order(feed_app: Flask) -> None:
    client = feed_app.test_client()
    answers = given_a_little_ledger(client)
    # When the feed is paged two events at a time with next_after,
    events = every_event(client)
    # then every event of the bank comes once, in the order it was recorded,
    assert [(e["account_id"], e["type"], e["version"]) for e in events] == (
        EXPECTED_TYPES
    )
    tokens = [event["position"] for event in events]
    assert tokens == sorted(set(tokens))
    # each command's answer names the position of its last event,
    assert {answer["position"] for answer in answers} <= set(tokens)
    assert answers[-1]["position"] == tokens[-1]
    # and an event says what happened.
    assert events[2]["data"] == {
        "amount_in_cents": 900,
        "reference": "",
        "metadata": {},
    }
    assert events[3]["data"]["transfer_id"] == answers[3]["transfer_id"]


def test_a_page_after_the_last_event_is_empty_and_stays_put(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    head = feed_app.extensions["bank"].event_log.settled_head().token()
    response = client.get(f"/api/events?after={head}")
    assert response.json == {"events": [], "next_after": head}


def test_on_an_empty_log_the_feed_is_empty(feed_app: Flask) -> None:
    response = feed_app.test_client().get("/api/events")
    assert response.json == {"events": [], "next_after": LOG_START.token()}


def test_the_feed_can_follow_one_account_or_one_type(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    # When it is filtered by account, it holds that account's events only,
    events = every_event(client, "&account_id=b", limit=1)
    assert [(e["type"], e["version"]) for e in events] == [
        ("Opened", 1),
        ("TransferReceived", 2),
        ("HoldPlaced", 3),
    ]
    # and by type, those of that type only, of every account.
    events = every_event(client, "&type=HoldPlaced")
    assert [e["account_id"] for e in events] == ["a", "b"]
    events = every_event(client, "&type=TransferCreated&limit=1")
    assert [e["account_id"] for e in events] == [None, None]


def test_a_filtered_page_moves_past_the_events_it_skipped(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    # When one account's first page is shorter than the limit,
    body = client.get("/api/events?account_id=a&type=Opened").json
    assert body is not None
    # then its next_after is the head, not the account's last event.
    head = feed_app.extensions["bank"].event_log.settled_head()
    assert body["next_after"] == head.token()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=nope", "after"),
        ("type=Deposit", "type"),
        ("account_id=" + "x" * 65, "account_id"),
    ],
)
def test_a_bad_feed_query_is_refused_naming_the_parameter(
    feed_app: Flask, query: str, field: str
) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    stored = feed_app.extensions["bank"].recorder.max_notification_id()
    response = client.get(f"/api/events?{query}")
    assert response.status_code == 422
    assert response.json is not None
    assert response.json["error"]["code"] == "validation_error"
    [error] = response.json["error"]["details"]["errors"]
    assert error["field"] == f"query.{field}"
    assert feed_app.extensions["bank"].recorder.max_notification_id() == stored


def test_a_feed_page_holds_one_to_a_thousand_events(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    assert len(client.get("/api/events?limit=1").json["events"]) == 1  # type: ignore[index]
    assert len(client.get("/api/events").json["events"]) == 9  # type: ignore[index]
    assert len(client.get("/api/events?limit=1000").json["events"]) == 9  # type: ignore[index]


# The stream.


def parse_sse(text: str) -> tuple[list[dict[str, Any]], int]:
    """The events of a Server-Sent Events text, and how many comments it has."""
    events: list[dict[str, Any]] = []
    comments = 0
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                comments += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            data = json.loads(fields["data"])
            events.append({"id": fields["id"], "event": fields["event"], **data})
    return events, comments


def test_the_stream_sends_each_event_with_its_position_as_id(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    # When the stream is read until it ends by itself,
    response = client.get("/api/events/stream")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events, heartbeats = parse_sse(response.get_data(as_text=True))
    # then it holds the same events as the pages, each with its id and type,
    assert [event["id"] for event in events] == [
        event["position"] for event in every_event(client)
    ]
    assert [event["event"] for event in events] == [t for _, t, _ in EXPECTED_TYPES]
    # and, while nothing new happened, heartbeats.
    assert heartbeats >= 1


def test_last_event_id_resumes_the_stream_after_that_event(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    pages = every_event(client)
    # When a client reconnects with the id of the fourth event it saw,
    response = client.get(
        "/api/events/stream?after=" + LOG_START.token(),
        headers={"Last-Event-ID": pages[3]["position"]},
    )
    events, _ = parse_sse(response.get_data(as_text=True))
    # then the stream resumes after it (the header wins over `after`).
    assert [event["id"] for event in events] == [e["position"] for e in pages[4:]]


def test_the_stream_follows_the_filters(feed_app: Flask) -> None:
    client = feed_app.test_client()
    given_a_little_ledger(client)
    response = client.get("/api/events/stream?account_id=b&type=HoldPlaced")
    events, _ = parse_sse(response.get_data(as_text=True))
    assert [(event["account_id"], event["event"]) for event in events] == [
        ("b", "HoldPlaced")
    ]


def test_a_malformed_last_event_id_is_refused_naming_the_header(
    feed_app: Flask,
) -> None:
    response = feed_app.test_client().get(
        "/api/events/stream", headers={"Last-Event-ID": "7"}
    )
    assert response.status_code == 422
    assert response.json is not None
    [error] = response.json["error"]["details"]["errors"]
    assert error["field"] == "headers.Last-Event-ID"


def test_a_worker_refuses_streams_beyond_its_limit(db_env: BankEnv) -> None:
    flask_app = create_app(
        {**db_env, "BANK_FEED_MAX_STREAMS": "1", "BANK_FEED_STREAM_SECONDS": "5"}
    )
    try:
        client = flask_app.test_client()
        # Given one stream open (its body not yet read),
        first = client.get("/api/events/stream", buffered=False)
        assert first.status_code == 200
        # when a second is asked for, then it is refused with a retry hint,
        second = client.get("/api/events/stream")
        assert second.status_code == 503
        assert second.headers["Retry-After"] == "5"
        assert second.json is not None
        assert second.json["error"]["code"] == "too_many_streams"
        # and once the first is closed, a stream may open again.
        first.close()
        third = client.get("/api/events/stream", buffered=False)
        assert third.status_code == 200
        third.close()
    finally:
        flask_app.extensions["bank"].close()


def test_bearer_tokens_guard_the_feed_and_its_stream(sqlite_env: BankEnv) -> None:
    flask_app = create_app({**sqlite_env, "BANK_API_TOKENS": "s3cret-token-123"})
    try:
        client = flask_app.test_client()
        for path in ("/api/events", "/api/events/stream"):
            assert client.get(path).status_code == 401
        response = client.get(
            "/api/events", headers={"Authorization": "Bearer s3cret-token-123"}
        )
        assert response.status_code == 200
    finally:
        flask_app.extensions["bank"].close()


# The stream through the real HTTP server.

streaming_server = server_fixture(workers=1, name="streaming_server")


@pytest.mark.slow
def test_an_open_stream_holds_no_request_thread_and_sees_new_events(
    streaming_server: Server,
) -> None:
    # Given a server with one worker, and a stream open on it,
    status, _ = streaming_server.command(
        "account_open", account_owner_email="a@example.com", account_id="s"
    )
    assert status == 201
    stream = socket.create_connection((HOST, streaming_server.port), timeout=10)
    try:
        stream.sendall(b"GET /api/events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_until(stream, b"event: Opened", 10)
        assert b"200 OK" in received
        # when commands are sent meanwhile (on more connections than threads),
        positions = []
        for _ in range(8):
            status, answer = streaming_server.command(
                "account_deposit", account_id="s", amount_in_cents=1
            )
            assert status == 200
            positions.append(answer["position"])
        # then they are answered, and the stream shows each of them, by position.
        received += read_until(stream, f"id: {positions[-1]}".encode(), 10)
        text = received.decode()
        assert all(f"id: {position}" in text for position in positions)
        assert text.count("event: Deposited") == 8
    finally:
        stream.close()


def read_until(stream: socket.socket, marker: bytes, seconds: float) -> bytes:
    """Bytes from the socket until the marker has come (bounded in time)."""
    received = b""
    deadline = time.monotonic() + seconds
    while marker not in received:
        assert time.monotonic() < deadline, received[-500:]
        stream.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = stream.recv(65536)
        assert chunk, "the stream ended"
        received += chunk
    return received
