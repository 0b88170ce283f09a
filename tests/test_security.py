"""Bearer tokens on the API, refusing to listen openly, encryption at rest."""

from __future__ import annotations

import base64
import logging
import sqlite3
from typing import TYPE_CHECKING

import psycopg
import pytest
from click.testing import CliRunner

from bank import BankApplication, ConfigurationError
from bank.projections import Ledger
from cli.main import main
from web import create_app
from web.testing import libpq_url

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import BankEnv
    from flask import Flask

TOKEN = "tok_9f2c1e7a54b04c6d8e3a"
EMAIL = "secret.owner@example.com"


@pytest.fixture
def secured(sqlite_env: BankEnv) -> Flask:
    """The API on SQLite with one configured token."""
    return create_app({**sqlite_env, "BANK_API_TOKENS": f"other-token, {TOKEN}"})


def open_account(flask_app: Flask, headers: dict[str, str]) -> int:
    """POST account_open with these headers; return the status."""
    response = flask_app.test_client().post(
        "/api",
        json={"command": "account_open", "data": {"account_owner_email": EMAIL}},
        headers=headers,
    )
    return response.status_code


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"],
)
def test_without_a_valid_token_every_request_gets_401_and_stores_nothing(
    secured: Flask, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    client = secured.test_client()

    command = client.post("/api", json={"command": "account_open"}, headers=headers)
    read = client.get("/api/accounts/1", headers=headers)
    unknown = client.get("/api/nowhere", headers=headers)

    assert [r.status_code for r in (command, read, unknown)] == [401, 401, 401]
    assert command.json is not None
    assert command.json["error"]["code"] == "unauthorized"
    assert command.headers["WWW-Authenticate"].startswith("Bearer")
    assert secured.extensions["bank"].recorder.max_notification_id() is None


def test_a_configured_token_is_accepted(secured: Flask) -> None:
    status = open_account(secured, {"Authorization": f"Bearer {TOKEN}"})

    assert status == 201


def test_the_health_check_needs_no_token(secured: Flask) -> None:
    response = secured.test_client().get("/api/health")

    assert response.status_code == 200


def test_tokens_may_come_from_a_file(sqlite_env: BankEnv, tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# rotated monthly\n{TOKEN}\n\n", encoding="utf-8")
    flask_app = create_app({**sqlite_env, "BANK_API_TOKENS_FILE": str(tokens_file)})

    assert open_account(flask_app, {"Authorization": f"Bearer {TOKEN}"}) == 201
    assert open_account(flask_app, {"Authorization": "Bearer rotated"}) == 401


def test_without_configured_tokens_the_api_is_open() -> None:
    flask_app = create_app({"PERSISTENCE_MODULE": "eventsourcing.popo"})

    assert open_account(flask_app, {}) == 201


def test_tokens_are_never_logged(
    secured: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        open_account(secured, {"Authorization": f"Bearer {TOKEN}"})
        open_account(secured, {"Authorization": f"Bearer {TOKEN}-wrong"})

    assert TOKEN not in caplog.text


# bank serve refuses to listen openly without tokens.


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Capture the gunicorn exec instead of replacing the test process."""
    calls: list[list[str]] = []
    monkeypatch.setattr("cli.serve.os.execvpe", lambda _, argv, __: calls.append(argv))
    monkeypatch.delenv("BANK_API_TOKENS", raising=False)
    monkeypatch.delenv("BANK_API_TOKENS_FILE", raising=False)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "bank.example.com"])
def test_serve_refuses_a_non_loopback_address_without_tokens(
    execs: list[list[str]], host: str
) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", host])

    assert result.exit_code == 2
    assert "without API tokens" in result.output
    assert execs == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "localhost", "::1"])
def test_serve_listens_on_loopback_without_tokens(
    execs: list[list[str]], host: str
) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", host])

    assert result.exit_code == 0, result.output
    assert len(execs) == 1


def test_serve_listens_openly_with_tokens_or_when_told_it_is_insecure(
    execs: list[list[str]],
) -> None:
    with_tokens = CliRunner().invoke(
        main, ["serve", "--host", "0.0.0.0"], env={"BANK_API_TOKENS": TOKEN}
    )
    told = CliRunner().invoke(
        main, ["serve", "--host", "0.0.0.0", "--insecure-no-auth"]
    )

    assert (with_tokens.exit_code, told.exit_code) == (0, 0)
    assert len(execs) == 2


# Encryption at rest.


@pytest.fixture
def cipher_key() -> str:
    """A fresh key, as `bank keygen` prints it."""
    result = CliRunner().invoke(main, ["keygen"])
    assert result.exit_code == 0
    return result.output.strip()


def test_keygen_prints_base64_of_32_random_bytes(cipher_key: str) -> None:
    other = CliRunner().invoke(main, ["keygen"]).output.strip()

    assert len(base64.b64decode(cipher_key)) == 32
    assert other != cipher_key


EVENT_TABLES = ("bank_events", "bank_snapshots")
ALL_TABLES = (
    *EVENT_TABLES,
    "bank_account_views",
    "bank_statement_lines",
    "bank_transfer_views",
    "bank_hold_views",
)


def _stored_bytes(env: BankEnv, tables: tuple[str, ...] = EVENT_TABLES) -> bytes:
    """Everything the database holds in these tables (SQLite: the whole file)."""
    url = env["SQLALCHEMY_URL"]
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        checkpoint = sqlite3.connect(path)
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        with open(path, "rb") as database:
            return database.read()
    schema = env["SQLALCHEMY_SCHEMA"]
    with psycopg.connect(libpq_url(url)) as connection:
        rows = [
            row
            for table in tables
            for row in connection.execute(f"SELECT * FROM {schema}.{table}").fetchall()
        ]
    return repr(rows).encode()


def test_with_a_cipher_key_no_owner_email_is_stored_in_plaintext(
    db_env: BankEnv, cipher_key: str
) -> None:
    env = {**db_env, "BANK_CIPHER_KEY": cipher_key, "SNAPSHOT_INTERVAL": "2"}
    with BankApplication(env=env) as app:
        app.open_account(EMAIL, "A")
        app.deposit("A", 100)
        assert app.get_account("A").owner_email == EMAIL

    stored = _stored_bytes(db_env)

    assert EMAIL.encode() not in stored
    assert b"secret.owner" not in stored


def test_with_a_cipher_key_the_read_models_keep_emails_references_metadata_sealed(
    db_env: BankEnv, cipher_key: str
) -> None:
    env = {**db_env, "BANK_CIPHER_KEY": cipher_key}
    with BankApplication(env=env) as app:
        app.open_account(EMAIL, "A")
        app.open_account("b@example.com", "B")
        app.deposit("A", 100, reference="secret salary reference")
        transfer_id = app.transfer(
            "A", "B", 10, pending=True, metadata={"note": "confidential payee"}
        )
        ledger = Ledger(app)

        owned = ledger.accounts_by_owner(EMAIL).items
        lines = ledger.statement("A").items
        transfer = ledger.transfer_view(transfer_id)

    assert [row["owner_email"] for row in owned] == [EMAIL]
    assert lines[1]["reference"] == "secret salary reference"
    assert lines[2]["metadata"] == {"note": "confidential payee"}
    assert transfer is not None
    assert transfer["metadata"] == {"note": "confidential payee"}
    stored = _stored_bytes(db_env, tables=ALL_TABLES)
    assert b"secret.owner" not in stored
    assert b"salary" not in stored
    assert b"confidential" not in stored


def test_without_a_cipher_key_the_email_is_stored_readably(db_env: BankEnv) -> None:
    with BankApplication(env=db_env) as app:
        app.open_account(EMAIL, "A")

    assert EMAIL.encode() in _stored_bytes(db_env)


def test_a_wrong_cipher_key_stops_the_bank_at_start_up(
    db_env: BankEnv, cipher_key: str
) -> None:
    with BankApplication(env={**db_env, "BANK_CIPHER_KEY": cipher_key}) as app:
        app.open_account(EMAIL, "A")
    wrong = CliRunner().invoke(main, ["keygen"]).output.strip()

    with pytest.raises(ConfigurationError, match="BANK_CIPHER_KEY missing or wrong"):
        BankApplication(env={**db_env, "BANK_CIPHER_KEY": wrong})


def test_a_missing_cipher_key_stops_the_bank_at_start_up(
    db_env: BankEnv, cipher_key: str
) -> None:
    with BankApplication(env={**db_env, "BANK_CIPHER_KEY": cipher_key}) as app:
        app.open_account(EMAIL, "A")

    with pytest.raises(ConfigurationError, match="BANK_CIPHER_KEY missing or wrong"):
        BankApplication(env=db_env)


@pytest.mark.parametrize(
    "key", ["not base64!", "c2hvcnQ=", base64.b64encode(b"x" * 20)]
)
def test_a_malformed_cipher_key_is_refused_with_a_clear_message(
    sqlite_env: BankEnv, key: str | bytes
) -> None:
    key_text = key.decode() if isinstance(key, bytes) else key

    with pytest.raises(ConfigurationError, match="bank keygen"):
        BankApplication(env={**sqlite_env, "BANK_CIPHER_KEY": key_text})
