"""Batches: many commands in one transaction, all or nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from conftest import POSITION, no_holds

from bank import BankApplication, InsufficientFundsError, InvalidCommandError
from bank.commands import MAX_BATCH_SIZE, Deposit, OpenAccount, Transfer, Withdraw

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient


def test_a_payroll_batch_pays_everyone_in_one_write(app: BankApplication) -> None:
    app.open_account("payer@example.com", "payer")
    app.deposit("payer", 100_000)
    payees = [app.open_account(f"p{n}@example.com", f"payee-{n}") for n in range(50)]
    writes: list[int] = []
    insert_events = app.recorder.insert_events

    def counting_insert(*args: Any, **kwargs: Any) -> Any:
        writes.append(len(args[0]))
        return insert_events(*args, **kwargs)

    app.recorder.insert_events = counting_insert  # type: ignore[method-assign]

    results = app.execute_batch([Transfer("payer", p, 1_000) for p in payees])

    # One transaction: 50 transfers, each a Transfer, a debit and a credit.
    assert writes == [150]
    assert [r.accounts[0].balance_in_cents for r in results][-1] == 50_000
    assert app.get_balance("payer") == 50_000
    assert {app.get_balance(p) for p in payees} == {1_000}
    assert app.get_account("payer").version == 52


def test_a_refused_command_anywhere_in_a_batch_stores_nothing(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    before = app.recorder.max_notification_id()

    with pytest.raises(InsufficientFundsError) as refusal:
        app.execute_batch(
            [Deposit("A", 100), Transfer("A", "B", 60), Withdraw("A", 60)]
        )

    assert refusal.value.command_index == 2
    assert app.recorder.max_notification_id() == before
    assert (app.get_balance("A"), app.get_balance("B")) == (0, 0)


def test_a_batch_may_open_an_account_and_use_it(app: BankApplication) -> None:
    results = app.execute_batch(
        [OpenAccount("new@example.com", "N"), Deposit("N", 500), Withdraw("N", 200)]
    )

    assert [r.account.balance_in_cents for r in results] == [0, 500, 300]
    assert [r.account.version for r in results] == [1, 2, 3]
    assert app.get_balance("N") == 300


@pytest.mark.parametrize("size", [0, MAX_BATCH_SIZE + 1])
def test_a_batch_holds_one_to_a_thousand_commands(
    app: BankApplication, size: int
) -> None:
    app.open_account("a@example.com", "A")

    with pytest.raises(InvalidCommandError):
        app.execute_batch([Deposit("A", 1)] * size)

    assert app.get_balance("A") == 0


def _entry(name: str, **data: Any) -> dict[str, Any]:
    return {"command": name, "data": data}


def _events(flask_app: Flask) -> int:
    bank: BankApplication = flask_app.extensions["bank"]
    return bank.recorder.max_notification_id() or 0


def test_a_batch_over_http_answers_each_commands_result_in_order(
    client: FlaskClient,
) -> None:
    batch = [
        _entry("account_open", account_owner_email="a@example.com", account_id=1),
        _entry("account_deposit", account_id=1, amount_in_cents=700),
        _entry("account_withdraw", account_id="1", amount_in_cents=200),
    ]

    response = client.post("/api", json={"batch": batch})

    assert response.status_code == 200
    assert response.json == {
        "results": [
            {
                **no_holds("1", 0, version=1),
                "account_owner_email": "a@example.com",
                "position": POSITION,
            },
            {**no_holds("1", 700, version=2), "position": POSITION},
            {**no_holds("1", 500, version=3), "position": POSITION},
        ],
        "position": POSITION,
    }


def test_a_refusal_in_an_http_batch_names_its_index_and_stores_nothing(
    flask_app: Flask, client: FlaskClient
) -> None:
    batch = [
        _entry("account_open", account_owner_email="a@example.com", account_id=1),
        _entry("account_deposit", account_id=1, amount_in_cents=100),
        _entry("account_withdraw", account_id=1, amount_in_cents=101),
    ]

    response = client.post("/api", json={"batch": batch})

    assert response.status_code == 409
    assert response.json is not None
    error = response.json["error"]
    assert (error["code"], error["details"]["index"]) == ("insufficient_funds", 2)
    assert _events(flask_app) == 0


@pytest.mark.parametrize(
    ("entry", "status", "code", "field"),
    [
        (
            _entry("account_deposit", account_id=1, amount_in_cents=0.5),
            422,
            "validation_error",
            "batch[1].data.amount_in_cents",
        ),
        (_entry("Account"), 400, "unknown_command", None),
        ("account_deposit", 400, "bad_request", None),
    ],
)
def test_a_bad_entry_in_an_http_batch_is_refused_with_its_index(
    flask_app: Flask,
    client: FlaskClient,
    entry: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    batch = [
        _entry("account_open", account_owner_email="a@example.com", account_id=1),
        entry,
    ]

    response = client.post("/api", json={"batch": batch})

    assert response.status_code == status
    assert response.json is not None
    error = response.json["error"]
    assert (error["code"], error["details"]["index"]) == (code, 1)
    if field:
        assert error["details"]["errors"][0]["field"] == field
    assert _events(flask_app) == 0


@pytest.mark.parametrize("batch", [[], "x", {"a": 1}, [{}] * (MAX_BATCH_SIZE + 1)])
def test_a_batch_must_be_a_list_of_1_to_1000_commands(
    client: FlaskClient, batch: Any
) -> None:
    response = client.post("/api", json={"batch": batch})

    assert response.status_code == 422
    assert response.json is not None
    assert response.json["error"]["code"] == "validation_error"


def test_a_full_batch_may_exceed_the_64_kib_single_command_limit(
    client: FlaskClient,
) -> None:
    client.post(
        "/api",
        json=_entry("account_open", account_owner_email="a@example.com", account_id=1),
    )
    batch = [
        _entry("account_deposit", account_id="1", amount_in_cents=1)
    ] * MAX_BATCH_SIZE

    response = client.post("/api", json={"batch": batch})

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["results"][-1]["balance_in_cents"] == MAX_BATCH_SIZE


def test_a_body_over_the_one_mib_limit_is_refused_with_that_limit(
    flask_app: Flask, client: FlaskClient
) -> None:
    padding = "x" * (1024 * 1024)

    response = client.post("/api", json={"batch": [{"command": padding}]})

    assert response.status_code == 413
    assert response.json is not None
    error = response.json["error"]
    assert error["code"] == "payload_too_large"
    assert error["message"] == "The request body is larger than 1,048,576 bytes."
    assert _events(flask_app) == 0
