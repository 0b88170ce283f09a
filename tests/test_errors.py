"""The error contract: each code's status and headers, and every failure in its shape.

Clients branch on these, so the table is spelled out here rather than read
back from web.errors.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import pytest
from flask import abort

from web import create_app
from web.errors import STATUS_BY_CODE, error_response

if TYPE_CHECKING:
    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient

STATUSES = {
    "bad_request": 400,
    "unknown_command": 400,
    "unauthorized": 401,
    "not_found": 404,
    "account_not_found": 404,
    "transfer_not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "account_already_exists": 409,
    "insufficient_funds": 409,
    "account_closed": 409,
    "account_not_empty": 409,
    "account_has_pending_transfers": 409,
    "currency_mismatch": 409,
    "transfer_not_pending": 409,
    "transfer_not_posted": 409,
    "amount_exceeds_transfer": 409,
    "payload_too_large": 413,
    "uri_too_long": 414,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "idempotency_key_reused": 422,
    "headers_too_large": 431,
    "internal_error": 500,
    "read_models_unavailable": 501,
    "concurrency_conflict": 503,
    "database_unavailable": 503,
    "read_model_behind": 503,
    "read_model_rebuilding": 503,
    "too_many_streams": 503,
}
# Seconds to wait before retrying: the codes that are worth retrying.
RETRY_AFTER = {
    "concurrency_conflict": "1",
    "database_unavailable": "5",
    "read_model_behind": "1",
    "read_model_rebuilding": "5",
    "too_many_streams": "5",
}


def test_the_error_codes_are_exactly_the_documented_ones() -> None:
    assert STATUS_BY_CODE == STATUSES


@pytest.mark.parametrize(("code", "status"), STATUSES.items())
def test_each_error_code_answers_its_status_and_retry_advice(
    memory_env: BankEnv, code: str, status: int
) -> None:
    with create_app(memory_env).test_request_context():
        response, answered = error_response(code, "A sentence.", {"n": 1})

    assert answered == status
    assert response.json == {
        "error": {"code": code, "message": "A sentence.", "details": {"n": 1}}
    }
    assert response.headers.get("Retry-After") == RETRY_AFTER.get(code)
    challenge = 'Bearer realm="bank"' if code == "unauthorized" else None
    assert response.headers.get("WWW-Authenticate") == challenge


def test_an_error_without_details_has_no_details_key(memory_env: BankEnv) -> None:
    with create_app(memory_env).test_request_context():
        empty, _ = error_response("not_found", "Gone.", {})
        none, _ = error_response("not_found", "Gone.")

    assert (
        empty.json == none.json == {"error": {"code": "not_found", "message": "Gone."}}
    )


@pytest.fixture
def raising_app(memory_env: BankEnv) -> Flask:
    """The app, with routes that fail as a library or a bug might."""
    flask_app = create_app(memory_env)

    def http_error(status: int) -> str:
        abort(status)

    def bare_bad_request() -> str:
        abort(400, description="")

    def bug() -> str:
        raise RuntimeError("a bug")

    flask_app.add_url_rule("/raise/<int:status>", view_func=http_error)
    flask_app.add_url_rule("/raise/bare", view_func=bare_bad_request)
    flask_app.add_url_rule("/raise/bug", view_func=bug)
    return flask_app


WERKZEUG_400 = (
    "The browser (or proxy) sent a request that this server could not understand."
)


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (400, (400, "bad_request", WERKZEUG_400)),
        (404, (404, "not_found", "No such endpoint.")),
        (
            413,
            (
                413,
                "payload_too_large",
                "The request body is larger than 1,048,576 bytes.",
            ),
        ),
        (415, (415, "unsupported_media_type", None)),
        (418, (400, "bad_request", None)),
    ],
)
def test_an_http_error_from_flask_or_werkzeug_is_answered_in_the_contract(
    raising_app: Flask, status: int, answer: tuple[int, str, str | None]
) -> None:
    response = raising_app.test_client().get(f"/raise/{status}")

    assert response.json is not None
    error = response.json["error"]
    assert (response.status_code, error["code"]) == answer[:2]
    assert set(error) == {"code", "message"}
    if answer[2] is not None:
        assert error["message"] == answer[2]


def test_an_http_error_without_a_description_says_bad_request(
    raising_app: Flask,
) -> None:
    response = raising_app.test_client().get("/raise/bare")

    assert (response.status_code, response.json) == (
        400,
        {"error": {"code": "bad_request", "message": "Bad request."}},
    )


def test_a_wrong_method_is_405_naming_the_allowed_ones(client: FlaskClient) -> None:
    response = client.delete("/api")

    assert (response.status_code, response.json) == (
        405,
        {
            "error": {
                "code": "method_not_allowed",
                "message": "This endpoint does not accept that method.",
            }
        },
    )
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


@pytest.mark.parametrize("status", [500, 501, 503])
def test_a_server_side_http_error_is_an_internal_error_with_an_id(
    raising_app: Flask, status: int
) -> None:
    response = raising_app.test_client().get(f"/raise/{status}")

    assert response.status_code == 500
    assert response.json is not None
    assert response.json["error"]["code"] == "internal_error"


def test_a_bug_is_a_500_whose_id_is_logged_with_the_traceback(
    raising_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="web.errors"):
        response = raising_app.test_client().get("/raise/bug")

    assert response.json is not None
    error_id = response.json["error"]["details"]["error_id"]
    assert re.fullmatch("[0-9a-f]{32}", error_id)
    assert (response.status_code, response.json) == (
        500,
        {
            "error": {
                "code": "internal_error",
                "message": "Something went wrong on our side; the error id is logged.",
                "details": {"error_id": error_id},
            }
        },
    )
    [record] = [r for r in caplog.records if r.name == "web.errors"]
    assert record.getMessage() == f"internal error {error_id}"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_a_refusal_of_one_field_names_it_under_data_with_its_reason(
    client: FlaskClient, flask_app: Flask
) -> None:
    data: dict[str, Any] = {"account_owner_email": "a@example.com", "account_id": "A"}
    client.post("/api", json={"command": "account_open", "data": data})
    before = flask_app.extensions["bank"].recorder.max_notification_id()
    transfer = {"from_account_id": "A", "to_account_id": "A", "amount_in_cents": 1}

    response = client.post(
        "/api", json={"command": "account_transfer", "data": transfer}
    )

    reason = "A transfer needs two different accounts."
    assert (response.status_code, response.json) == (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": reason,
                "details": {
                    "errors": [{"field": "data.to_account_id", "reason": reason}]
                },
            }
        },
    )
    assert flask_app.extensions["bank"].recorder.max_notification_id() == before


def test_an_unreachable_database_is_503_with_advice_to_retry_in_5_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flask_app = create_app(
        {
            "SQLALCHEMY_URL": "postgresql+psycopg://root@127.0.0.1:1/nowhere",
            "CREATE_TABLE": "n",
        }
    )

    with caplog.at_level(logging.WARNING, logger="web.errors"):
        response = flask_app.test_client().get("/api/health")

    assert (response.status_code, response.json) == (
        503,
        {
            "error": {
                "code": "database_unavailable",
                "message": "The database did not answer. Retry later.",
            }
        },
    )
    assert response.headers["Retry-After"] == "5"
    [record] = [r for r in caplog.records if r.name == "web.errors"]
    assert record.getMessage().startswith("database unavailable: ")


def bad_request(message: str, details: dict[str, Any] | None = None) -> Any:
    """A 400's JSON body."""
    error: dict[str, Any] = {"code": "bad_request", "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


KEY_100, KEY_101 = "k" * 100, "k" * 101
CUT = KEY_100 + "..."


@pytest.mark.parametrize(
    ("body", "content_type", "status", "answer"),
    [
        (
            b'{"command": "account_open"}',
            "text/plain",
            415,
            {
                "error": {
                    "code": "unsupported_media_type",
                    "message": "Send the body as Content-Type: application/json.",
                }
            },
        ),
        (
            b"[1, 2]",
            "application/json",
            400,
            bad_request("The body must be a JSON object."),
        ),
        (
            b'{"a": 1, "a": 2}',
            "application/json",
            400,
            bad_request(
                "The body repeats the key 'a'; each key may appear once.", {"key": "a"}
            ),
        ),
        (
            f'{{"{KEY_100}": 1, "{KEY_100}": 2}}'.encode(),
            "application/json",
            400,
            bad_request(
                f"The body repeats the key {KEY_100!r}; each key may appear once.",
                {"key": KEY_100},
            ),
        ),
        (
            f'{{"{KEY_101}": 1, "{KEY_101}": 2}}'.encode(),
            "application/json",
            400,
            bad_request(
                f"The body repeats the key {CUT!r}; each key may appear once.",
                {"key": CUT},
            ),
        ),
        (
            b'{"command": "\x00"}',
            "application/json",
            400,
            bad_request("The body must be UTF-8 JSON, without a byte-order mark."),
        ),
        (
            b'\xef\xbb\xbf{"command": "account_open"}',
            "application/json",
            400,
            bad_request("The body must be UTF-8 JSON, without a byte-order mark."),
        ),
    ],
    ids=[
        "not JSON's type",
        "an array",
        "a repeated key",
        "a repeated key of 100",
        "a repeated key of 101",
        "a NUL byte",
        "a byte-order mark",
    ],
)
def test_a_malformed_body_is_answered_exactly_and_stores_nothing(
    client: FlaskClient,
    flask_app: Flask,
    body: bytes,
    content_type: str,
    status: int,
    answer: Any,
) -> None:
    before = flask_app.extensions["bank"].recorder.max_notification_id()

    response = client.post("/api", data=body, content_type=content_type)

    assert (response.status_code, response.json) == (status, answer)
    assert flask_app.extensions["bank"].recorder.max_notification_id() == before


def test_a_malformed_idempotency_key_header_is_refused_naming_the_header(
    client: FlaskClient,
) -> None:
    open_a = {"command": "account_open", "data": {"account_owner_email": "a@b.co"}}

    response = client.post("/api", json=open_a, headers={"Idempotency-Key": "a b"})

    reason = "must be 1 to 255 visible ASCII characters"
    assert (response.status_code, response.json) == (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": f"The Idempotency-Key header {reason}.",
                "details": {
                    "errors": [{"field": "headers.Idempotency-Key", "reason": reason}]
                },
            }
        },
    )
