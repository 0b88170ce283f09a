"""Events evolve: later versions gained fields; what earlier ones stored still loads.

Opened gained a currency (version 2); Deposited a reference (2) and metadata
(3); Withdrawn and the transfer halves metadata (2); snapshots of accounts the
currency and holds (2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from scenario import Scenario, deposited, opened

from bank import Account, BankApplication, InvalidCommandError
from bank.commands import Deposit
from bank.projections import Ledger

if TYPE_CHECKING:
    from flask.testing import FlaskClient

FIXTURE = Path(__file__).parent / "fixtures" / "v1_stored_events.json"


def store_version_1_records(app: BankApplication) -> None:
    """Insert the checked-in records exactly as the bank stored them before v2."""
    records = json.loads(FIXTURE.read_text())["records"]
    app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=UUID(record["originator_id"]),
                originator_version=record["originator_version"],
                topic=record["topic"],
                state=record["state"].encode(),
            )
            for record in records
        ]
    )


def test_deposits_stored_at_version_1_load_with_an_empty_reference(
    app: BankApplication,
) -> None:
    store_version_1_records(app)

    account = app.get_account("legacy-1")
    deposits = [
        e for e in app.get_history("legacy-1") if isinstance(e, Account.Deposited)
    ]

    assert (account.owner_email, account.balance_in_cents) == (
        "v1.owner@example.com",
        1500,
    )
    assert [(d.amount_in_cents, d.reference) for d in deposits] == [
        (1000, ""),
        (525, ""),
    ]


def test_a_version_1_account_takes_new_commands_and_read_models(
    app: BankApplication,
) -> None:
    store_version_1_records(app)

    app.deposit("legacy-1", 100, reference="invoice 42")

    lines = Ledger(app).statement("legacy-1").items
    assert [(line["kind"], line["reference"]) for line in lines] == [
        ("opened", None),
        ("deposit", None),
        ("deposit", None),
        ("withdrawal", None),
        ("deposit", "invoice 42"),
    ]
    assert app.get_balance("legacy-1") == 1600


def test_new_deposits_are_stored_as_version_3_with_metadata(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    app.deposit("A", 100, reference="rent", metadata={"invoice": "42"})

    [notification] = app.recorder.select_notifications(start=2, limit=1)

    state = json.loads(notification.state)
    assert (state["class_version"], state["reference"], state["metadata"]) == (
        3,
        "rent",
        {"invoice": "42"},
    )


def test_a_deposit_records_its_reference(bank: Scenario) -> None:
    bank.given(opened("A"))

    bank.when(Deposit("A", 100, "salary November"))

    assert bank.new_events() == [deposited("A", 100, "salary November")]


@pytest.mark.parametrize("reference", ["x" * 141, "line\nbreak", "\x00"])
def test_a_reference_is_short_printable_text(bank: Scenario, reference: str) -> None:
    bank.given(opened("A"))

    with pytest.raises(InvalidCommandError):
        bank.when(Deposit("A", 100, reference))

    assert bank.new_events() == []


def test_the_api_takes_a_deposit_reference(client: FlaskClient) -> None:
    client.post(
        "/api",
        json={
            "command": "account_open",
            "data": {"account_owner_email": "a@x.io", "account_id": 1},
        },
    )

    response = client.post(
        "/api",
        json={
            "command": "account_deposit",
            "data": {"account_id": 1, "amount_in_cents": 5, "reference": "gift"},
        },
    )
    events = client.get("/api/accounts/1/events").json

    assert response.status_code == 200
    assert events is not None
    assert events[1]["data"] == {
        "amount_in_cents": 5,
        "reference": "gift",
        "metadata": {},
    }


def test_an_account_opened_before_currencies_reads_as_usd(app: BankApplication) -> None:
    store_version_1_records(app)

    account = app.get_account("legacy-1")
    [withdrawal] = [
        e for e in app.get_history("legacy-1") if isinstance(e, Account.Withdrawn)
    ]

    assert account.currency == "USD"
    assert account.holds == {}
    assert withdrawal.metadata == {}


def test_a_snapshot_keeps_the_currency_and_the_holds(db_env: dict[str, str]) -> None:
    env = {**db_env, "SNAPSHOT_INTERVAL": "3"}
    with BankApplication(env=env) as app:
        app.open_account("a@example.com", "A", currency="EUR")
        app.open_account("b@example.com", "B", currency="EUR")
        app.deposit("A", 1000)
        transfer_id = app.transfer("A", "B", 700, pending=True, timeout_seconds=60)
    with BankApplication(env=env) as fresh:  # no cache: from the snapshot
        assert fresh.snapshots is not None
        [snapshot] = fresh.snapshots.get(Account.create_id("A"))
        account = fresh.get_account("A")

    assert snapshot.originator_version == 3
    assert account.currency == "EUR"
    assert account.holds[transfer_id]["amount_in_cents"] == 700
    assert account.holds[transfer_id]["expires_at"] is not None


def test_a_snapshot_taken_before_currencies_and_holds_loads_as_usd_without_holds(
    db_env: dict[str, str],
) -> None:
    env = {**db_env, "SNAPSHOT_INTERVAL": "2"}
    with BankApplication(env=env) as app:
        app.open_account("a@example.com", "A")
        app.deposit("A", 100)  # version 2: a snapshot
        assert app.snapshots is not None
        [snapshot] = app.snapshots.recorder.select_events(Account.create_id("A"))
        state = json.loads(snapshot.state)
        # As version 1 of the aggregate stored it: no currency, no holds.
        # Version 1 of the aggregate kept no class_version in its state.
        state["state"] = {
            key: value
            for key, value in state["state"].items()
            if key not in {"currency", "holds", "class_version"}
        }
        app.snapshots.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=snapshot.originator_id,
                    originator_version=3,
                    topic=snapshot.topic,
                    state=json.dumps(state).encode(),
                )
            ]
        )
    with BankApplication(env={**env, "SNAPSHOT_INTERVAL": "0"}) as fresh:
        account: Account = fresh.repository.get(Account.create_id("A"))

    assert (account.currency, account.holds, account.balance_in_cents) == (
        "USD",
        {},
        100,
    )
