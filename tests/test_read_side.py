"""The read side as a service: positions, waiting reads, a background projector.

Every accepted command's answer names the log's position just after its
events; a read waits until the read models have reached a position (the one
it names, else the log's head when it arrived) and is refused, never answered
stale, when they have not in time. A projector process keeps them current;
the feed lets anyone else follow the log the same way.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
from conftest import accepted

from bank import BankApplication
from bank.persistence import LOG_START, LogPosition
from bank.projections import Ledger
from bank.projections.runner import Projector
from bank.readside import ReadBehindError, ReadModelRebuildingError
from web import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from flask import Flask

# Reads that wait, given a short wait so that a refusal comes soon.
WAIT = {"BANK_READ_WAIT_SECONDS": "0.3"}
# As under `bank serve`: reads wait for a projector instead of catching up.
NO_CATCH_UP = {**WAIT, "BANK_CATCH_UP_IN_REQUEST": "n"}
BEYOND = LogPosition(2**40, 2**40).token()


def event_count(flask_app: Flask) -> int:
    """How many events the bank has stored (of every kind)."""
    bank: BankApplication = flask_app.extensions["bank"]
    return bank.recorder.max_notification_id() or 0


@pytest.fixture
def web_app(db_env: BankEnv) -> Iterator[Flask]:
    """The web app with reads that catch up themselves, waiting briefly."""
    flask_app = create_app({**db_env, **WAIT, "TESTING": True})
    yield flask_app
    flask_app.extensions["bank"].close()


@pytest.fixture
def served_app(db_env: BankEnv) -> Iterator[Flask]:
    """The web app as `bank serve` runs it: reads wait for a projector."""
    flask_app = create_app({**db_env, **NO_CATCH_UP, "TESTING": True})
    yield flask_app
    flask_app.extensions["bank"].close()


@pytest.fixture
def projector(served_app: Flask) -> Iterator[Projector]:
    """A background projector on the served app's database, running in a thread."""
    with BankApplication(env=served_app.extensions["bank"].env) as app:
        runner = Projector(Ledger(app).writer, poll_seconds=0.01)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield runner
        finally:
            stop.set()
            thread.join(10)
            assert not thread.is_alive()


# Positions.


def test_every_accepted_command_answers_the_position_after_its_events(
    web_app: Flask,
) -> None:
    client = web_app.test_client()
    # When commands are run one after another,
    answers = [
        accepted(client, "account_open", account_owner_email="a@x.com", account_id="a"),
        accepted(client, "account_open", account_owner_email="b@x.com", account_id="b"),
        accepted(client, "account_deposit", account_id="a", amount_in_cents=700),
        accepted(
            client,
            "account_transfer",
            from_account_id="a",
            to_account_id="b",
            amount_in_cents=200,
        ),
    ]
    # then each answer names a position, later than the one before,
    tokens = [answer["position"] for answer in answers]
    assert tokens == sorted(set(tokens))
    # and the last is the log's head: nothing was written after it.
    head = web_app.extensions["bank"].event_log.settled_head()
    assert LogPosition.from_token(tokens[-1]) == head


def test_a_batch_answers_one_position_after_all_its_commands(web_app: Flask) -> None:
    client = web_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    # When a batch of three deposits is run,
    data = {"account_id": "a", "amount_in_cents": 1}
    deposit = {"command": "account_deposit", "data": data}
    response = client.post("/api", json={"batch": [deposit] * 3})
    # then the batch and each of its results name the position after all three.
    body = response.json
    assert body is not None
    head = web_app.extensions["bank"].event_log.settled_head().token()
    assert [result["position"] for result in body["results"]] == [head] * 3
    assert body["position"] == head


def test_a_position_round_trips_through_its_token_and_sorts_in_log_order() -> None:
    positions = [LOG_START, LogPosition(0, 7), LogPosition(1, 2), LogPosition(9, 1)]
    tokens = [position.token() for position in positions]
    assert [LogPosition.from_token(token) for token in tokens] == positions
    assert sorted(tokens) == tokens


@pytest.mark.parametrize(
    "token", ["", "0", "g" * 32, "0" * 31, "0" * 33, "A" * 32, " " + "0" * 31]
)
def test_a_malformed_min_position_is_refused_naming_it_and_stores_nothing(
    web_app: Flask, token: str
) -> None:
    client = web_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    stored = event_count(web_app)
    response = client.get(f"/api/accounts/a/statement?min_position={token}")
    assert response.status_code == 422
    assert response.json == {
        "error": {
            "code": "validation_error",
            "message": "Query parameter 'min_position' must be a position from a "
            "command's answer or the event feed.",
            "details": {
                "errors": [
                    {
                        "field": "query.min_position",
                        "reason": "must be a position from a command's answer "
                        "or the event feed",
                    }
                ]
            },
        }
    }
    assert event_count(web_app) == stored


# Reads that wait.


@pytest.mark.parametrize(
    "path",
    [
        "/api/accounts?owner_email=a@example.com&min_position={p}",
        "/api/accounts/a/statement?min_position={p}",
        "/api/accounts/a/transfers?min_position={p}",
        "/api/accounts/a/events?min_position={p}",
        "/api/events?min_position={p}",
    ],
)
def test_a_read_waits_for_its_min_position_then_answers_503_read_model_behind(
    web_app: Flask, path: str
) -> None:
    client = web_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    stored = event_count(web_app)
    # When a read asks for a position the log has not reached,
    response = client.get(path.format(p=BEYOND))
    # then, once the wait is over, it is refused as behind, with a retry hint,
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json is not None
    error = response.json["error"]
    assert error["code"] == "read_model_behind"
    assert error["details"]["min_position"] == BEYOND
    assert LogPosition.from_token(error["details"]["position"]) < (
        LogPosition.from_token(BEYOND)
    )
    # and nothing was stored.
    assert event_count(web_app) == stored


def test_a_read_with_a_commands_position_sees_that_command(
    served_app: Flask, projector: Projector
) -> None:
    client = served_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    # When a deposit is answered and its position read back with min_position,
    answer = accepted(client, "account_deposit", account_id="a", amount_in_cents=300)
    response = client.get(
        f"/api/accounts/a/statement?min_position={answer['position']}"
    )
    # then the statement shows it (the projector applied it in the meantime).
    assert response.status_code == 200, response.json
    assert response.json is not None
    assert [line["kind"] for line in response.json["lines"]] == ["opened", "deposit"]


def test_without_a_projector_reads_wait_for_the_head_and_are_refused_not_stale(
    served_app: Flask,
) -> None:
    client = served_app.test_client()
    # Given commands answered while no projector runs (and reads don't catch up),
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    stored = event_count(served_app)
    # when the statement is read without a position,
    response = client.get("/api/accounts/a/statement")
    # then it waits for the head at its arrival, and is refused rather than
    # answered without the account's opening,
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["error"]["code"] == "read_model_behind"
    # and no read caught the read models up inside the request.
    ledger = Ledger(served_app.extensions["bank"])
    assert ledger.projection.position() == LOG_START
    assert event_count(served_app) == stored


def test_with_a_projector_reads_without_a_position_see_every_earlier_command(
    served_app: Flask, projector: Projector
) -> None:
    client = served_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    for amount in (100, 200, 300):
        accepted(client, "account_deposit", account_id="a", amount_in_cents=amount)
        # Each read right after a command sees it: read-your-writes.
        response = client.get("/api/accounts?owner_email=a@example.com")
        assert response.json is not None
        [account] = response.json["accounts"]
        assert account["version"] == {100: 2, 200: 3, 300: 4}[amount]


def test_during_a_rebuild_reads_answer_503_read_model_rebuilding(
    web_app: Flask,
) -> None:
    client = web_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    ledger = Ledger(web_app.extensions["bank"])
    # Given a rebuild that has emptied the tables and not finished,
    ledger.writer.start_rebuild()
    stored = event_count(web_app)
    # when the read models are read, then they refuse rather than answer half,
    for path in (
        "/api/accounts?owner_email=a@example.com",
        "/api/accounts/a/statement",
        "/api/accounts/a/transfers",
    ):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "5"
        assert response.json is not None
        assert response.json["error"]["code"] == "read_model_rebuilding"
    assert event_count(web_app) == stored
    # and once the rebuild is done, they answer in full.
    ledger.writer.catch_up()
    ledger.writer.finish_rebuild()
    response = client.get("/api/accounts/a/statement")
    assert response.status_code == 200
    assert response.json is not None
    assert [line["kind"] for line in response.json["lines"]] == ["opened"]


def test_the_ledger_raises_named_errors_for_python_callers(
    db_env: BankEnv,
) -> None:
    with BankApplication(env={**db_env, **NO_CATCH_UP}) as app:
        app.open_account("a@example.com", "a")
        ledger = Ledger(app)
        with pytest.raises(ReadBehindError):
            ledger.statement("a")
        ledger.writer.start_rebuild()
        with pytest.raises(ReadModelRebuildingError):
            ledger.statement("a")


# The projector.


def test_the_projector_applies_new_events_and_resumes_from_its_position(
    db_env: BankEnv,
) -> None:
    with BankApplication(env={**db_env, **NO_CATCH_UP}) as app:
        app.open_account("a@example.com", "a")
        app.deposit("a", 100)
        ledger = Ledger(app)
        # When a projector catches up, is stopped, and more is written,
        first = Projector(ledger.writer)
        assert first.run_once() == 2
        app.deposit("a", 200)
        # then a new projector applies only what is new,
        second = Projector(ledger.writer)
        assert second.run_once() == 1
        assert second.run_once() == 0
        # and the read models hold every event once.
        lines = ledger.statement("a").items
        assert [line["amount_in_cents"] for line in lines] == [0, 100, 200]


def test_a_running_projector_is_woken_by_new_events(
    served_app: Flask, projector: Projector
) -> None:
    client = served_app.test_client()
    answer = accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    # When a command is answered, the running projector soon reaches its
    # position (reads here never catch up themselves).
    ledger = Ledger(served_app.extensions["bank"])
    position = LogPosition.from_token(answer["position"])
    assert ledger.reached(position) == position
    assert ledger.projection.position() >= position


def test_two_running_projectors_apply_every_event_exactly_once(
    db_env: BankEnv,
) -> None:
    with BankApplication(env={**db_env, **NO_CATCH_UP}) as app:
        stop = threading.Event()
        runners = [Projector(Ledger(app).writer, poll_seconds=0.005) for _ in "ab"]
        threads = [
            threading.Thread(target=runner.run, args=(stop,), daemon=True)
            for runner in runners
        ]
        for thread in threads:
            thread.start()
        try:
            app.open_account("a@example.com", "a")
            for _ in range(60):
                app.deposit("a", 1)
            ledger = Ledger(app)
            ledger.reached()  # the head once every command before has settled
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        lines = ledger.statement("a", limit=1000).items
        assert [line["version"] for line in lines] == list(range(1, 62))
        assert sum(runner.applied for runner in runners) == 61


# Health.


def test_health_reports_the_projections_position_the_head_and_the_lag(
    served_app: Flask,
) -> None:
    client = served_app.test_client()
    accepted(
        client, "account_open", account_owner_email="a@example.com", account_id="a"
    )
    accepted(client, "account_deposit", account_id="a", amount_in_cents=5)
    head = served_app.extensions["bank"].event_log.settled_head().token()
    # Given no projector has run, health shows two events to apply;
    response = client.get("/api/health")
    assert response.json is not None
    assert response.json["projection"] == {
        "position": LOG_START.token(),
        "head": head,
        "lag_events": 2,
        "rebuilding": False,
    }
    # once one has, none.
    Projector(Ledger(served_app.extensions["bank"]).writer).run_once()
    response = client.get("/api/health")
    assert response.json is not None
    assert response.json["projection"] == {
        "position": head,
        "head": head,
        "lag_events": 0,
        "rebuilding": False,
    }


def test_a_running_projector_leaves_a_rebuild_to_refill_the_tables(
    db_env: BankEnv,
) -> None:
    # (Reads wait their default 5 s: a paused projector looks twice a second.)
    with BankApplication(env={**db_env, "BANK_CATCH_UP_IN_REQUEST": "n"}) as app:
        app.open_account("a@example.com", "a")
        app.deposit("a", 100)
        ledger = Ledger(app)
        # Given a rebuild that has emptied the tables,
        ledger.writer.start_rebuild()
        runner = Projector(ledger.writer, poll_seconds=0.005)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        # when a projector runs meanwhile,
        thread.start()
        try:
            stop.wait(0.5)
            # then it applies nothing: the rebuild alone refills the tables,
            assert ledger.writer.state() == (LOG_START, True)
            assert ledger.writer.rebuild() == 2
            # and once it is done, the projector follows the log again.
            app.deposit("a", 5)
            assert ledger.reached() == app.event_log.settled_head()
        finally:
            stop.set()
            thread.join(10)
        assert runner.applied == 1
