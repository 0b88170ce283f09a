"""Holds, reversals, currencies and metadata over HTTP, on each real database."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from conftest import assert_replays
from scenario import OLD, TRANSFER_KEYS, Scenario, deposited, halves, opened

from bank import BankApplication, BankError
from bank.domain import MAX_HOLD_SECONDS
from web import create_app
from web.errors import STATUS_BY_CODE
from web.openapi import openapi_document
from web.registry import COMMANDS, CURRENCIES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

UNKNOWN_TRANSFER = "0b3c5a8e-4a57-4c1e-9d1e-2f5f3d6a7b81"


def command(client: FlaskClient, name: str, **data: Any) -> TestResponse:
    """POST one command as JSON."""
    return client.post("/api", json={"command": name, "data": data})


def body(response: TestResponse) -> Any:
    """The JSON body, asserting there is one."""
    assert response.json is not None, response.data[:200]
    return response.json


def accepted(response: TestResponse) -> Any:
    """The body of an accepted command."""
    assert response.status_code in {200, 201}, response.json
    return body(response)


def refused(response: TestResponse) -> dict[str, Any]:
    """The error of a refused request, checked against the status table."""
    error: dict[str, Any] = body(response)["error"]
    assert STATUS_BY_CODE[error["code"]] == response.status_code
    return error


def event_count(flask_app: Flask) -> int:
    """How many events the bank has stored in all."""
    bank: BankApplication = flask_app.extensions["bank"]
    return bank.recorder.max_notification_id() or 0


def hold(client: FlaskClient, amount: int = 700, **data: Any) -> str:
    """A pending transfer from A to B; its id."""
    response = command(
        client,
        "account_transfer",
        from_account_id="A",
        to_account_id="B",
        amount_in_cents=amount,
        pending=True,
        **data,
    )
    return str(accepted(response)["transfer_id"])


def pay(client: FlaskClient, amount: int = 600, **data: Any) -> str:
    """A plain transfer from A to B; its id."""
    response = command(
        client,
        "account_transfer",
        from_account_id="A",
        to_account_id="B",
        amount_in_cents=amount,
        **data,
    )
    return str(accepted(response)["transfer_id"])


def account(client: FlaskClient, account_id: str) -> Any:
    """GET an account."""
    return body(client.get(f"/api/accounts/{account_id}"))


def transfer(client: FlaskClient, transfer_id: str) -> Any:
    """GET a transfer."""
    return body(client.get(f"/api/transfers/{transfer_id}"))


@pytest.fixture
def funded(client: FlaskClient) -> None:
    """A holds 1000 cents and B nothing, both in USD; E is in euros."""
    for account_id, currency in [("A", None), ("B", "USD"), ("E", "EUR")]:
        data = {"account_owner_email": "a@example.com", "account_id": account_id}
        accepted(command(client, "account_open", **data, currency=currency))
    accepted(command(client, "account_deposit", account_id="A", amount_in_cents=1000))


# The scenario.


def test_a_hold_blocks_a_withdrawal_and_posting_part_of_it_moves_only_that(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    transfer_id = hold(client, 700)
    before = event_count(flask_app)

    withdrawal = command(
        client, "account_withdraw", account_id="A", amount_in_cents=400
    )

    assert (withdrawal.status_code, refused(withdrawal)["code"]) == (
        409,
        "insufficient_funds",
    )
    assert refused(withdrawal)["details"]["available_in_cents"] == 300
    assert event_count(flask_app) == before
    posted = accepted(
        command(client, "transfer_post", transfer_id=transfer_id, amount_in_cents=500)
    )
    assert posted["status"] == "posted"
    payer, payee = account(client, "A"), account(client, "B")
    assert (payer["available_in_cents"], payer["balance_in_cents"]) == (500, 500)
    assert payer["pending_debits_in_cents"] == 0
    assert (payee["balance_in_cents"], payee["pending_credits_in_cents"]) == (500, 0)


def test_a_hold_lapses_after_its_timeout_and_can_no_longer_be_posted(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    transfer_id = hold(client, 700, timeout_seconds=1)
    assert account(client, "A")["available_in_cents"] == 300

    time.sleep(1.2)

    lapsed = transfer(client, transfer_id)
    assert lapsed["status"] == "expired"
    assert account(client, "A")["available_in_cents"] == 1000
    assert account(client, "B")["pending_credits_in_cents"] == 0
    before = event_count(flask_app)
    post = command(client, "transfer_post", transfer_id=transfer_id)
    assert (post.status_code, refused(post)["code"]) == (409, "transfer_not_pending")
    assert refused(post)["details"]["status"] == "expired"
    assert event_count(flask_app) == before
    kinds = [e["type"] for e in body(client.get("/api/accounts/A/events"))]
    assert kinds[-2:] == ["HoldPlaced", "HoldExpired"]


# Currencies.


def test_an_account_is_opened_in_the_currency_asked_for(client: FlaskClient) -> None:
    opened = accepted(
        command(
            client,
            "account_open",
            account_owner_email="a@example.com",
            account_id="J",
            currency="JPY",
        )
    )

    assert opened["currency"] == "JPY"
    assert account(client, "J")["currency"] == "JPY"


def test_without_a_currency_an_account_is_opened_in_the_banks_default(
    db_env: BankEnv,
) -> None:
    flask_app = create_app({**db_env, "BANK_DEFAULT_CURRENCY": "EUR"})
    client = flask_app.test_client()

    opened = accepted(
        command(client, "account_open", account_owner_email="a@example.com")
    )

    assert opened["currency"] == "EUR"
    flask_app.extensions["bank"].close()


def test_the_default_currency_is_usd(client: FlaskClient) -> None:
    opened = command(client, "account_open", account_owner_email="a@example.com")

    assert accepted(opened)["currency"] == "USD"


@pytest.mark.parametrize(
    "currency", ["usd", "XYZ", "US", "USDD", "", 840, {"code": "USD"}]
)
def test_anything_but_an_iso_4217_code_is_refused_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, currency: object
) -> None:
    response = command(
        client, "account_open", account_owner_email="a@example.com", currency=currency
    )

    error = refused(response)
    assert (response.status_code, error["code"]) == (422, "validation_error")
    assert [each["field"] for each in error["details"]["errors"]] == ["data.currency"]
    assert event_count(flask_app) == 0


@pytest.mark.parametrize("pending", [False, True])
def test_a_transfer_between_currencies_is_refused_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None, pending: bool
) -> None:
    before = event_count(flask_app)

    response = command(
        client,
        "account_transfer",
        from_account_id="A",
        to_account_id="E",
        amount_in_cents=100,
        pending=pending,
    )

    error = refused(response)
    assert (response.status_code, error["code"]) == (409, "currency_mismatch")
    assert error["details"]["to_currency"] == "EUR"
    assert event_count(flask_app) == before


# Metadata.

METADATA = {"order": "A-1", "note.x_y-z": "é" * 500, "raw": "\x00\n\t"}


@pytest.mark.parametrize(
    ("name", "data", "event_type"),
    [
        (
            "account_deposit",
            {"account_id": "A", "amount_in_cents": 5, "reference": "r"},
            "Deposited",
        ),
        ("account_withdraw", {"account_id": "A", "amount_in_cents": 5}, "Withdrawn"),
        (
            "account_transfer",
            {"from_account_id": "A", "to_account_id": "B", "amount_in_cents": 5},
            "TransferSent",
        ),
        (
            "account_transfer",
            {
                "from_account_id": "A",
                "to_account_id": "B",
                "amount_in_cents": 5,
                "pending": True,
            },
            "HoldPlaced",
        ),
    ],
)
def test_metadata_is_kept_in_the_event_and_on_the_statement(
    client: FlaskClient,
    funded: None,
    name: str,
    data: dict[str, Any],
    event_type: str,
) -> None:
    accepted(command(client, name, **data, metadata=METADATA))

    last_event = body(client.get("/api/accounts/A/events"))[-1]
    last_line = body(client.get("/api/accounts/A/statement"))["lines"][-1]
    assert (last_event["type"], last_event["data"]["metadata"]) == (
        event_type,
        METADATA,
    )
    assert last_line["metadata"] == METADATA


def test_a_transfers_metadata_is_shown_on_the_transfer(
    client: FlaskClient, funded: None
) -> None:
    transfer_id = pay(client, metadata={"invoice": "42"})

    assert transfer(client, transfer_id)["metadata"] == {"invoice": "42"}


def test_metadata_of_16_keys_of_40_characters_is_accepted(
    client: FlaskClient, funded: None
) -> None:
    metadata = {f"{n:02}" + "k" * 38: "v" for n in range(16)}

    response = command(
        client, "account_deposit", account_id="A", amount_in_cents=1, metadata=metadata
    )

    assert response.status_code == 200


BAD_METADATA: dict[str, Any] = {
    "17 keys": {f"k{n}": "v" for n in range(17)},
    "a key of 41 characters": {"k" * 41: "v"},
    "an empty key": {"": "v"},
    "a key with a space": {"a b": "v"},
    "a key with a slash": {"a/b": "v"},
    "a non-ASCII key": {"clé": "v"},
    "a value of 501 characters": {"k": "v" * 501},
    "a number as a value": {"k": 1},
    "null as a value": {"k": None},
    "an object as a value": {"k": {"nested": "v"}},
    "a list": ["k", "v"],
    "a string": "k=v",
}


@pytest.mark.parametrize("name", ["account_deposit", "account_withdraw"])
@pytest.mark.parametrize("metadata", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_bad_metadata_is_refused_with_422_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None, name: str, metadata: Any
) -> None:
    before = event_count(flask_app)

    response = command(
        client, name, account_id="A", amount_in_cents=5, metadata=metadata
    )

    error = refused(response)
    assert (response.status_code, error["code"]) == (422, "validation_error")
    fields = [each["field"] for each in error["details"]["errors"]]
    assert all(field.startswith("data.metadata") for field in fields), fields
    assert event_count(flask_app) == before


def test_bad_metadata_on_a_transfer_or_a_reversal_is_refused_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    transfer_id = pay(client)
    before = event_count(flask_app)
    too_many = BAD_METADATA["17 keys"]

    responses = [
        command(
            client,
            "account_transfer",
            from_account_id="A",
            to_account_id="B",
            amount_in_cents=5,
            metadata=too_many,
        ),
        command(client, "transfer_reverse", transfer_id=transfer_id, metadata=too_many),
    ]

    for response in responses:
        error = refused(response)
        assert (response.status_code, error["code"]) == (422, "validation_error")
        assert error["details"]["errors"][0]["field"] == "data.metadata"
    assert event_count(flask_app) == before


# Holds.


def test_a_pending_transfer_answers_pending_and_holds_on_both_accounts(
    client: FlaskClient, funded: None
) -> None:
    response = accepted(
        command(
            client,
            "account_transfer",
            from_account_id="A",
            to_account_id="B",
            amount_in_cents=700,
            pending=True,
            timeout_seconds=MAX_HOLD_SECONDS,
        )
    )

    assert uuid.UUID(response["transfer_id"])
    assert response["status"] == "pending"
    assert response["from_account"] == {
        "account_id": "A",
        "currency": "USD",
        "balance_in_cents": 1000,
        "pending_debits_in_cents": 700,
        "pending_credits_in_cents": 0,
        "available_in_cents": 300,
        "version": 3,
    }
    assert response["to_account"] == {
        "account_id": "B",
        "currency": "USD",
        "balance_in_cents": 0,
        "pending_debits_in_cents": 0,
        "pending_credits_in_cents": 700,
        "available_in_cents": 0,
        "version": 2,
    }


def test_pending_credits_are_not_spendable(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    hold(client, 700)
    before = event_count(flask_app)

    response = command(client, "account_withdraw", account_id="B", amount_in_cents=1)

    assert (response.status_code, refused(response)["code"]) == (
        409,
        "insufficient_funds",
    )
    assert event_count(flask_app) == before


BAD_HOLDS: dict[str, tuple[dict[str, Any], str]] = {
    "a timeout of 0": ({"pending": True, "timeout_seconds": 0}, "timeout_seconds"),
    "a timeout over 30 days": (
        {"pending": True, "timeout_seconds": MAX_HOLD_SECONDS + 1},
        "timeout_seconds",
    ),
    "a timeout as a string": (
        {"pending": True, "timeout_seconds": "60"},
        "timeout_seconds",
    ),
    "a fractional timeout": (
        {"pending": True, "timeout_seconds": 1.5},
        "timeout_seconds",
    ),
    "a boolean timeout": (
        {"pending": True, "timeout_seconds": True},
        "timeout_seconds",
    ),
    "a timeout without pending": ({"timeout_seconds": 60}, "timeout_seconds"),
    "a timeout when not pending": (
        {"pending": False, "timeout_seconds": 60},
        "timeout_seconds",
    ),
    "pending as a string": ({"pending": "true"}, "pending"),
    "pending as a number": ({"pending": 1}, "pending"),
    "pending as null": ({"pending": None}, "pending"),
}


@pytest.mark.parametrize(("extra", "field"), BAD_HOLDS.values(), ids=BAD_HOLDS.keys())
def test_a_bad_hold_is_refused_with_422_naming_the_field_and_stores_nothing(
    flask_app: Flask,
    client: FlaskClient,
    funded: None,
    extra: dict[str, Any],
    field: str,
) -> None:
    before = event_count(flask_app)

    response = command(
        client,
        "account_transfer",
        from_account_id="A",
        to_account_id="B",
        amount_in_cents=5,
        **extra,
    )

    error = refused(response)
    assert (response.status_code, error["code"]) == (422, "validation_error")
    assert [each["field"] for each in error["details"]["errors"]] == [f"data.{field}"]
    assert event_count(flask_app) == before


def test_posting_without_an_amount_moves_the_whole_hold(
    client: FlaskClient, funded: None
) -> None:
    transfer_id = hold(client, 700)

    posted = accepted(command(client, "transfer_post", transfer_id=transfer_id))

    assert (posted["transfer_id"], posted["status"]) == (transfer_id, "posted")
    assert posted["from_account"]["balance_in_cents"] == 300
    assert posted["to_account"]["balance_in_cents"] == 700
    shown = transfer(client, transfer_id)
    assert (shown["status"], shown["posted_amount_in_cents"]) == ("posted", 700)


def test_voiding_releases_the_whole_hold(client: FlaskClient, funded: None) -> None:
    transfer_id = hold(client, 700)

    voided = accepted(command(client, "transfer_void", transfer_id=transfer_id))

    assert voided["status"] == "voided"
    assert voided["from_account"]["available_in_cents"] == 1000
    assert voided["to_account"]["pending_credits_in_cents"] == 0
    assert transfer(client, transfer_id)["status"] == "voided"


def test_posting_more_than_is_held_is_refused_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    transfer_id = hold(client, 700)
    before = event_count(flask_app)

    response = command(
        client, "transfer_post", transfer_id=transfer_id, amount_in_cents=701
    )

    error = refused(response)
    assert (response.status_code, error["code"]) == (409, "amount_exceeds_transfer")
    assert event_count(flask_app) == before


@pytest.mark.parametrize(
    ("end", "status"), [("transfer_post", "posted"), ("transfer_void", "voided")]
)
@pytest.mark.parametrize("then", ["transfer_post", "transfer_void"])
def test_a_hold_that_ended_cannot_be_posted_or_voided(
    flask_app: Flask,
    client: FlaskClient,
    funded: None,
    end: str,
    status: str,
    then: str,
) -> None:
    transfer_id = hold(client, 700)
    accepted(command(client, end, transfer_id=transfer_id))
    before = event_count(flask_app)

    response = command(client, then, transfer_id=transfer_id)

    error = refused(response)
    assert (response.status_code, error["code"]) == (409, "transfer_not_pending")
    assert error["details"]["status"] == status
    assert event_count(flask_app) == before


def test_a_plain_transfer_cannot_be_posted(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    transfer_id = pay(client)
    before = event_count(flask_app)

    response = command(client, "transfer_post", transfer_id=transfer_id)

    error = refused(response)
    assert (error["code"], error["details"]["status"]) == (
        "transfer_not_pending",
        "posted",
    )
    assert event_count(flask_app) == before


@pytest.mark.parametrize("name", ["transfer_post", "transfer_void", "transfer_reverse"])
def test_an_unknown_transfer_is_refused_with_404_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None, name: str
) -> None:
    before = event_count(flask_app)

    response = command(client, name, transfer_id=UNKNOWN_TRANSFER)

    error = refused(response)
    assert (response.status_code, error["code"]) == (404, "transfer_not_found")
    assert event_count(flask_app) == before


BAD_TRANSFER_DATA: dict[str, tuple[str, dict[str, Any], str]] = {
    "no transfer id": ("transfer_void", {}, "transfer_id"),
    "a transfer id that is no UUID": (
        "transfer_void",
        {"transfer_id": "T1"},
        "transfer_id",
    ),
    "an upper-case UUID": (
        "transfer_post",
        {"transfer_id": UNKNOWN_TRANSFER.upper()},
        "transfer_id",
    ),
    "a transfer id as a number": ("transfer_post", {"transfer_id": 7}, "transfer_id"),
    "a zero amount": (
        "transfer_post",
        {"transfer_id": UNKNOWN_TRANSFER, "amount_in_cents": 0},
        "amount_in_cents",
    ),
    "a fractional amount": (
        "transfer_reverse",
        {"transfer_id": UNKNOWN_TRANSFER, "amount_in_cents": 1.5},
        "amount_in_cents",
    ),
    "an amount to void": (
        "transfer_void",
        {"transfer_id": UNKNOWN_TRANSFER, "amount_in_cents": 5},
        "amount_in_cents",
    ),
    "metadata on a posting": (
        "transfer_post",
        {"transfer_id": UNKNOWN_TRANSFER, "metadata": {}},
        "metadata",
    ),
}


@pytest.mark.parametrize(
    ("name", "data", "field"), BAD_TRANSFER_DATA.values(), ids=BAD_TRANSFER_DATA.keys()
)
def test_bad_transfer_command_data_gets_422_naming_the_field_and_stores_nothing(
    flask_app: Flask,
    client: FlaskClient,
    funded: None,
    name: str,
    data: dict[str, Any],
    field: str,
) -> None:
    before = event_count(flask_app)

    response = client.post("/api", json={"command": name, "data": data})

    error = refused(response)
    assert (response.status_code, error["code"]) == (422, "validation_error")
    assert [each["field"] for each in error["details"]["errors"]] == [f"data.{field}"]
    assert event_count(flask_app) == before


@pytest.mark.parametrize("payer_side", [True, False])
def test_an_account_with_a_pending_transfer_either_way_cannot_be_closed(
    flask_app: Flask, client: FlaskClient, funded: None, payer_side: bool
) -> None:
    transfer_id = hold(client, 700)
    before = event_count(flask_app)

    response = command(client, "account_close", account_id="A" if payer_side else "B")

    error = refused(response)
    assert (response.status_code, error["code"]) == (
        409,
        "account_has_pending_transfers",
    )
    assert error["details"]["transfer_ids"] == [transfer_id]
    assert event_count(flask_app) == before


# Reversals.


def test_a_reversal_moves_money_back_as_a_new_transfer_naming_the_original(
    client: FlaskClient, funded: None
) -> None:
    original = pay(client, 600)

    reversal = accepted(
        command(
            client,
            "transfer_reverse",
            transfer_id=original,
            amount_in_cents=200,
            metadata={"reason": "refund"},
        )
    )

    assert reversal["transfer_id"] != original
    assert reversal["status"] == "posted"
    assert reversal["from_account"]["account_id"] == "B"
    assert reversal["from_account"]["balance_in_cents"] == 400
    assert reversal["to_account"]["account_id"] == "A"
    assert reversal["to_account"]["balance_in_cents"] == 600
    shown = transfer(client, reversal["transfer_id"])
    assert shown["reverses_transfer_id"] == original
    assert (shown["from_account_id"], shown["to_account_id"]) == ("B", "A")
    assert shown["metadata"] == {"reason": "refund"}
    assert transfer(client, original)["reversed_amount_in_cents"] == 200


def test_a_reversal_without_an_amount_reverses_all_that_is_left(
    client: FlaskClient, funded: None
) -> None:
    original = pay(client, 600)
    accepted(
        command(client, "transfer_reverse", transfer_id=original, amount_in_cents=100)
    )

    rest = accepted(command(client, "transfer_reverse", transfer_id=original))

    assert rest["to_account"]["balance_in_cents"] == 1000
    assert transfer(client, original)["reversed_amount_in_cents"] == 600


def test_reversing_more_than_was_posted_is_refused_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    original = pay(client, 600)
    accepted(
        command(client, "transfer_reverse", transfer_id=original, amount_in_cents=500)
    )
    before = event_count(flask_app)

    response = command(
        client, "transfer_reverse", transfer_id=original, amount_in_cents=101
    )

    error = refused(response)
    assert (response.status_code, error["code"]) == (409, "amount_exceeds_transfer")
    assert event_count(flask_app) == before


@pytest.mark.parametrize(("end", "status"), [(None, "pending"), ("void", "voided")])
def test_reversing_what_is_not_posted_is_refused_and_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None, end: str | None, status: str
) -> None:
    transfer_id = hold(client, 700)
    if end is not None:
        accepted(command(client, f"transfer_{end}", transfer_id=transfer_id))
    before = event_count(flask_app)

    response = command(client, "transfer_reverse", transfer_id=transfer_id)

    error = refused(response)
    assert (response.status_code, error["code"]) == (409, "transfer_not_posted")
    assert error["details"]["status"] == status
    assert event_count(flask_app) == before


def test_a_reversal_needs_the_payees_funds(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    original = pay(client, 600)
    accepted(command(client, "account_withdraw", account_id="B", amount_in_cents=600))
    before = event_count(flask_app)

    response = command(client, "transfer_reverse", transfer_id=original)

    error = refused(response)
    assert (response.status_code, error["code"]) == (409, "insufficient_funds")
    assert error["details"]["account_id"] == "B"
    assert event_count(flask_app) == before


# Idempotency-Key.


def test_a_retried_post_is_replayed_and_moves_the_money_once(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    transfer_id = hold(client, 700)
    request = {"command": "transfer_post", "data": {"transfer_id": transfer_id}}
    headers = {"Idempotency-Key": "post-7f3a"}

    first = client.post("/api", json=request, headers=headers)
    before = event_count(flask_app)
    again = client.post("/api", json=request, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_replays(first.json, again.json)
    assert event_count(flask_app) == before
    assert account(client, "B")["balance_in_cents"] == 700


def new_request(client: FlaskClient, kind: str) -> dict[str, Any]:
    """A request of one of the new kinds, on a transfer made for it if need be."""
    if kind == "hold":
        data = {"from_account_id": "A", "to_account_id": "B", "amount_in_cents": 5}
        return {
            "command": "account_transfer",
            "data": {**data, "pending": True, "timeout_seconds": 60, "metadata": {}},
        }
    if kind == "void":
        return {"command": "transfer_void", "data": {"transfer_id": hold(client, 5)}}
    return {
        "command": "transfer_reverse",
        "data": {"transfer_id": pay(client, 5), "metadata": {"k": "v"}},
    }


@pytest.mark.parametrize("kind", ["hold", "void", "reverse"])
def test_every_new_command_is_replayed_for_its_key(
    flask_app: Flask, client: FlaskClient, funded: None, kind: str
) -> None:
    request = new_request(client, kind)

    first = client.post("/api", json=request, headers={"Idempotency-Key": "k-1"})
    before = event_count(flask_app)
    again = client.post("/api", json=request, headers={"Idempotency-Key": "k-1"})

    assert (first.status_code, again.headers.get("Idempotent-Replayed")) == (
        200,
        "true",
    )
    assert_replays(first.json, again.json)
    assert event_count(flask_app) == before


# Batches.


def test_a_batch_may_hold_and_pay_in_one_transaction(
    client: FlaskClient, funded: None
) -> None:
    response = client.post(
        "/api",
        json={
            "batch": [
                {
                    "command": "account_transfer",
                    "data": {
                        "from_account_id": "A",
                        "to_account_id": "B",
                        "amount_in_cents": 700,
                        "pending": True,
                    },
                },
                {
                    "command": "account_withdraw",
                    "data": {"account_id": "A", "amount_in_cents": 300},
                },
            ]
        },
    )

    results = accepted(response)["results"]
    assert results[0]["status"] == "pending"
    assert results[1]["available_in_cents"] == 0


def test_a_batch_refused_for_a_hold_stores_nothing(
    flask_app: Flask, client: FlaskClient, funded: None
) -> None:
    before = event_count(flask_app)

    response = client.post(
        "/api",
        json={
            "batch": [
                {
                    "command": "account_transfer",
                    "data": {
                        "from_account_id": "A",
                        "to_account_id": "B",
                        "amount_in_cents": 700,
                        "pending": True,
                    },
                },
                {
                    "command": "account_withdraw",
                    "data": {"account_id": "A", "amount_in_cents": 301},
                },
            ]
        },
    )

    error = refused(response)
    assert (error["code"], error["details"]["index"]) == ("insufficient_funds", 1)
    assert event_count(flask_app) == before


# Reads: a transfer, and an account's transfers.


def test_a_transfer_is_read_with_every_field(client: FlaskClient, funded: None) -> None:
    transfer_id = hold(client, 700, timeout_seconds=60, metadata={"k": "v"})

    response = client.get(f"/api/transfers/{transfer_id}")

    shown = body(response)
    assert response.status_code == 200
    assert set(shown) == TRANSFER_KEYS
    assert {k: v for k, v in shown.items() if not k.endswith("_at")} == {
        "transfer_id": transfer_id,
        "from_account_id": "A",
        "to_account_id": "B",
        "currency": "USD",
        "amount_in_cents": 700,
        "status": "pending",
        "posted_amount_in_cents": 0,
        "reversed_amount_in_cents": 0,
        "reverses_transfer_id": None,
        "metadata": {"k": "v"},
    }
    created = datetime.fromisoformat(shown["created_at"])
    expires = datetime.fromisoformat(shown["expires_at"])
    assert shown["created_at"].endswith("Z")
    assert (expires - created).total_seconds() == pytest.approx(60, abs=1)


def test_a_plain_transfer_reads_as_posted_without_an_expiry(
    client: FlaskClient, funded: None
) -> None:
    shown = transfer(client, pay(client, 600))

    assert (shown["status"], shown["posted_amount_in_cents"]) == ("posted", 600)
    assert shown["expires_at"] is None


def test_an_unknown_transfer_reads_as_404(client: FlaskClient) -> None:
    response = client.get(f"/api/transfers/{UNKNOWN_TRANSFER}")

    assert (response.status_code, refused(response)["code"]) == (
        404,
        "transfer_not_found",
    )


@pytest.mark.parametrize(
    "transfer_id", ["T1", "%00", "x" * 10_000, UNKNOWN_TRANSFER.upper()]
)
def test_a_transfer_id_that_is_no_uuid_gets_422_naming_it(
    flask_app: Flask, client: FlaskClient, transfer_id: str
) -> None:
    response = client.get(f"/api/transfers/{transfer_id}")

    error = refused(response)
    assert (response.status_code, error["code"]) == (422, "validation_error")
    assert [each["field"] for each in error["details"]["errors"]] == [
        "path.transfer_id"
    ]
    assert event_count(flask_app) == 0


def test_an_accounts_transfers_are_listed_both_ways_oldest_first(
    client: FlaskClient, funded: None
) -> None:
    paid = pay(client, 100)
    held = hold(client, 200)
    reversal = accepted(command(client, "transfer_reverse", transfer_id=paid))

    listed = body(client.get("/api/accounts/B/transfers"))

    assert listed["account_id"] == "B"
    assert [t["transfer_id"] for t in listed["transfers"]] == [
        paid,
        held,
        reversal["transfer_id"],
    ]
    assert all(set(t) == TRANSFER_KEYS for t in listed["transfers"])
    assert listed["next_cursor"] is None


def test_an_accounts_transfers_can_be_filtered_by_status(
    client: FlaskClient, funded: None
) -> None:
    pay(client, 100)
    held = hold(client, 200)
    voided = hold(client, 300)
    accepted(command(client, "transfer_void", transfer_id=voided))

    pending = body(client.get("/api/accounts/A/transfers?status=pending"))
    void = body(client.get("/api/accounts/A/transfers?status=voided"))

    assert [t["transfer_id"] for t in pending["transfers"]] == [held]
    assert [t["transfer_id"] for t in void["transfers"]] == [voided]


def test_a_lapsed_hold_is_listed_as_expired(client: FlaskClient, funded: None) -> None:
    held = hold(client, 200, timeout_seconds=1)
    time.sleep(1.2)

    pending = body(client.get("/api/accounts/A/transfers?status=pending"))
    expired = body(client.get("/api/accounts/A/transfers?status=expired"))

    assert pending["transfers"] == []
    assert [(t["transfer_id"], t["status"]) for t in expired["transfers"]] == [
        (held, "expired")
    ]


def test_an_accounts_transfers_come_a_page_at_a_time(
    client: FlaskClient, funded: None
) -> None:
    ids = [pay(client, amount) for amount in (1, 2, 3)]

    first = body(client.get("/api/accounts/A/transfers?limit=2"))
    rest = body(
        client.get(f"/api/accounts/A/transfers?limit=2&cursor={first['next_cursor']}")
    )

    assert [t["transfer_id"] for t in first["transfers"] + rest["transfers"]] == ids
    assert rest["next_cursor"] is None


BAD_LISTINGS: dict[str, tuple[str, str]] = {
    "an unknown status": ("/api/accounts/A/transfers?status=done", "query.status"),
    "a status in capitals": (
        "/api/accounts/A/transfers?status=PENDING",
        "query.status",
    ),
    "a limit of 0": ("/api/accounts/A/transfers?limit=0", "query.limit"),
    "a limit of 1001": ("/api/accounts/A/transfers?limit=1001", "query.limit"),
    "a cursor that is no number": (
        "/api/accounts/A/transfers?cursor=abc",
        "query.cursor",
    ),
    "a cursor beyond int8": (
        f"/api/accounts/A/transfers?cursor={2**63}",
        "query.cursor",
    ),
    "a NUL account id": ("/api/accounts/%00/transfers", "path.account_id"),
}


@pytest.mark.parametrize(
    ("path", "field"), BAD_LISTINGS.values(), ids=BAD_LISTINGS.keys()
)
def test_a_bad_listing_parameter_gets_422_naming_it_and_changes_nothing(
    flask_app: Flask, client: FlaskClient, funded: None, path: str, field: str
) -> None:
    before = event_count(flask_app)

    response = client.get(path)

    error = refused(response)
    assert (response.status_code, error["code"]) == (422, "validation_error")
    assert [each["field"] for each in error["details"]["errors"]] == [field]
    assert event_count(flask_app) == before


def test_the_transfers_of_an_unknown_account_are_404(client: FlaskClient) -> None:
    response = client.get("/api/accounts/nobody/transfers")

    assert (response.status_code, refused(response)["code"]) == (
        404,
        "account_not_found",
    )


# Accounts as the read models list them.


def test_the_owner_listing_shows_currency_holds_and_what_is_available(
    client: FlaskClient, funded: None
) -> None:
    hold(client, 700)

    listed = body(client.get("/api/accounts?owner_email=a@example.com"))["accounts"]

    shown = {
        item["account_id"]: (
            item["currency"],
            item["pending_debits_in_cents"],
            item["pending_credits_in_cents"],
            item["available_in_cents"],
        )
        for item in listed
    }
    assert shown == {
        "A": ("USD", 700, 0, 300),
        "B": ("USD", 0, 700, 0),
        "E": ("EUR", 0, 0, 0),
    }


def test_holds_show_on_the_statements_of_both_accounts(
    client: FlaskClient, funded: None
) -> None:
    posted = hold(client, 700)
    accepted(command(client, "transfer_post", transfer_id=posted, amount_in_cents=500))
    voided = hold(client, 100)
    accepted(command(client, "transfer_void", transfer_id=voided))

    payer = body(client.get("/api/accounts/A/statement"))["lines"]
    payee = body(client.get("/api/accounts/B/statement"))["lines"]

    assert [(line["kind"], line["amount_in_cents"]) for line in payer[2:]] == [
        ("hold_out", 0),
        ("transfer_out", -500),
        ("hold_out", 0),
        ("hold_voided", 0),
    ]
    assert [(line["kind"], line["amount_in_cents"]) for line in payee[1:]] == [
        ("hold_in", 0),
        ("transfer_in", 500),
        ("hold_in", 0),
        ("hold_voided", 0),
    ]


# The error table and the description.


def _bank_error_classes(base: type[BankError] = BankError) -> Iterator[type[BankError]]:
    for subclass in base.__subclasses__():
        yield subclass
        yield from _bank_error_classes(subclass)


def test_every_refusal_the_bank_raises_has_a_status() -> None:
    codes = {error.code for error in _bank_error_classes()}

    assert codes <= set(STATUS_BY_CODE)


def test_the_description_names_every_new_command_error_and_route() -> None:
    document = openapi_document()
    post = document["paths"]["/api"]["post"]
    conflicts = post["responses"]["409"]["content"]["application/json"]["schema"]
    codes = conflicts["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
    link = post["responses"]["200"]["links"]["GetTransfer"]

    assert {"transfer_post", "transfer_void", "transfer_reverse"} <= set(COMMANDS)
    assert {
        "currency_mismatch",
        "account_has_pending_transfers",
        "transfer_not_pending",
        "transfer_not_posted",
        "amount_exceeds_transfer",
    } <= set(codes)
    assert "transfer_not_found" in str(post["responses"]["404"])
    assert link == {
        "operationId": "getTransfer",
        "parameters": {"transfer_id": "$response.body#/transfer_id"},
    }
    get_transfer = document["paths"]["/api/transfers/{transfer_id}"]["get"]
    assert {"200", "404", "422"} <= set(get_transfer["responses"])
    listing = document["paths"]["/api/accounts/{account_id}/transfers"]["get"]
    assert [p["name"] for p in listing["parameters"]] == [
        "account_id",
        "status",
        "limit",
        "cursor",
        "min_position",
    ]
    schemas = document["components"]["schemas"]
    assert (
        schemas["OpenAccountData"]["properties"]["currency"]["anyOf"][0]["enum"]
        == CURRENCIES
    )


def test_every_currency_described_is_one_the_bank_accepts(
    memory_env: BankEnv,
) -> None:
    with BankApplication(env=memory_env) as bank:
        for code in CURRENCIES:
            assert isinstance(code, str)
            bank.open_account("a@example.com", account_id=f"c-{code}", currency=code)

    assert len(CURRENCIES) > 150


def test_a_transfer_made_before_transfers_were_aggregates_is_read_from_the_views(
    client: FlaskClient, flask_app: Flask
) -> None:
    Scenario(flask_app.extensions["bank"]).given(
        opened("A"), opened("B"), deposited("A", 10), *halves(OLD, "A", "B", 10)
    )

    response = client.get(f"/api/transfers/{OLD}")

    assert response.status_code == 200
    assert response.json is not None
    assert {
        key: response.json[key]
        for key in ("transfer_id", "from_account_id", "to_account_id", "status")
    } == {
        "transfer_id": OLD,
        "from_account_id": "A",
        "to_account_id": "B",
        "status": "posted",
    }
    assert response.json["amount_in_cents"] == 10
