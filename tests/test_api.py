"""POST /api and the reads, through Flask's test client on each real database."""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from conftest import POSITION
from openapi_spec_validator import validate

from bank import BankApplication
from bank.persistence import LOG_START
from web import create_app
from web.errors import STATUS_BY_CODE
from web.registry import COMMANDS

if TYPE_CHECKING:
    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse


def command(client: FlaskClient, name: str, **data: Any) -> TestResponse:
    """POST one command as JSON."""
    return client.post("/api", json={"command": name, "data": data})


def balances(balance: int, version: int, available: int | None = None) -> Any:
    """An account answer's balances: in USD, nothing held."""
    return {
        "currency": "USD",
        "balance_in_cents": balance,
        "pending_debits_in_cents": 0,
        "pending_credits_in_cents": 0,
        "available_in_cents": balance if available is None else available,
        "version": version,
    }


def event_count(flask_app: Flask) -> int:
    """How many events the bank has stored in all."""
    bank: BankApplication = flask_app.extensions["bank"]
    return bank.recorder.max_notification_id() or 0


@pytest.fixture
def funded(client: FlaskClient) -> str:
    """Account "123" holding 1000 cents, and account "456" holding nothing."""
    command(client, "account_open", account_owner_email="a@example.com", account_id=123)
    command(client, "account_open", account_owner_email="b@example.com", account_id=456)
    command(client, "account_deposit", account_id="123", amount_in_cents=1000)
    return "123"


# Commands.


def test_account_open_answers_201_with_the_new_account(client: FlaskClient) -> None:
    response = command(
        client, "account_open", account_owner_email="a@example.com", account_id=123
    )

    assert response.status_code == 201
    assert response.json == {
        "account_id": "123",
        **balances(0, version=1),
        "account_owner_email": "a@example.com",
        "position": POSITION,
    }


def test_account_open_without_an_id_answers_a_fresh_one(client: FlaskClient) -> None:
    response = command(client, "account_open", account_owner_email="a@example.com")

    assert response.status_code == 201
    assert response.json is not None
    assert uuid.UUID(response.json["account_id"])


def test_account_deposit_answers_the_new_balance_and_version(
    client: FlaskClient, funded: str
) -> None:
    response = command(client, "account_deposit", account_id=123, amount_in_cents=525)

    assert response.status_code == 200
    assert response.json == {
        "account_id": "123",
        **balances(1525, version=3),
        "position": POSITION,
    }


def test_an_amount_may_be_sent_as_a_string_of_digits(
    client: FlaskClient, funded: str
) -> None:
    response = command(
        client, "account_deposit", account_id="123", amount_in_cents="25"
    )

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["balance_in_cents"] == 1025


def test_account_withdraw_answers_the_new_balance(
    client: FlaskClient, funded: str
) -> None:
    response = command(
        client, "account_withdraw", account_id="123", amount_in_cents=300
    )

    assert response.status_code == 200
    assert response.json == {
        "account_id": "123",
        **balances(700, version=3),
        "position": POSITION,
    }


def test_account_transfer_answers_both_accounts(
    client: FlaskClient, funded: str
) -> None:
    response = command(
        client,
        "account_transfer",
        from_account_id=123,
        to_account_id="456",
        amount_in_cents=400,
    )

    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert uuid.UUID(body["transfer_id"])
    assert body["status"] == "posted"
    assert body["from_account"] == {"account_id": "123", **balances(600, version=3)}
    assert body["to_account"] == {"account_id": "456", **balances(400, version=2)}
    assert body["position"] == POSITION


def test_account_set_overdraft_limit_answers_the_limit(
    client: FlaskClient, funded: str
) -> None:
    response = command(
        client,
        "account_set_overdraft_limit",
        account_id="123",
        overdraft_limit_in_cents=5000,
    )

    assert response.status_code == 200
    assert response.json == {
        "account_id": "123",
        **balances(1000, version=3, available=6000),
        "overdraft_limit_in_cents": 5000,
        "position": POSITION,
    }


def test_account_close_answers_closed(client: FlaskClient, funded: str) -> None:
    response = command(client, "account_close", account_id="456")

    assert response.status_code == 200
    assert response.json == {
        "account_id": "456",
        **balances(0, version=2),
        "closed": True,
        "position": POSITION,
    }


def test_a_refused_withdrawal_leaves_the_event_list_at_open_and_deposit(
    client: FlaskClient, funded: str
) -> None:
    response = command(client, "account_withdraw", account_id=123, amount_in_cents=1001)

    assert response.status_code == 409
    events = client.get("/api/accounts/123/events").json
    assert events is not None
    assert [event["type"] for event in events] == ["Opened", "Deposited"]


def test_replaying_the_stored_events_rebuilds_every_account(
    client: FlaskClient, db_env: BankEnv
) -> None:
    command(client, "account_open", account_owner_email="a@example.com", account_id=123)
    command(client, "account_deposit", account_id=123, amount_in_cents=1000)
    command(client, "account_deposit", account_id=123, amount_in_cents=525)
    command(client, "account_open", account_owner_email="b@example.com", account_id=456)
    command(client, "account_deposit", account_id=456, amount_in_cents=25000)

    replayed = create_app(db_env)
    balances = {
        account_id: replayed.test_client().get(f"/api/accounts/{account_id}").json
        for account_id in ("123", "456")
    }

    assert {k: v["balance_in_cents"] for k, v in balances.items() if v} == {
        "123": 1525,
        "456": 25000,
    }
    assert event_count(replayed) == 5


# The error contract: every row answers JSON, with its status and code, and
# stores nothing.

TOO_BIG = "x" * (64 * 1024 + 1)
ERROR_CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "body is not JSON": (
        {"data": "{not json", "content_type": "application/json"},
        400,
        "bad_request",
    ),
    "body is invalid UTF-8": (
        {"data": b'{"command": "\xff"}', "content_type": "application/json"},
        400,
        "bad_request",
    ),
    "body is NaN": (
        {"data": "NaN", "content_type": "application/json"},
        400,
        "bad_request",
    ),
    "body is an array": ({"json": [1, 2]}, 400, "bad_request"),
    "body is a string": ({"json": "account_open"}, 400, "bad_request"),
    "command is missing": ({"json": {"data": {}}}, 400, "bad_request"),
    "command is not a string": (
        {"json": {"command": 7, "data": {}}},
        400,
        "bad_request",
    ),
    "data is not an object": (
        {"json": {"command": "account_close", "data": ["123"]}},
        400,
        "bad_request",
    ),
    "an unknown top-level key": (
        {"json": {"command": "account_close", "data": {}, "extra": 1}},
        400,
        "bad_request",
    ),
    "deeply nested body": (
        {"data": "[" * 60_000, "content_type": "application/json"},
        400,
        "bad_request",
    ),
    "unknown command": (
        {"json": {"command": "account_explode", "data": {}}},
        400,
        "unknown_command",
    ),
    "a class name as command": (
        {"json": {"command": "Account", "data": {}}},
        400,
        "unknown_command",
    ),
    "a dunder as command": (
        {"json": {"command": "__class__", "data": {}}},
        400,
        "unknown_command",
    ),
    "text/plain body": (
        {"data": '{"command": "account_close"}', "content_type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    "no content type": ({"data": "{}"}, 415, "unsupported_media_type"),
    "form body": (
        {"data": {"command": "account_close"}},
        415,
        "unsupported_media_type",
    ),
    "body over 64 KiB": (
        {"json": {"command": "account_close", "data": {"pad": TOO_BIG}}},
        413,
        "payload_too_large",
    ),
}


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"), ERROR_CASES.values(), ids=ERROR_CASES.keys()
)
def test_a_malformed_request_gets_a_json_error_and_changes_nothing(
    flask_app: Flask,
    client: FlaskClient,
    funded: str,
    request_kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = event_count(flask_app)

    response = client.post("/api", **request_kwargs)

    assert (response.status_code, _code(response)) == (status, code)
    assert event_count(flask_app) == before


def _code(response: TestResponse) -> str:
    assert response.is_json, response.data[:200]
    body = response.json
    assert isinstance(body, dict)
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return str(body["error"]["code"])


def test_an_unknown_command_lists_the_known_ones(client: FlaskClient) -> None:
    response = client.post("/api", json={"command": "account_explode", "data": {}})

    assert response.json is not None
    assert response.json["error"]["details"]["known_commands"] == sorted(COMMANDS)


INVALID_DATA: dict[str, tuple[str, dict[str, Any], str]] = {
    "float amount": ("account_deposit", {"amount_in_cents": 10.5}, "amount_in_cents"),
    "integral float amount": (
        "account_deposit",
        {"amount_in_cents": 100.0},
        "amount_in_cents",
    ),
    "boolean amount": ("account_deposit", {"amount_in_cents": True}, "amount_in_cents"),
    "negative amount": ("account_withdraw", {"amount_in_cents": -5}, "amount_in_cents"),
    "zero amount": ("account_withdraw", {"amount_in_cents": 0}, "amount_in_cents"),
    "amount over 10**15": (
        "account_deposit",
        {"amount_in_cents": 10**15 + 1},
        "amount_in_cents",
    ),
    "huge amount": ("account_deposit", {"amount_in_cents": 10**40}, "amount_in_cents"),
    "amount with letters": (
        "account_deposit",
        {"amount_in_cents": "12a"},
        "amount_in_cents",
    ),
    "amount as a decimal string": (
        "account_deposit",
        {"amount_in_cents": "10.50"},
        "amount_in_cents",
    ),
    "amount missing": ("account_deposit", {}, "amount_in_cents"),
    "unknown field": (
        "account_deposit",
        {"amount_in_cents": 5, "memo": "hi"},
        "memo",
    ),
    "malformed account id": (
        "account_deposit",
        {"account_id": "a b", "amount_in_cents": 5},
        "account_id",
    ),
    "boolean account id": (
        "account_deposit",
        {"account_id": False, "amount_in_cents": 5},
        "account_id",
    ),
    "bad email": (
        "account_open",
        {"account_owner_email": "not an email", "account_id": "789"},
        "account_owner_email",
    ),
    "negative overdraft limit": (
        "account_set_overdraft_limit",
        {"overdraft_limit_in_cents": -1},
        "overdraft_limit_in_cents",
    ),
    "transfer to the same account": (
        "account_transfer",
        {"from_account_id": "123", "to_account_id": 123, "amount_in_cents": 5},
        "to_account_id",
    ),
}


@pytest.mark.parametrize(
    ("name", "data", "field"), INVALID_DATA.values(), ids=INVALID_DATA.keys()
)
def test_invalid_data_gets_422_naming_the_field_and_changes_nothing(
    flask_app: Flask,
    client: FlaskClient,
    funded: str,
    name: str,
    data: dict[str, Any],
    field: str,
) -> None:
    before = event_count(flask_app)
    data = {"account_id": "123", **data} if name != "account_transfer" else data
    if name == "account_open":
        data.pop("account_id", None)
        data["account_id"] = "789"

    response = client.post("/api", json={"command": name, "data": data})

    assert (response.status_code, _code(response)) == (422, "validation_error")
    assert response.json is not None
    fields = [error["field"] for error in response.json["error"]["details"]["errors"]]
    assert f"data.{field}" in fields
    assert event_count(flask_app) == before


REFUSALS: dict[str, tuple[str, dict[str, Any], int, str]] = {
    "no such account": (
        "account_deposit",
        {"account_id": "nobody", "amount_in_cents": 5},
        404,
        "account_not_found",
    ),
    "id taken": (
        "account_open",
        {"account_owner_email": "c@example.com", "account_id": 123},
        409,
        "account_already_exists",
    ),
    "insufficient funds": (
        "account_withdraw",
        {"account_id": "123", "amount_in_cents": 1001},
        409,
        "insufficient_funds",
    ),
    "insufficient funds for a transfer": (
        "account_transfer",
        {"from_account_id": "123", "to_account_id": "456", "amount_in_cents": 1001},
        409,
        "insufficient_funds",
    ),
    "closing a non-empty account": (
        "account_close",
        {"account_id": "123"},
        409,
        "account_not_empty",
    ),
}


@pytest.mark.parametrize(
    ("name", "data", "status", "code"), REFUSALS.values(), ids=REFUSALS.keys()
)
def test_a_refused_command_gets_its_status_and_code_and_stores_nothing(
    flask_app: Flask,
    client: FlaskClient,
    funded: str,
    name: str,
    data: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = event_count(flask_app)

    response = client.post("/api", json={"command": name, "data": data})

    assert (response.status_code, _code(response)) == (status, code)
    assert event_count(flask_app) == before


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("account_deposit", {"amount_in_cents": 5}),
        ("account_withdraw", {"amount_in_cents": 5}),
        ("account_set_overdraft_limit", {"overdraft_limit_in_cents": 5}),
        ("account_close", {}),
    ],
)
def test_a_closed_account_refuses_changes_with_409_account_closed(
    flask_app: Flask, client: FlaskClient, funded: str, name: str, data: dict[str, Any]
) -> None:
    command(client, "account_close", account_id="456")
    before = event_count(flask_app)

    response = client.post(
        "/api", json={"command": name, "data": {"account_id": "456", **data}}
    )

    assert (response.status_code, _code(response)) == (409, "account_closed")
    assert event_count(flask_app) == before


def test_insufficient_funds_details_say_what_is_available(
    client: FlaskClient, funded: str
) -> None:
    response = command(client, "account_withdraw", account_id=123, amount_in_cents=5000)

    assert response.json is not None
    assert response.json["error"]["details"]["available_in_cents"] == 1000


def test_exhausted_retries_answer_503_with_retry_after_and_store_nothing(
    db_env: BankEnv,
) -> None:
    # Without fast-forward and with one attempt, a rival's write makes the
    # cached account stale and the save loses the race.
    env = {**db_env, "AGGREGATE_CACHE_FASTFORWARD": "n", "COMMAND_MAX_ATTEMPTS": "1"}
    flask_app = create_app(env)
    client = flask_app.test_client()
    command(client, "account_open", account_owner_email="a@example.com", account_id=1)
    with BankApplication(env=db_env) as rival:
        rival.deposit(1, 100)
    before = event_count(flask_app)

    response = command(client, "account_deposit", account_id=1, amount_in_cents=5)

    assert (response.status_code, _code(response)) == (503, "concurrency_conflict")
    assert response.headers["Retry-After"] == "1"
    assert event_count(flask_app) == before
    # The conflict evicted the stale account: the next attempt succeeds.
    retry = command(client, "account_deposit", account_id=1, amount_in_cents=5)
    assert retry.json is not None
    assert retry.json["balance_in_cents"] == 105


def test_an_unknown_route_gets_404_not_found(client: FlaskClient) -> None:
    response = client.get("/api/nowhere")

    assert (response.status_code, _code(response)) == (404, "not_found")


def test_a_wrong_method_gets_405_method_not_allowed(client: FlaskClient) -> None:
    response = client.get("/api")

    assert (response.status_code, _code(response)) == (405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("path", ["/api/accounts//events", "/api/accounts/%2F/events"])
def test_an_empty_path_segment_is_not_redirected_elsewhere(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)

    assert (response.status_code, _code(response)) == (404, "not_found")


def test_a_bug_gets_500_with_a_logged_error_id_and_no_traceback(
    flask_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str:
        raise ZeroDivisionError("secret internals")

    flask_app.add_url_rule("/api/broken", view_func=broken)

    response = flask_app.test_client().get("/api/broken")

    assert (response.status_code, _code(response)) == (500, "internal_error")
    assert response.json is not None
    error_id = response.json["error"]["details"]["error_id"]
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data
    assert any(error_id in record.getMessage() for record in caplog.records)


def test_every_error_code_has_one_status() -> None:
    assert all(400 <= status < 600 for status in STATUS_BY_CODE.values())


# Reads.


def test_get_account_answers_its_current_state(
    client: FlaskClient, funded: str
) -> None:
    response = client.get("/api/accounts/123")

    assert response.status_code == 200
    assert response.json == {
        "account_id": "123",
        "account_owner_email": "a@example.com",
        "currency": "USD",
        "balance_in_cents": 1000,
        "overdraft_limit_in_cents": 0,
        "pending_debits_in_cents": 0,
        "pending_credits_in_cents": 0,
        "available_in_cents": 1000,
        "closed": False,
        "version": 2,
    }


def test_get_account_at_a_version_rebuilds_the_past(
    client: FlaskClient, funded: str
) -> None:
    command(client, "account_withdraw", account_id="123", amount_in_cents=300)

    past = client.get("/api/accounts/123?version=2").json
    opened = client.get("/api/accounts/123?version=1").json

    assert past is not None
    assert opened is not None
    assert (past["balance_in_cents"], past["version"]) == (1000, 2)
    assert (opened["balance_in_cents"], opened["version"]) == (0, 1)


@pytest.mark.parametrize("version", ["0", "-1", "abc", "1.5", ""])
def test_a_bad_version_gets_422(client: FlaskClient, funded: str, version: str) -> None:
    response = client.get(f"/api/accounts/123?version={version}")

    assert (response.status_code, _code(response)) == (422, "validation_error")


@pytest.mark.parametrize(
    "path", ["/api/accounts/nobody", "/api/accounts/nobody/events"]
)
def test_reading_an_unknown_account_gets_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert (response.status_code, _code(response)) == (404, "account_not_found")


def test_events_are_listed_in_order_with_their_data(
    client: FlaskClient, funded: str
) -> None:
    events = client.get("/api/accounts/123/events").json

    assert events is not None
    assert [(e["type"], e["version"], e["data"]) for e in events] == [
        (
            "Opened",
            1,
            {"account_id": "123", "owner_email": "a@example.com", "currency": "USD"},
        ),
        ("Deposited", 2, {"amount_in_cents": 1000, "reference": "", "metadata": {}}),
    ]
    assert all(event["timestamp"].endswith("Z") for event in events)


def test_events_come_a_page_at_a_time_with_a_link_to_the_next(
    client: FlaskClient, funded: str
) -> None:
    for amount in (1, 2, 3):
        command(client, "account_deposit", account_id="123", amount_in_cents=amount)

    first = client.get("/api/accounts/123/events?limit=2")
    second = client.get(first.headers["Link"].split(">")[0].lstrip("<"))
    last = client.get("/api/accounts/123/events?after_version=4&limit=2")

    assert [e["version"] for e in first.json or []] == [1, 2]
    assert [e["version"] for e in second.json or []] == [3, 4]
    assert [e["version"] for e in last.json or []] == [5]
    assert "Link" not in last.headers


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "after_version=-1", "limit=x"]
)
def test_bad_paging_parameters_get_422(
    client: FlaskClient, funded: str, query: str
) -> None:
    response = client.get(f"/api/accounts/123/events?{query}")

    assert (response.status_code, _code(response)) == (422, "validation_error")


def test_health_reports_the_database_reachable(client: FlaskClient) -> None:
    response = client.get("/api/health")

    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "database": "reachable",
        "worker_pid": os.getpid(),
        "group_commit": {"transactions": 0, "commands": 0},
        "projection": {
            "position": LOG_START.token(),
            "head": LOG_START.token(),
            "lag_events": 0,
            "rebuilding": False,
        },
    }


def test_health_counts_the_commits_of_the_worker_that_answers(
    client: FlaskClient,
) -> None:
    command(client, "account_open", account_owner_email="a@example.com")

    response = client.get("/api/health")

    assert response.json is not None
    assert response.json["group_commit"] == {"transactions": 1, "commands": 1}


def test_health_answers_503_when_the_database_is_down() -> None:
    flask_app = create_app(
        {
            "SQLALCHEMY_URL": "postgresql+psycopg://root@127.0.0.1:1/nowhere",
            "CREATE_TABLE": "n",
        }
    )

    response = flask_app.test_client().get("/api/health")

    assert (response.status_code, _code(response)) == (503, "database_unavailable")
    assert "Retry-After" in response.headers


# The API description.


def test_the_openapi_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").json

    assert document is not None
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_the_openapi_document_describes_every_command_and_error_status(
    client: FlaskClient,
) -> None:
    document = client.get("/api/openapi.json").json

    assert document is not None
    post = document["paths"]["/api"]["post"]
    request = post["requestBody"]["content"]["application/json"]["schema"]
    requests = {ref["$ref"].rsplit("/", 1)[1] for ref in request["oneOf"]}
    assert requests == {f"{name}_request" for name in COMMANDS} | {"batch_request"}
    assert {
        "200",
        "201",
        "400",
        "404",
        "409",
        "413",
        "415",
        "422",
        "500",
        "503",
    } <= set(post["responses"])
    schemas = document["components"]["schemas"]
    assert schemas["AmountData"]["additionalProperties"] is False


# The factory.


def test_the_factory_takes_settings_from_config_before_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANK_SQLALCHEMY_URL", f"sqlite:///{tmp_path / 'env.db'}")
    wanted = f"sqlite:///{tmp_path / 'config.db'}"

    flask_app = create_app({"SQLALCHEMY_URL": wanted})
    command(
        flask_app.test_client(), "account_open", account_owner_email="a@example.com"
    )

    assert isinstance(flask_app.extensions["bank"], BankApplication)
    assert (tmp_path / "config.db").exists()
    assert not (tmp_path / "env.db").exists()


def test_errors_are_logged_at_warning_or_below_for_refusals(
    client: FlaskClient, funded: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        command(client, "account_withdraw", account_id=123, amount_in_cents=5000)

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# Bodies must be strict UTF-8 JSON with no key twice.

DUPLICATE_KEYS: dict[str, tuple[str, str]] = {
    "at the top level": (
        '{"command": "account_deposit", "command": "account_withdraw",'
        ' "data": {"account_id": "123", "amount_in_cents": 100}}',
        "command",
    ),
    "inside data": (
        '{"command": "account_deposit",'
        ' "data": {"account_id": "123", "amount_in_cents": 1, "amount_in_cents": 500}}',
        "amount_in_cents",
    ),
    "inside a batch entry": (
        '{"batch": [{"command": "account_deposit",'
        ' "data": {"account_id": "123", "amount_in_cents": 1},'
        ' "data": {"account_id": "456", "amount_in_cents": 1}}]}',
        "data",
    ),
}


@pytest.mark.parametrize(
    ("raw", "key"), DUPLICATE_KEYS.values(), ids=DUPLICATE_KEYS.keys()
)
def test_a_key_given_twice_at_any_depth_gets_400_naming_it_and_changes_nothing(
    flask_app: Flask, client: FlaskClient, funded: str, raw: str, key: str
) -> None:
    before = event_count(flask_app)

    response = client.post("/api", data=raw, content_type="application/json")

    assert (response.status_code, _code(response)) == (400, "bad_request")
    error = (response.json or {})["error"]
    assert f"'{key}'" in error["message"]
    assert error["details"] == {"key": key}
    assert event_count(flask_app) == before


DEPOSIT = (
    '{"command": "account_deposit",'
    ' "data": {"account_id": "123", "amount_in_cents": 1, "reference": "café"}}'
)
NOT_UTF8_BODIES: dict[str, bytes] = {
    "UTF-16 with a byte-order mark": DEPOSIT.encode("utf-16"),
    "UTF-16 little-endian without one": DEPOSIT.encode("utf-16-le"),
    "UTF-16 big-endian without one": DEPOSIT.encode("utf-16-be"),
    "UTF-32 with a byte-order mark": DEPOSIT.encode("utf-32"),
    "UTF-32 little-endian without one": DEPOSIT.encode("utf-32-le"),
    "UTF-8 behind a byte-order mark": DEPOSIT.encode("utf-8-sig"),
    "Latin-1": DEPOSIT.encode("latin-1"),
    "a surrogate encoded as UTF-8": DEPOSIT.replace("é", "\ud800").encode(
        "utf-8", "surrogatepass"
    ),
}


@pytest.mark.parametrize("raw", NOT_UTF8_BODIES.values(), ids=NOT_UTF8_BODIES.keys())
def test_a_body_that_is_not_strict_utf8_is_refused_with_400_and_changes_nothing(
    flask_app: Flask, client: FlaskClient, funded: str, raw: bytes
) -> None:
    before = event_count(flask_app)

    response = client.post("/api", data=raw, content_type="application/json")

    assert (response.status_code, _code(response)) == (400, "bad_request")
    assert "UTF-8" in (response.json or {})["error"]["message"]
    assert event_count(flask_app) == before


def test_the_same_deposit_as_plain_utf8_is_accepted(
    flask_app: Flask, client: FlaskClient, funded: str
) -> None:
    before = event_count(flask_app)

    response = client.post(
        "/api", data=DEPOSIT.encode(), content_type="application/json"
    )

    assert response.status_code == 200
    assert event_count(flask_app) == before + 1


# Versions are bounded by what an int4 holds (the 422s: tests/test_api_ledger.py).

INT4_MAX = 2**31 - 1


def test_versions_up_to_the_largest_an_int4_holds_are_still_answered(
    client: FlaskClient, funded: str
) -> None:
    latest = client.get(f"/api/accounts/123?version={INT4_MAX}")
    zero_padded = client.get("/api/accounts/123?version=" + "0" * 4_999 + "1")
    events = client.get(f"/api/accounts/123/events?after_version={INT4_MAX}")

    assert (latest.status_code, (latest.json or {})["version"]) == (200, 2)
    assert (zero_padded.status_code, (zero_padded.json or {})["version"]) == (200, 1)
    assert (events.status_code, events.json) == (200, [])
