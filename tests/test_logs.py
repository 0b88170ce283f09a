"""Request ids and JSON logs: every answer and every log line names its request."""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

import pytest
from live_server import server_fixture

from web.logs import RequestIdFilter, json_formatter

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from live_server import Server

GENERATED_ID = re.compile("[0-9a-f]{32}")


def open_account(
    client: FlaskClient, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """POST account_open; the status and the answer's X-Request-Id."""
    response = client.post(
        "/api",
        json={"command": "account_open", "data": {"account_owner_email": "l@ex.com"}},
        headers=headers,
    )
    return response.status_code, response.headers["X-Request-Id"]


def request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The request lines logged so far."""
    return [record for record in caplog.records if record.name == "web.requests"]


def as_json(record: logging.LogRecord) -> dict[str, Any]:
    """A record as the server writes it: one JSON object."""
    line = json_formatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_given_request_id_is_echoed(client: FlaskClient) -> None:
    status, echoed = open_account(client, {"X-Request-Id": "client-7:abc/DEF=1"})

    assert (status, echoed) == (201, "client-7:abc/DEF=1")


def test_without_a_request_id_one_is_generated_for_each_request(
    client: FlaskClient,
) -> None:
    _, first = open_account(client)
    _, second = open_account(client)

    assert GENERATED_ID.fullmatch(first)
    assert GENERATED_ID.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "offered",
    ["", "has space", "x" * 129, "tab\there", "caf\u00e9"],
    ids=["empty", "space", "too-long", "tab", "not-ascii"],
)
def test_a_malformed_request_id_is_replaced(
    flask_app: Flask, client: FlaskClient, offered: str
) -> None:
    response = client.get("/api/accounts/nobody", headers={"X-Request-Id": offered})

    assert response.status_code == 404
    assert GENERATED_ID.fullmatch(response.headers["X-Request-Id"])
    assert flask_app.extensions["bank"].recorder.max_notification_id() is None


def test_an_error_answer_carries_its_request_id_too(
    flask_app: Flask, client: FlaskClient
) -> None:
    response = client.post(
        "/api",
        json={"command": "account_withdraw", "data": {"account_id": "nobody"}},
        headers={"X-Request-Id": "refused-1"},
    )

    assert response.status_code == 422
    assert response.headers["X-Request-Id"] == "refused-1"
    assert flask_app.extensions["bank"].recorder.max_notification_id() is None


def test_each_request_is_logged_as_one_json_line_with_its_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="web.requests"):
        status, echoed = open_account(client, {"X-Request-Id": "log-me-1"})

    [record] = request_records(caplog)
    line = as_json(record)
    assert (status, echoed) == (201, "log-me-1")
    assert line["time"].endswith("+00:00")
    assert {name: line[name] for name in line if name != "time"} == {
        "level": "INFO",
        "logger": "web.requests",
        "message": "POST /api 201",
        "request_id": "log-me-1",
        "method": "POST",
        "route": "/api",
        "status": 201,
        "duration_ms": line["duration_ms"],
    }
    assert line["duration_ms"] >= 0


def test_a_request_line_names_the_route_pattern_not_the_path(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="web.requests"):
        response = client.get("/api/accounts/someone-4d2")

    [record] = request_records(caplog)
    line = as_json(record)
    assert (response.status_code, line["status"]) == (404, 404)
    assert line["route"] == "/api/accounts/<account_id>"
    assert "someone-4d2" not in json.dumps(line)


def test_what_is_logged_while_serving_a_request_carries_its_id(
    flask_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str:
        raise ZeroDivisionError("a bug")

    flask_app.add_url_rule("/api/broken-for-logs", view_func=broken)
    caplog.handler.addFilter(RequestIdFilter())

    response = flask_app.test_client().get(
        "/api/broken-for-logs", headers={"X-Request-Id": "bug-report-1"}
    )

    [error] = [record for record in caplog.records if record.name == "web.errors"]
    line = as_json(error)
    assert response.status_code == 500
    assert (line["level"], line["request_id"]) == ("ERROR", "bug-report-1")
    assert "ZeroDivisionError" in line["exc_info"]


def test_a_line_logged_outside_any_request_has_no_request_id() -> None:
    record = logging.LogRecord("bank", logging.WARNING, __file__, 1, "hi", None, None)

    RequestIdFilter().filter(record)

    assert as_json(record)["request_id"] is None


# Over HTTP, against two worker processes: the server's own log.

server = server_fixture(workers=2)


@pytest.mark.slow
def test_the_server_logs_each_request_as_json_with_the_echoed_id(
    server: Server,
) -> None:
    with server.connect() as connection:
        given = connection.request(
            "GET", "/api/accounts/nobody", headers={"X-Request-Id": "live-log-1"}
        )
        generated = connection.request("GET", "/api/health")

    # Each line is written before its answer is sent.
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    by_id = {line["request_id"]: line for line in lines if line.get("request_id")}
    assert given.headers["x-request-id"] == "live-log-1"
    assert GENERATED_ID.fullmatch(generated.headers["x-request-id"])
    assert {
        name: by_id["live-log-1"][name]
        for name in ("level", "logger", "method", "route", "status")
    } == {
        "level": "INFO",
        "logger": "web.requests",
        "method": "GET",
        "route": "/api/accounts/<account_id>",
        "status": 404,
    }
    assert by_id[generated.headers["x-request-id"]]["route"] == "/api/health"
