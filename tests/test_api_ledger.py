"""The read-model endpoints: owner listing, statements, time travel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from bank.domain import InvalidCommandError
from bank.projections import Ledger
from web import create_app

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from bank import BankApplication


def command(client: FlaskClient, name: str, **data: Any) -> TestResponse:
    """POST one command as JSON."""
    return client.post("/api", json={"command": name, "data": data})


def body(response: TestResponse) -> Any:
    """The JSON body, asserting there is one."""
    assert response.json is not None, response.data[:200]
    return response.json


@pytest.fixture
def history(client: FlaskClient) -> None:
    """Alice owns A and B; A: open, +1000, -100, 300 sent to B."""
    for account_id in ("A", "B"):
        command(
            client,
            "account_open",
            account_owner_email="alice@example.com",
            account_id=account_id,
        )
    command(client, "account_deposit", account_id="A", amount_in_cents=1000)
    command(client, "account_withdraw", account_id="A", amount_in_cents=100)
    command(
        client,
        "account_transfer",
        from_account_id="A",
        to_account_id="B",
        amount_in_cents=300,
    )


def test_an_owners_accounts_are_listed_with_their_balances(
    client: FlaskClient, history: None
) -> None:
    response = client.get("/api/accounts?owner_email=alice@example.com")

    page = body(response)
    assert response.status_code == 200
    assert [(a["account_id"], a["balance_in_cents"]) for a in page["accounts"]] == [
        ("A", 600),
        ("B", 300),
    ]
    assert page["next_cursor"] is None
    assert page["accounts"][0]["account_owner_email"] == "alice@example.com"


def test_the_owner_listing_pages_with_a_cursor(
    client: FlaskClient, history: None
) -> None:
    first = body(client.get("/api/accounts?owner_email=alice@example.com&limit=1"))
    second = body(
        client.get(
            "/api/accounts?owner_email=alice@example.com&limit=1"
            f"&cursor={first['next_cursor']}"
        )
    )

    assert [a["account_id"] for a in first["accounts"] + second["accounts"]] == [
        "A",
        "B",
    ]


def test_the_owner_listing_needs_an_owner(client: FlaskClient) -> None:
    response = client.get("/api/accounts")

    assert response.status_code == 422
    assert body(response)["error"]["code"] == "validation_error"


def test_a_statement_shows_every_event_with_the_balance_after(
    client: FlaskClient, history: None
) -> None:
    response = client.get("/api/accounts/A/statement")

    statement = body(response)
    assert response.status_code == 200
    assert [
        (line["kind"], line["amount_in_cents"], line["balance_after_in_cents"])
        for line in statement["lines"]
    ] == [
        ("opened", 0, 0),
        ("deposit", 1000, 1000),
        ("withdrawal", -100, 900),
        ("transfer_out", -300, 600),
    ]
    assert statement["lines"][3]["counterparty_account_id"] == "B"


def test_a_statement_can_be_cut_by_time(client: FlaskClient, history: None) -> None:
    lines = body(client.get("/api/accounts/A/statement"))["lines"]
    since, until = quote(lines[1]["timestamp"]), quote(lines[3]["timestamp"])

    window = body(client.get(f"/api/accounts/A/statement?from={since}&to={until}"))

    assert [line["version"] for line in window["lines"]] == [2, 3]


@pytest.mark.parametrize(
    "query", ["from=yesterday", "to=2026-11-27T18:00:00", "cursor=abc", "limit=0"]
)
def test_bad_statement_parameters_get_422(
    client: FlaskClient, history: None, query: str
) -> None:
    response = client.get(f"/api/accounts/A/statement?{query}")

    assert response.status_code == 422
    assert body(response)["error"]["code"] == "validation_error"


def test_the_statement_of_an_unknown_account_is_404(client: FlaskClient) -> None:
    response = client.get("/api/accounts/nobody/statement")

    assert response.status_code == 404
    assert body(response)["error"]["code"] == "account_not_found"


def test_an_account_can_be_read_as_it_was_at_a_moment(
    client: FlaskClient, flask_app: Flask, history: None
) -> None:
    bank: BankApplication = flask_app.extensions["bank"]
    deposited = bank.get_history("A")[1].timestamp

    at_deposit = client.get(f"/api/accounts/A?as_of={quote(deposited.isoformat())}")
    before = client.get(
        f"/api/accounts/A?as_of={quote((deposited - timedelta(days=1)).isoformat())}"
    )

    assert body(at_deposit)["balance_in_cents"] == 1000
    assert body(at_deposit)["version"] == 2
    assert before.status_code == 404


@pytest.mark.parametrize(
    "query", ["as_of=soon", "as_of=2026-11-27T18:00:00", "as_of=2026-11-27Z&version=1"]
)
def test_bad_time_travel_parameters_get_422(
    client: FlaskClient, history: None, query: str
) -> None:
    response = client.get(f"/api/accounts/A?{query}")

    assert response.status_code == 422


def test_read_models_need_a_sql_database() -> None:
    flask_app = create_app({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    client = flask_app.test_client()
    command(client, "account_open", account_owner_email="a@example.com", account_id=1)

    response = client.get("/api/accounts/1/statement")

    assert response.status_code == 501
    assert body(response)["error"]["code"] == "read_models_unavailable"


# Every read parameter is bounded: a 422 naming it, never a 500.


def event_count(flask_app: Flask) -> int:
    """How many events the bank has stored in all."""
    bank: BankApplication = flask_app.extensions["bank"]
    return bank.recorder.max_notification_id() or 0


INT4_MAX = 2**31 - 1
OUT_OF_RANGE_READS: dict[str, tuple[str, str]] = {
    "a NUL account id": ("/api/accounts/%00", "path.account_id"),
    "a 10,000-character account id": (
        "/api/accounts/" + "9" * 10_000,
        "path.account_id",
    ),
    "a NUL account id for events": ("/api/accounts/%00/events", "path.account_id"),
    "a version beyond int4": (
        f"/api/accounts/A?version={INT4_MAX + 1}",
        "query.version",
    ),
    "a version of 30 digits": (
        "/api/accounts/A?version=" + "9" * 30,
        "query.version",
    ),
    "an after_version beyond int4": (
        f"/api/accounts/A/events?after_version={INT4_MAX + 1}",
        "query.after_version",
    ),
    "an after_version beyond int8": (
        f"/api/accounts/A/events?after_version={2**63}",
        "query.after_version",
    ),
    "a limit of 0": ("/api/accounts/A/events?limit=0", "query.limit"),
    "a limit of 1001": ("/api/accounts/A/events?limit=1001", "query.limit"),
    "a limit of 30 digits": (
        "/api/accounts/A/events?limit=" + "9" * 30,
        "query.limit",
    ),
    "a statement from a time that is no RFC 3339 time": (
        "/api/accounts/A/statement?from=2026-11-27%2018:00Z",
        "query.from",
    ),
    "an as_of in week-date form": ("/api/accounts/A?as_of=2026-W48-2", "query.as_of"),
    "a statement cursor beyond any version (int4)": (
        f"/api/accounts/A/statement?cursor={INT4_MAX + 1}",
        "query.cursor",
    ),
    "a statement cursor beyond int8": (
        f"/api/accounts/A/statement?cursor={2**63}",
        "query.cursor",
    ),
    "a statement of a NUL account id": (
        "/api/accounts/%00/statement",
        "path.account_id",
    ),
    "an owner email of NUL": ("/api/accounts?owner_email=%00", "query.owner_email"),
    "an owner email of 10,000 characters": (
        "/api/accounts?owner_email=" + "a" * 10_000 + "@example.com",
        "query.owner_email",
    ),
    "an owner email that is no address": (
        "/api/accounts?owner_email=alice",
        "query.owner_email",
    ),
    "an owner-listing cursor of NUL": (
        "/api/accounts?owner_email=alice@example.com&cursor=%00",
        "query.cursor",
    ),
    "an owner-listing cursor that is no account id": (
        "/api/accounts?owner_email=alice@example.com&cursor=" + "x" * 10_000,
        "query.cursor",
    ),
}


@pytest.mark.parametrize(
    ("path", "field"), OUT_OF_RANGE_READS.values(), ids=OUT_OF_RANGE_READS.keys()
)
def test_an_out_of_range_read_parameter_gets_422_naming_it_and_changes_nothing(
    flask_app: Flask, client: FlaskClient, history: None, path: str, field: str
) -> None:
    before = event_count(flask_app)

    response = client.get(path)

    error = body(response)["error"]
    assert (response.status_code, error["code"]) == (422, "validation_error")
    assert [each["field"] for each in error["details"]["errors"]] == [field]
    assert event_count(flask_app) == before


def test_moments_beyond_the_years_1_to_9999_in_utc_are_before_or_after_every_event(
    client: FlaskClient, history: None
) -> None:
    statement = "/api/accounts/A/statement"
    from_before_year_1 = client.get(f"{statement}?from=0001-01-01T00:00:00%2B00:01")
    to_after_year_9999 = client.get(f"{statement}?to=9999-12-31T23:59:59-00:01")
    before_everything = client.get("/api/accounts/A?as_of=0001-01-01T00:00:00%2B00:01")
    after_everything = client.get("/api/accounts/A?as_of=9999-12-31T23:59:59-23:59")

    assert [line["version"] for line in body(from_before_year_1)["lines"]] == [
        1,
        2,
        3,
        4,
    ]
    assert [line["version"] for line in body(to_after_year_9999)["lines"]] == [
        1,
        2,
        3,
        4,
    ]
    assert before_everything.status_code == 404
    assert body(after_everything)["version"] == 4


def test_the_extremes_that_do_convert_to_utc_and_fit_int4_are_answered(
    client: FlaskClient, history: None
) -> None:
    statement = "/api/accounts/A/statement"
    everything = client.get(
        f"{statement}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z"
    )
    past_the_end = client.get(f"{statement}?cursor={INT4_MAX}")

    assert [line["version"] for line in body(everything)["lines"]] == [1, 2, 3, 4]
    assert body(past_the_end)["lines"] == []


ONE_MINUTE_EAST = timezone(timedelta(minutes=1))
ONE_MINUTE_WEST = timezone(-timedelta(minutes=1))
REFUSED_LEDGER_CALLS: dict[str, tuple[Callable[[Ledger], object], str]] = {
    "a cursor beyond any version": (
        lambda ledger: ledger.statement("A", cursor=str(INT4_MAX + 1)),
        "cursor",
    ),
    "a cursor that is no number": (
        lambda ledger: ledger.statement("A", cursor="1 OR 1=1"),
        "cursor",
    ),
    "a since without a zone": (
        lambda ledger: ledger.statement("A", since=datetime(2026, 1, 1)),
        "since",
    ),
    "a statement of a NUL account id": (
        lambda ledger: ledger.statement("\0"),
        "account_id",
    ),
    "an owner email of NUL": (
        lambda ledger: ledger.accounts_by_owner("\0"),
        "account_owner_email",
    ),
    "an owner-listing cursor of NUL": (
        lambda ledger: ledger.accounts_by_owner("alice@example.com", cursor="\0"),
        "cursor",
    ),
}


@pytest.mark.parametrize(
    ("call", "field"), REFUSED_LEDGER_CALLS.values(), ids=REFUSED_LEDGER_CALLS.keys()
)
def test_the_ledger_refuses_out_of_range_arguments_from_python_callers_too(
    flask_app: Flask,
    history: None,
    call: Callable[[Ledger], object],
    field: str,
) -> None:
    ledger = Ledger(flask_app.extensions["bank"])
    before = event_count(flask_app)

    with pytest.raises(InvalidCommandError) as refused:
        call(ledger)

    assert refused.value.details["field"] == field
    assert event_count(flask_app) == before


def test_the_ledger_takes_moments_beyond_the_years_1_to_9999_in_utc_as_unbounded(
    flask_app: Flask, history: None
) -> None:
    ledger = Ledger(flask_app.extensions["bank"])

    lines = ledger.statement(
        "A",
        since=datetime(1, 1, 1, tzinfo=ONE_MINUTE_EAST),
        until=datetime.max.replace(tzinfo=ONE_MINUTE_WEST),
    ).items

    assert [line["version"] for line in lines] == [1, 2, 3, 4]
