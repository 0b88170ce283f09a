"""The read-model endpoints: owner listing, statements, time travel."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from web import create_app

if TYPE_CHECKING:
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
