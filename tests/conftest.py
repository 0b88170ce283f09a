"""Fixtures: the bank on the in-memory store, a SQLite file and PostgreSQL."""

from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from scenario import Scenario
from standby import standby_url  # noqa: F401 (a fixture for every test)

from bank import BankApplication
from web import create_app
from web.testing import libpq_url, postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from flask import Flask
    from flask.testing import FlaskClient

POSTGRES_URL = os.environ.get(
    "BANK_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
BankEnv = dict[str, str]


class _AnyPosition:  # noqa: PLW1641 (equal to strings of any hash, so unhashable)
    """Equal to any log position an answer may carry: 32 lowercase hex digits.

    Positions are opaque (on PostgreSQL they start with the writing
    transaction), so a test that compares whole answers matches them with this.
    """

    _DIGITS = re.compile("[0-9a-f]{32}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self._DIGITS.fullmatch(other) is not None

    def __repr__(self) -> str:
        return "POSITION (any 32 lowercase hex digits)"


POSITION: Any = _AnyPosition()


def without_position(answer: dict[str, Any]) -> dict[str, Any]:
    """A command's (or a batch's) answer without the positions it carries."""
    rest = {name: value for name, value in answer.items() if name != "position"}
    if "results" in rest:
        rest["results"] = [without_position(result) for result in rest["results"]]
    return rest


def positions(answer: dict[str, Any]) -> list[str]:
    """The positions an answer carries: its own, then each batch result's."""
    results = answer.get("results", [])
    return [answer["position"], *(result["position"] for result in results)]


def assert_replays(first: Any, replay: Any) -> None:
    """The replay answers as the first execution did, at or after its position.

    A replay's position is read when it is answered, so it may be later than
    the first's; positions sort in log order as strings.
    """
    assert without_position(replay) == without_position(first)
    assert positions(first) == [POSITION] * len(positions(first))
    assert positions(replay) == [POSITION] * len(positions(first))
    for first_position, replay_position in zip(
        positions(first), positions(replay), strict=True
    ):
        assert replay_position >= first_position


def accepted(client: FlaskClient, command: str, **data: Any) -> dict[str, Any]:
    """Send one command through the test client; its answer, which must be 2xx."""
    response = client.post("/api", json={"command": command, "data": data})
    assert response.status_code in (200, 201), response.json
    answer = response.json
    assert isinstance(answer, dict)
    return answer


def no_holds(account_id: str, balance: int, *, version: int) -> dict[str, Any]:
    """The API's answer for a USD account without holds or overdraft."""
    return {
        "account_id": account_id,
        "currency": "USD",
        "balance_in_cents": balance,
        "pending_debits_in_cents": 0,
        "pending_credits_in_cents": 0,
        "available_in_cents": balance,
        "version": version,
    }


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server's URL; skips (fails under CI) when it is down."""
    reason = postgres_unreachable_reason(POSTGRES_URL)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so PostgreSQL tests may not skip)")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def memory_env() -> BankEnv:
    """Settings for the library's in-memory event store."""
    return {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def sqlite_file_env(directory: Path) -> BankEnv:
    """Settings for a SQLite file in the directory."""
    return {
        "PERSISTENCE_MODULE": "bank.persistence",
        "SQLALCHEMY_URL": f"sqlite:///{directory / 'bank.db'}",
    }


@contextmanager
def postgres_schema_env(postgres_url: str) -> Iterator[BankEnv]:
    """Settings for PostgreSQL, isolated in a schema dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {
            "PERSISTENCE_MODULE": "bank.persistence",
            "SQLALCHEMY_URL": postgres_url,
            "SQLALCHEMY_SCHEMA": schema,
        }
    finally:
        # Dropped even when the test fails, so failed runs leave nothing behind.
        with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_env(tmp_path: Path) -> BankEnv:
    """Settings for a fresh SQLite file."""
    return sqlite_file_env(tmp_path)


@pytest.fixture
def postgres_env(postgres_url: str) -> Iterator[BankEnv]:
    """Settings for PostgreSQL, isolated in a schema dropped afterwards."""
    with postgres_schema_env(postgres_url) as env:
        yield env


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_env(request: pytest.FixtureRequest) -> BankEnv:
    """Settings for each real database in turn: a SQLite file, then PostgreSQL."""
    env: BankEnv = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture(scope="module", params=DATABASES)
def module_db_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BankEnv]:
    """Like db_env, but one database per test module (for a shared server)."""
    if request.param == "sqlite":
        yield sqlite_file_env(tmp_path_factory.mktemp("sqlite"))
        return
    with postgres_schema_env(request.getfixturevalue("postgres_url")) as env:
        yield env


@pytest.fixture
def app(db_env: BankEnv) -> Iterator[BankApplication]:
    """A BankApplication on each real database in turn."""
    with BankApplication(env=db_env) as application:
        yield application


@pytest.fixture
def bank(memory_env: BankEnv) -> Iterator[Scenario]:
    """A given/when/then scenario on the in-memory event store."""
    with BankApplication(env=memory_env) as application:
        yield Scenario(application)


@pytest.fixture
def stored_bank(app: BankApplication) -> Scenario:
    """A given/when/then scenario on each real database in turn."""
    return Scenario(app)


@pytest.fixture
def flask_app(db_env: BankEnv) -> Iterator[Flask]:
    """The Flask app on each real database in turn."""
    flask_app = create_app({**db_env, "TESTING": True})
    yield flask_app
    flask_app.extensions["bank"].close()


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    """A test client for the Flask app."""
    return flask_app.test_client()
