"""GET /metrics: what the API and the bank did, in the Prometheus text format."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from live_server import server_fixture
from prometheus_client.parser import text_string_to_metric_families

from cli.serve import fresh_metrics_dir
from web import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient
    from live_server import Server

TOKEN = "tok_metrics_0b1c2d3e4f"


@dataclass(frozen=True)
class Scrape:
    """One scrape of /metrics: every sample, by name and labels."""

    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """Read the text format."""
        return cls(
            [
                (sample.name, dict(sample.labels), sample.value)
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            ]
        )

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of that name whose labels include these."""
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and labels.items() <= sample_labels.items()
        )

    def has(self, name: str) -> bool:
        """Whether any sample has that name."""
        return any(sample_name == name for sample_name, _, _ in self.samples)

    def label_values(self, name: str, label: str) -> set[str]:
        """Every value the label takes in the samples of that name."""
        return {
            labels[label]
            for sample_name, labels, _ in self.samples
            if sample_name == name and label in labels
        }


def scrape(client: FlaskClient, headers: dict[str, str] | None = None) -> Scrape:
    """GET /metrics and parse it."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/plain")
    return Scrape.parse(response.text)


def command(client: FlaskClient, name: str, **data: Any) -> int:
    """POST one command; its status."""
    response = client.post("/api", json={"command": name, "data": data})
    return response.status_code


def deposit(client: FlaskClient, account_id: str, amount_in_cents: int) -> int:
    """POST one deposit; its status."""
    return command(
        client,
        "account_deposit",
        account_id=account_id,
        amount_in_cents=amount_in_cents,
    )


def withdraw(client: FlaskClient, account_id: str, amount_in_cents: int) -> int:
    """POST one withdrawal; its status."""
    return command(
        client,
        "account_withdraw",
        account_id=account_id,
        amount_in_cents=amount_in_cents,
    )


def entry(name: str, **data: Any) -> dict[str, Any]:
    """One command of a batch."""
    return {"command": name, "data": data}


def opened(client: FlaskClient, account_id: str) -> str:
    """Open an account with that id."""
    status = command(
        client,
        "account_open",
        account_owner_email="m@example.com",
        account_id=account_id,
    )
    assert status == 201
    return account_id


def event_types(flask_app: Flask, account_id: str) -> list[str]:
    """The type names of an account's stored events, oldest first."""
    history = flask_app.extensions["bank"].get_history(account_id)
    return [type(event).__name__ for event in history]


def test_deposits_are_counted_as_accepted_and_refusals_as_refused(
    flask_app: Flask, client: FlaskClient
) -> None:
    account_id = opened(client, "M1")
    before = scrape(client)

    deposits = [deposit(client, account_id, 100) for _ in range(3)]
    refused = [withdraw(client, account_id, 10_000) for _ in range(2)]
    after = scrape(client)

    assert (deposits, refused) == ([200] * 3, [409] * 2)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("bank_commands_total", command="account_deposit") == 3
    assert (
        moved("bank_commands_total", command="account_deposit", outcome="accepted") == 3
    )
    assert (
        moved(
            "bank_commands_total",
            command="account_withdraw",
            outcome="refused",
            code="insufficient_funds",
        )
        == 2
    )
    assert moved("bank_commands_total", command="account_withdraw") == 2
    assert moved("bank_command_seconds_count") == 5
    assert moved("bank_http_requests_total", route="/api", status="200") == 3
    assert moved("bank_http_requests_total", route="/api", status="409") == 2
    assert moved("bank_group_commit_size_count") == 3
    assert after.has("bank_projection_lag_events")
    assert event_types(flask_app, account_id) == ["Opened"] + ["Deposited"] * 3


def test_an_unknown_command_is_counted_as_unknown_never_by_its_name(
    flask_app: Flask, client: FlaskClient
) -> None:
    before = scrape(client)

    status = command(client, "steal_everything", account_id="M1")
    not_a_name = client.post("/api", json={"command": ["x"], "data": {}})
    after = scrape(client)

    assert (status, not_a_name.status_code) == (400, 400)
    assert (
        after.value("bank_commands_total", command="unknown", outcome="refused")
        - before.value("bank_commands_total", command="unknown", outcome="refused")
        == 2
    )
    assert "steal_everything" not in after.label_values(
        "bank_commands_total", "command"
    )
    assert flask_app.extensions["bank"].recorder.max_notification_id() is None


def test_a_batch_counts_each_of_its_commands_with_the_batch_outcome(
    flask_app: Flask, client: FlaskClient
) -> None:
    account_id = opened(client, "M2")
    paid_in = entry("account_deposit", account_id=account_id, amount_in_cents=100)
    overdraw = entry("account_withdraw", account_id=account_id, amount_in_cents=10**4)
    before = scrape(client)

    accepted = client.post("/api", json={"batch": [paid_in, paid_in]})
    refused = client.post("/api", json={"batch": [paid_in, overdraw]})
    after = scrape(client)

    def moved(**labels: str) -> float:
        return after.value("bank_commands_total", **labels) - before.value(
            "bank_commands_total", **labels
        )

    assert (accepted.status_code, refused.status_code) == (200, 409)
    assert moved(command="account_deposit", outcome="accepted") == 2
    assert moved(command="account_deposit", outcome="refused") == 1
    assert moved(command="account_withdraw", outcome="refused") == 1
    assert (
        after.value("bank_command_seconds_count")
        - before.value("bank_command_seconds_count")
        == 2
    )
    assert event_types(flask_app, account_id) == ["Opened", "Deposited", "Deposited"]


def test_a_replayed_command_is_counted_as_replayed(client: FlaskClient) -> None:
    account_id = opened(client, "M3")
    body = entry("account_deposit", account_id=account_id, amount_in_cents=100)
    key = {"Idempotency-Key": "metrics-replay-1"}
    before = scrape(client)

    first = client.post("/api", json=body, headers=key)
    again = client.post("/api", json=body, headers=key)
    after = scrape(client)

    def moved(outcome: str) -> float:
        labels = {"command": "account_deposit", "outcome": outcome}
        return after.value("bank_commands_total", **labels) - before.value(
            "bank_commands_total", **labels
        )

    assert (first.status_code, again.headers.get("Idempotent-Replayed")) == (
        200,
        "true",
    )
    assert (moved("accepted"), moved("replayed")) == (1, 1)


def test_requests_are_counted_by_route_pattern_and_status_never_by_path(
    client: FlaskClient,
) -> None:
    account_id = opened(client, "M4")
    before = scrape(client)

    found = client.get(f"/api/accounts/{account_id}")
    missing = client.get("/api/accounts/nobody-9f3e")
    nowhere = client.get("/no/such/page-7c2a")
    after = scrape(client)

    def moved(route: str, status: str) -> float:
        labels = {"route": route, "status": status}
        return after.value("bank_http_requests_total", **labels) - before.value(
            "bank_http_requests_total", **labels
        )

    assert [r.status_code for r in (found, missing, nowhere)] == [200, 404, 404]
    assert moved("/api/accounts/<account_id>", "200") == 1
    assert moved("/api/accounts/<account_id>", "404") == 1
    assert moved("unmatched", "404") == 1
    routes = after.label_values("bank_http_requests_total", "route")
    assert not [route for route in routes if "nobody" in route or "page-7c2a" in route]


def test_the_projection_lag_is_measured_when_scraped(client: FlaskClient) -> None:
    opened(client, "M5")

    metrics = scrape(client)

    lag = metrics.value("bank_projection_lag_events")
    assert metrics.has("bank_projection_lag_events")
    assert not math.isnan(lag)
    assert lag >= 0


def test_metrics_need_a_token_when_tokens_are_configured(sqlite_env: BankEnv) -> None:
    secured = create_app({**sqlite_env, "BANK_API_TOKENS": TOKEN})
    client = secured.test_client()

    refused = client.get("/metrics")
    metrics = scrape(client, {"Authorization": f"Bearer {TOKEN}"})

    assert refused.status_code == 401
    assert metrics.has("bank_commands_total") or metrics.has(
        "bank_command_seconds_count"
    )
    assert secured.extensions["bank"].recorder.max_notification_id() is None
    secured.extensions["bank"].close()


# Lost write races.


@pytest.fixture
def two_apps(db_env: BankEnv) -> Iterator[tuple[Flask, Flask]]:
    """Two Flask apps (two banks, two caches) on one database, as two workers."""
    first = create_app({**db_env, "TESTING": True})
    second = create_app({**db_env, "TESTING": True})
    yield first, second
    first.extensions["bank"].close()
    second.extensions["bank"].close()


def test_lost_write_races_are_counted_as_the_bank_counted_them(
    two_apps: tuple[Flask, Flask],
) -> None:
    first, second = two_apps
    account_id = opened(first.test_client(), "HOT")
    threads, per_thread = 8, 10
    start = threading.Barrier(threads)
    before = scrape(first.test_client())

    def deposit_repeatedly(index: int) -> list[int]:
        client = (first if index % 2 else second).test_client()
        start.wait(timeout=30)
        return [deposit(client, account_id, 1) for _ in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        answered = list(pool.map(deposit_repeatedly, range(threads)))
    after = scrape(first.test_client())

    counted = sum(app.extensions["bank"].write_conflicts for app in two_apps)
    assert answered == [[200] * per_thread] * threads
    assert counted > 0
    assert (
        after.value("bank_write_conflicts_total")
        - before.value("bank_write_conflicts_total")
        == counted
    )
    assert first.extensions["bank"].get_balance(account_id) == threads * per_thread


# Over HTTP, against two worker processes.

server = server_fixture(workers=2)


def worker_commands(server: Server, workers: int = 2) -> dict[int, int]:
    """Each worker's count of committed commands, from its GET /api/health."""
    seen: dict[int, int] = {}
    for _ in range(200):
        with server.connect() as connection:
            health = connection.request("GET", "/api/health").body
        seen[health["worker_pid"]] = health["group_commit"]["commands"]
        if len(seen) == workers:
            break
    return seen


@pytest.mark.slow
def test_every_scrape_adds_up_the_commands_of_both_workers(server: Server) -> None:
    status, _ = server.command(
        "account_open", account_owner_email="m@example.com", account_id="MP"
    )
    assert status == 201
    sent = 0

    def deposit_once(_: int) -> int:
        # A new connection each time: the kernel hands it to either worker.
        status, _ = server.command(
            "account_deposit", account_id="MP", amount_in_cents=1
        )
        return status

    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            statuses = list(pool.map(deposit_once, range(16)))
            assert statuses == [200] * 16
            sent += 16
            served = worker_commands(server)
            if len(served) == 2 and all(served.values()):
                break
    scrapes = []
    for _ in range(6):
        with server.connect() as connection:
            reply = connection.request("GET", "/metrics")
        assert reply.status == 200
        scrapes.append(Scrape.parse(reply.body))

    assert len(served) == 2
    assert all(count > 0 for count in served.values()), served
    for metrics in scrapes:
        assert (
            metrics.value(
                "bank_commands_total", command="account_deposit", outcome="accepted"
            )
            == sent
        )
        assert metrics.value("bank_commands_total") == sent + 1
        assert metrics.value("bank_command_seconds_count") == sent + 1
        # Each worker's own count of what its commits held (retries included).
        assert metrics.value("bank_group_commit_size_sum") == sum(served.values())
        assert (
            metrics.value("bank_http_requests_total", route="/api", status="200")
            == sent
        )
        assert metrics.has("bank_projection_lag_events")


# The metrics directory `bank serve` hands its workers.


def test_a_configured_metrics_directory_is_emptied_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old counts")
    (directory / "README").write_text("kept")

    chosen = fresh_metrics_dir(str(directory))

    assert chosen == str(directory)
    assert sorted(path.name for path in directory.iterdir()) == ["README"]


def test_without_one_each_start_gets_a_new_directory_and_dead_servers_lose_theirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"bank-metrics-{dead_pid()}-abc"
    dead.mkdir()
    alive = tmp_path / f"bank-metrics-{os.getpid()}-def"
    alive.mkdir()

    first, second = fresh_metrics_dir(None), fresh_metrics_dir(None)

    assert first != second
    assert not list(Path(first).iterdir())
    assert Path(first).parent == tmp_path
    assert not dead.exists()
    assert alive.exists()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
