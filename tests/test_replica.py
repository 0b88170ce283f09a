"""Reads from a real PostgreSQL hot standby (BANK_READ_URL); writes on the primary.

The standby is started for the session (tests/standby.py: pg_basebackup from
the test server, streaming replication). A read served there waits until the
standby has replayed the position it needs, so no read after a command's
answer is stale.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from conftest import accepted

from bank import BankApplication
from bank.persistence import LogPosition
from bank.projections import Ledger
from bank.projections.runner import Projector
from web import create_app
from web.testing import libpq_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def replica_app(postgres_env: BankEnv, standby_url: str) -> Iterator[Flask]:
    """The web app writing to the primary and reading from the standby."""
    env = {
        **postgres_env,
        "BANK_READ_URL": standby_url,
        "BANK_CATCH_UP_IN_REQUEST": "n",
        "BANK_READ_WAIT_SECONDS": "5",
    }
    flask_app = create_app({**env, "TESTING": True})
    stop = threading.Event()
    with BankApplication(env=postgres_env) as primary:
        runner = Projector(Ledger(primary).writer, poll_seconds=0.01)
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield flask_app
        finally:
            stop.set()
            thread.join(10)
            flask_app.extensions["bank"].close()


def get(client: FlaskClient, path: str) -> Any:
    """Read one endpoint, which must answer 200."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.json)
    return response.json


def test_no_read_from_the_standby_is_stale_after_a_commands_answer(
    replica_app: Flask,
) -> None:
    client = replica_app.test_client()
    accepted(
        client, "account_open", account_owner_email="r@example.com", account_id="r"
    )
    accepted(
        client, "account_open", account_owner_email="q@example.com", account_id="q"
    )
    # When each command is followed at once by reads of everything it changed,
    for n in range(1, 16):
        accepted(client, "account_deposit", account_id="r", amount_in_cents=n)
        accepted(
            client,
            "account_transfer",
            from_account_id="r",
            to_account_id="q",
            amount_in_cents=1,
        )
        # then every read already shows it: statement, listing, transfers,
        lines = get(client, "/api/accounts/r/statement?limit=1000")["lines"]
        assert len(lines) == 1 + 2 * n
        [account] = get(client, "/api/accounts?owner_email=r@example.com")["accounts"]
        assert account["version"] == 1 + 2 * n
        transfers = get(client, "/api/accounts/q/transfers?limit=1000")["transfers"]
        assert len(transfers) == n
        # history and the feed.
        assert len(get(client, "/api/accounts/q/events?limit=1000")) == 1 + n
        feed = get(client, "/api/events?account_id=q&limit=1000")["events"]
        assert len(feed) == 1 + n


def test_reads_are_served_by_the_standby_and_wait_for_its_replay(
    replica_app: Flask, standby_url: str
) -> None:
    client = replica_app.test_client()
    accepted(
        client, "account_open", account_owner_email="w@example.com", account_id="w"
    )
    with psycopg.connect(libpq_url(standby_url), autocommit=True) as standby:
        # Given the standby has stopped replaying the primary's log,
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            # when a command is answered on the primary,
            answer = accepted(
                client, "account_deposit", account_id="w", amount_in_cents=5
            )
            # then a read that must see it waits, and is refused as behind,
            response = client.get(
                "/api/accounts/w/statement?min_position=" + answer["position"]
            )
            assert response.status_code == 503
            assert response.json is not None
            assert response.json["error"]["code"] == "read_model_behind"
            assert response.headers["Retry-After"] == "1"
            response = client.get("/api/accounts/w/events")
            assert response.status_code == 503
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    # and once the standby replays again, the same read sees the command.
    lines = get(client, "/api/accounts/w/statement?min_position=" + answer["position"])
    assert [line["kind"] for line in lines["lines"]] == ["opened", "deposit"]


def test_writes_go_to_the_primary_which_the_standby_follows(
    replica_app: Flask, standby_url: str
) -> None:
    client = replica_app.test_client()
    answer = accepted(
        client, "account_open", account_owner_email="p@example.com", account_id="p"
    )
    # The standby itself refuses writes: the command went to the primary.
    with (
        psycopg.connect(libpq_url(standby_url), autocommit=True) as standby,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        standby.execute("CREATE TABLE nope (id int)")
    # Health compares the standby's read models with the primary's head,
    # which soon includes the command (once older transactions have ended).
    wanted = LogPosition.from_token(answer["position"])
    deadline = time.monotonic() + 10
    while True:
        projection = get(client, "/api/health")["projection"]
        head = LogPosition.from_token(projection["head"])
        if head >= wanted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert head >= wanted
    assert LogPosition.from_token(projection["position"]) <= head
    assert projection["rebuilding"] is False
