"""Idempotency keys: a retried command is answered from its first execution."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from conftest import assert_replays, without_position
from live_server import Reply, server_fixture

from bank import BankApplication, ConcurrencyError, InsufficientFundsError
from bank.commands import Command, Deposit, Withdraw
from bank.domain import InvalidCommandError
from bank.idempotency import IdempotencyKeyReusedError, IdempotencyRecord

if TYPE_CHECKING:
    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient
    from live_server import Server
    from werkzeug.test import TestResponse


def account_events(app: BankApplication, account_id: str) -> list[str]:
    """The type names of an account's events, in order."""
    return [type(event).__name__ for event in app.get_history(account_id)]


def test_a_retried_deposit_is_applied_once_and_answered_the_same(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")

    first = app.deposit("A", 100, idempotency_key="pay-1")
    app.deposit("A", 5)
    retried = app.deposit("A", 100, idempotency_key="pay-1")

    assert (first, retried) == (100, 100)
    assert app.get_balance("A") == 105
    assert account_events(app, "A") == ["Opened", "Deposited", "Deposited"]


def test_a_retried_open_returns_the_same_generated_id(app: BankApplication) -> None:
    first = app.open_account("a@example.com", idempotency_key="open-1")
    retried = app.open_account("a@example.com", idempotency_key="open-1")

    assert first == retried


def test_a_retried_transfer_returns_the_same_transfer_id(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    app.deposit("A", 100)

    first = app.transfer("A", "B", 60, idempotency_key="t-1")
    retried = app.transfer("A", "B", 60, idempotency_key="t-1")

    assert first == retried
    assert (app.get_balance("A"), app.get_balance("B")) == (40, 60)


def test_the_record_is_written_in_the_same_transaction_as_the_events(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    before = app.recorder.max_notification_id() or 0

    app.deposit("A", 100, idempotency_key="pay-1")

    written = app.recorder.select_notifications(start=before + 1, limit=10)
    assert [n.originator_id for n in written] == [
        app.get_account("A").id,
        IdempotencyRecord.create_id("pay-1"),
    ]


def test_a_key_reused_for_other_data_is_refused_and_stores_nothing(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.deposit("A", 100, idempotency_key="pay-1")
    before = app.recorder.max_notification_id()

    with pytest.raises(IdempotencyKeyReusedError) as refusal:
        app.deposit("A", 101, idempotency_key="pay-1")
    with pytest.raises(IdempotencyKeyReusedError):
        app.withdraw("A", 100, idempotency_key="pay-1")

    assert refusal.value.code == "idempotency_key_reused"
    assert app.recorder.max_notification_id() == before


def test_the_integer_and_string_forms_of_an_id_are_the_same_request(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "123")

    app.deposit(123, 100, idempotency_key="pay-1")
    retried = app.deposit("123", 100, idempotency_key="pay-1")

    assert retried == 100
    assert app.get_balance(123) == 100


def test_a_refused_command_records_nothing_so_its_retry_is_judged_afresh(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")

    with pytest.raises(InsufficientFundsError):
        app.withdraw("A", 100, idempotency_key="w-1")
    app.deposit("A", 150)
    balance = app.withdraw("A", 100, idempotency_key="w-1")

    assert balance == 50


def test_a_lost_race_records_nothing(db_env: BankEnv) -> None:
    env = {**db_env, "AGGREGATE_CACHE_FASTFORWARD": "n", "COMMAND_MAX_ATTEMPTS": "1"}
    with BankApplication(env=env) as app, BankApplication(env=db_env) as rival:
        app.open_account("a@example.com", "A")
        rival.deposit("A", 1)

        with pytest.raises(ConcurrencyError):
            app.deposit("A", 100, idempotency_key="pay-1")

        assert (
            app.execute(Deposit("A", 100), idempotency_key="pay-1")[0].replayed is False
        )
        assert app.get_balance("A") == 101


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\t", "é", "\x7f"])
def test_an_idempotency_key_is_1_to_255_visible_ascii_characters(
    app: BankApplication, key: str
) -> None:
    app.open_account("a@example.com", "A")

    with pytest.raises(InvalidCommandError):
        app.deposit("A", 100, idempotency_key=key)

    assert app.get_balance("A") == 0


def test_a_batch_with_a_key_is_applied_once(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")
    batch: list[Command] = [Deposit("A", 100), Withdraw("A", 30)]

    first = app.execute_batch(batch, idempotency_key="b-1")
    retried = app.execute_batch(batch, idempotency_key="b-1")

    assert [r.account.balance_in_cents for r in retried] == [100, 70]
    assert [r.replayed for r in first + retried] == [False, False, True, True]
    assert app.get_balance("A") == 70


@pytest.mark.slow
def test_sixteen_threads_sending_one_key_apply_it_exactly_once(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.deposit("A", 100)

    def withdraw_everything(_: int) -> int:
        return app.withdraw("A", 100, idempotency_key="sweep")

    with ThreadPoolExecutor(16) as pool:
        balances = list(pool.map(withdraw_everything, range(64)))

    assert set(balances) == {0}
    assert account_events(app, "A") == ["Opened", "Deposited", "Withdrawn"]


# Over HTTP.


def post(client: FlaskClient, key: str | None, name: str, **data: Any) -> TestResponse:
    """POST one command, with an Idempotency-Key header when given."""
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post("/api", json={"command": name, "data": data}, headers=headers)


def test_a_retry_over_http_replays_status_and_body_with_a_header(
    client: FlaskClient, flask_app: Flask
) -> None:
    first = post(client, "k-1", "account_open", account_owner_email="a@example.com")
    bank: BankApplication = flask_app.extensions["bank"]
    before = bank.recorder.max_notification_id()

    retried = post(client, "k-1", "account_open", account_owner_email="a@example.com")

    assert (first.status_code, retried.status_code) == (201, 201)
    assert_replays(first.json, retried.json)
    assert "Idempotent-Replayed" not in first.headers
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert bank.recorder.max_notification_id() == before


def test_a_key_reused_over_http_gets_422_and_stores_nothing(
    client: FlaskClient, flask_app: Flask
) -> None:
    post(
        client, None, "account_open", account_owner_email="a@example.com", account_id=1
    )
    post(client, "k-1", "account_deposit", account_id=1, amount_in_cents=5)
    bank: BankApplication = flask_app.extensions["bank"]
    before = bank.recorder.max_notification_id()

    response = post(client, "k-1", "account_deposit", account_id=1, amount_in_cents=6)

    assert response.status_code == 422
    assert response.json is not None
    assert response.json["error"]["code"] == "idempotency_key_reused"
    assert bank.recorder.max_notification_id() == before


def deposits(*amounts: int) -> dict[str, Any]:
    """A batch of deposits to account 1, as JSON."""
    return {
        "batch": [
            {
                "command": "account_deposit",
                "data": {"account_id": 1, "amount_in_cents": a},
            }
            for a in amounts
        ]
    }


def test_a_retried_batch_over_http_is_replayed_with_the_header_and_stores_nothing(
    client: FlaskClient, flask_app: Flask
) -> None:
    post(
        client, None, "account_open", account_owner_email="a@example.com", account_id=1
    )
    key = {"Idempotency-Key": "batch-1"}
    first = client.post("/api", json=deposits(5, 7), headers=key)
    bank: BankApplication = flask_app.extensions["bank"]
    before = bank.recorder.max_notification_id()

    retried = client.post("/api", json=deposits(5, 7), headers=key)
    reused = client.post("/api", json=deposits(5, 8), headers=key)

    assert (first.status_code, retried.status_code) == (200, 200)
    assert_replays(first.json, retried.json)
    assert "Idempotent-Replayed" not in first.headers
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (reused.status_code, reused.json) == (
        422,
        {
            "error": {
                "code": "idempotency_key_reused",
                "message": "This idempotency key was already used for a different "
                "request.",
                "details": {"idempotency_key": "batch-1"},
            }
        },
    )
    assert "Idempotent-Replayed" not in reused.headers
    assert bank.recorder.max_notification_id() == before
    assert bank.get_balance("1") == 12


@pytest.mark.parametrize("key", ["", "x" * 256, "has space"])
def test_a_malformed_idempotency_key_header_gets_422(
    client: FlaskClient, key: str
) -> None:
    response = post(client, key, "account_open", account_owner_email="a@example.com")

    assert response.status_code == 422
    assert response.json is not None
    errors = response.json["error"]["details"]["errors"]
    assert errors[0]["field"] == "headers.Idempotency-Key"


def test_a_refused_request_over_http_is_judged_afresh_on_retry(
    client: FlaskClient,
) -> None:
    post(
        client, None, "account_open", account_owner_email="a@example.com", account_id=1
    )

    refused = post(client, "w-1", "account_withdraw", account_id=1, amount_in_cents=10)
    post(client, None, "account_deposit", account_id=1, amount_in_cents=10)
    retried = post(client, "w-1", "account_withdraw", account_id=1, amount_in_cents=10)

    assert (refused.status_code, retried.status_code) == (409, 200)
    assert "Idempotent-Replayed" not in retried.headers


# Over HTTP, against two worker processes.

server = server_fixture(workers=2)


@pytest.mark.slow
def test_a_hundred_concurrent_requests_with_one_key_apply_it_exactly_once(
    server: Server,
) -> None:
    with server.connect() as connection:
        connection.command(
            "account_open", {"account_owner_email": "a@example.com", "account_id": "A"}
        )
        connection.command(
            "account_deposit", {"account_id": "A", "amount_in_cents": 100}
        )
    start = threading.Barrier(20)

    def sweep(_: int) -> list[Reply]:
        replies = []
        with server.connect() as connection:
            start.wait(timeout=30)
            for _ in range(5):
                replies.append(
                    connection.command(
                        "account_withdraw",
                        {"account_id": "A", "amount_in_cents": 100},
                        headers={"Idempotency-Key": "sweep-A"},
                    )
                )
        return replies

    with ThreadPoolExecutor(20) as pool:
        replies = [reply for batch in pool.map(sweep, range(20)) for reply in batch]

    events = server.events("A")
    assert len(replies) == 100
    withdrawn = {
        "account_id": "A",
        "currency": "USD",
        "balance_in_cents": 0,
        "pending_debits_in_cents": 0,
        "pending_credits_in_cents": 0,
        "available_in_cents": 0,
        "version": 3,
    }
    assert {(reply.status, str(without_position(reply.body))) for reply in replies} == {
        (200, str(withdrawn))
    }
    replayed = [r for r in replies if r.headers.get("idempotent-replayed") == "true"]
    applied = [r for r in replies if r.headers.get("idempotent-replayed") != "true"]
    assert (len(applied), len(replayed)) == (1, 99)
    for reply in replayed:
        assert_replays(applied[0].body, reply.body)
    assert [event["type"] for event in events] == ["Opened", "Deposited", "Withdrawn"]


def test_a_retried_post_of_a_hold_moves_its_money_once_and_answers_the_same(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    app.deposit("A", 1000)
    transfer_id = app.transfer("A", "B", 700, pending=True)

    first = app.post_transfer(transfer_id, 500, idempotency_key="post-1")
    again = app.post_transfer(transfer_id, 500, idempotency_key="post-1")

    assert again == first
    assert (first.status, first.posted_amount_in_cents) == ("posted", 500)
    assert (app.get_balance("A"), app.get_balance("B")) == (500, 500)


def test_a_retried_reversal_makes_one_reversal(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    app.deposit("A", 1000)
    transfer_id = app.transfer("A", "B", 600)

    first = app.reverse_transfer(transfer_id, 100, idempotency_key="refund-1")
    again = app.reverse_transfer(transfer_id, 100, idempotency_key="refund-1")

    assert again == first
    assert app.get_transfer(transfer_id).reversed_amount_in_cents == 100
    assert (app.get_balance("A"), app.get_balance("B")) == (500, 500)


def test_a_key_first_used_for_a_deposit_is_refused_for_a_withdrawal_of_the_same_amount(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.deposit("A", 100, idempotency_key="k")
    before = app.event_log.head()

    with pytest.raises(IdempotencyKeyReusedError):
        app.withdraw("A", 100, idempotency_key="k")

    assert app.event_log.head() == before


def test_a_key_names_the_same_record_in_every_process_and_release() -> None:
    # Else a retry sent across an upgrade would not find its first execution.
    assert str(IdempotencyRecord.create_id("k-1")) == (
        "536b7969-1434-55c5-97c8-068b8ce4f4d0"
    )
