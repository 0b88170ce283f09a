"""The `bank` command line, run in-process against a SQLite file."""

from __future__ import annotations

import sys
import time
import uuid
from typing import TYPE_CHECKING

import pytest
from cli_runner import Cli, cli_on_a_fresh_sqlite_file, fields, rows
from click.testing import CliRunner

from bank import Account
from cli import serve
from cli.main import main
from cli.serve import gunicorn_argv
from web import auth, server

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The `bank` command on a fresh SQLite file."""
    return cli_on_a_fresh_sqlite_file(tmp_path, monkeypatch)


def test_open_with_an_id_prints_that_id(bank: Cli) -> None:
    output = bank.ok("open", "alice@example.com", "--id", "123")

    assert output == "123\n"
    with bank.app() as app:
        assert app.get_account("123").owner_email == "alice@example.com"


def test_open_without_an_id_prints_a_new_uuid(bank: Cli) -> None:
    output = bank.ok("open", "alice@example.com")

    account_id = output.strip()
    assert str(uuid.UUID(account_id)) == account_id
    with bank.app() as app:
        assert app.get_account(account_id).owner_email == "alice@example.com"


def test_deposit_and_withdraw_print_the_new_balance_in_cents(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")

    after_deposit = bank.ok("deposit", "123", "1000")
    after_withdrawal = bank.ok("withdraw", "123", "250")

    assert after_deposit == "1000\n"
    assert after_withdrawal == "750\n"


def test_a_refused_withdrawal_exits_1_with_one_error_line_and_stores_nothing(
    bank: Cli,
) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")
    bank.ok("deposit", "123", "40")
    stored_before = bank.max_notification_id()

    result = bank("withdraw", "123", "100")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: insufficient_funds: "
        "Account 123 has 40 cents available; 100 were asked for.\n"
    )
    assert bank.max_notification_id() == stored_before


def test_a_transfer_prints_its_id_and_moves_the_money(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "A")
    bank.ok("open", "bob@example.com", "--id", "B")
    bank.ok("deposit", "A", "1000")

    output = bank.ok("transfer", "A", "B", "400")

    transfer_id = output.strip()
    with bank.app() as app:
        assert app.get_balance("A") == 600
        assert app.get_balance("B") == 400
        sent, received = app.get_history("A")[-1], app.get_history("B")[-1]
    assert isinstance(sent, Account.TransferSent)
    assert isinstance(received, Account.TransferReceived)
    assert sent.transfer_id == received.transfer_id == transfer_id


def test_show_prints_the_balance_in_cents_and_as_money(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")
    bank.ok("deposit", "123", "1525")
    bank.ok("set-overdraft-limit", "123", "500")

    output = bank.ok("show", "123")

    assert fields(output) == {
        "Account id": "123",
        "Owner email": "alice@example.com",
        "Currency": "USD",
        "Balance": "15.25",
        "Balance (cents)": "1525",
        "Overdraft limit": "5.00",
        "Overdraft limit (cents)": "500",
        "Pending debits": "0.00",
        "Pending debits (cents)": "0",
        "Pending credits": "0.00",
        "Pending credits (cents)": "0",
        "Available": "20.25",
        "Available (cents)": "2025",
        "Closed": "no",
        "Version": "3",
    }


def test_show_with_a_version_shows_the_account_as_it_was_then(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")
    bank.ok("deposit", "123", "1000")
    bank.ok("deposit", "123", "5")

    then = fields(bank.ok("show", "123", "--version", "2"))
    now = fields(bank.ok("show", "123"))

    assert (then["Balance (cents)"], then["Version"]) == ("1000", "2")
    assert (now["Balance (cents)"], now["Version"]) == ("1005", "3")


def test_a_negative_balance_is_shown_as_negative_money(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")
    bank.ok("set-overdraft-limit", "123", "1000")
    bank.ok("withdraw", "123", "1")

    output = bank.ok("show", "123")

    assert fields(output)["Balance"] == "-0.01"
    assert fields(output)["Balance (cents)"] == "-1"


def test_history_lists_every_event_in_order_with_its_own_fields(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")
    bank.ok("deposit", "123", "1000")
    bank.ok("withdraw", "123", "1000")
    bank.ok("close", "123")

    output = bank.ok("history", "123")

    table = rows(output)
    assert [(row[0], row[2]) for row in table] == [
        ("1", "Opened"),
        ("2", "Deposited"),
        ("3", "Withdrawn"),
        ("4", "Closed"),
    ]
    assert [row[3] for row in table] == [
        "account_id=123 owner_email=alice@example.com currency=USD",
        "amount_in_cents=1000 reference= metadata={}",
        "amount_in_cents=1000 metadata={}",
        "",
    ]
    assert all("T" in row[1] and row[1].endswith("+00:00") for row in table)


def test_close_refuses_an_account_that_still_holds_money(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")
    bank.ok("deposit", "123", "1")

    result = bank("close", "123")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: account_not_empty: Account 123 ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["deposit", "nobody", "100"],
        ["withdraw", "nobody", "100"],
        ["transfer", "nobody", "nobody-else", "100"],
        ["set-overdraft-limit", "nobody", "100"],
        ["close", "nobody"],
        ["show", "nobody"],
        ["history", "nobody"],
    ],
)
def test_an_unknown_account_exits_1_with_account_not_found(
    bank: Cli, command: list[str]
) -> None:
    result = bank(*command)

    assert result.exit_code == 1
    assert result.stderr == "error: account_not_found: There is no account nobody.\n"
    assert result.stdout == ""


def test_an_amount_that_is_not_whole_cents_is_a_usage_error(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")

    result = bank("deposit", "123", "15.25")

    assert result.exit_code == 2
    assert "is not a valid integer" in result.stderr


def test_a_rule_breaking_amount_is_refused_by_the_bank(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "123")

    result = bank("deposit", "123", "0")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: validation_error: ")


def test_the_database_url_can_come_from_the_environment(bank: Cli) -> None:
    runner = CliRunner(env={"SQLALCHEMY_URL": bank.db_url})

    result = runner.invoke(main, ["open", "alice@example.com", "--id", "123"])

    assert result.exit_code == 0
    with bank.app() as app:
        assert app.get_account("123").owner_email == "alice@example.com"


def test_serve_runs_the_flask_factory_under_gunicorn() -> None:
    argv = gunicorn_argv("0.0.0.0", 9000, workers=3, threads=5)

    assert argv == [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "3",
        "--worker-class",
        "web.server.EventedWorker",
        "--threads",
        "5",
        "--keep-alive",
        "5",
        "--bind",
        "0.0.0.0:9000",
        "--access-logfile",
        "-",
        "--no-control-socket",
        "--config",
        "python:cli.serve_hooks",
        "web:create_app()",
    ]


def test_serve_names_the_worker_and_settings_that_the_web_layer_defines() -> None:
    assert f"{server.__name__}.{server.EventedWorker.__name__}" == serve.WORKER_CLASS
    assert serve.READ_TIMEOUT_SETTING == server.READ_TIMEOUT_SETTING
    assert serve.DEFAULT_READ_TIMEOUT_SECONDS == server.DEFAULT_READ_TIMEOUT_SECONDS
    assert serve.API_TOKEN_SETTINGS == (auth.TOKENS, auth.TOKENS_FILE)


def test_serve_execs_gunicorn_with_the_database_and_opens_no_bank(
    bank: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr("cli.serve.os.execvpe", lambda *call: execs.append(call))
    monkeypatch.setattr("cli.session.BankApplication", None)  # must not be built

    result = bank("serve", "--port", "9000", "--workers", "3")

    assert result.exit_code == 0, result.exception
    [(program, argv, env)] = execs
    assert program == sys.executable
    assert argv == gunicorn_argv("127.0.0.1", 9000, workers=3, threads=4)
    assert "--preload" not in argv
    assert env["SQLALCHEMY_URL"] == env["BANK_SQLALCHEMY_URL"] == bank.db_url


def test_serve_has_its_own_db_option_that_wins(
    bank: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr("cli.serve.os.execvpe", lambda *call: execs.append(call))

    result = bank("serve", "--db", "postgresql+psycopg://server/bank")

    assert result.exit_code == 0, result.exception
    [(_, _, env)] = execs
    assert env["SQLALCHEMY_URL"] == "postgresql+psycopg://server/bank"


# Currencies, metadata, holds, reversals.


def test_open_takes_a_currency_and_show_uses_its_minor_unit(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "Y", "--currency", "JPY")
    bank.ok("deposit", "Y", "1525")

    shown = fields(bank.ok("show", "Y"))

    assert (shown["Currency"], shown["Balance"]) == ("JPY", "1525")


def test_open_refuses_an_unknown_currency_and_stores_nothing(bank: Cli) -> None:
    result = bank("open", "alice@example.com", "--currency", "XYZ")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: validation_error: A currency is")
    assert bank.max_notification_id() is None


def test_meta_options_are_recorded_as_metadata(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "A")

    bank.ok("deposit", "A", "100", "--meta", "invoice=42", "--meta", "note=a=b")

    with bank.app() as app:
        deposit = app.get_history("A")[-1]
    assert isinstance(deposit, Account.Deposited)
    assert deposit.metadata == {"invoice": "42", "note": "a=b"}


def test_a_meta_option_that_is_not_key_value_is_a_usage_error(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "A")

    result = bank("deposit", "A", "100", "--meta", "invoice")

    assert result.exit_code == 2
    assert "is not KEY=VALUE" in result.stderr
    assert bank.max_notification_id() == 1


def held(bank: Cli, *options: str) -> str:
    """A holds 1,000, B nothing, and a pending transfer of 700 from A to B."""
    bank.ok("open", "alice@example.com", "--id", "A")
    bank.ok("open", "bob@example.com", "--id", "B")
    bank.ok("deposit", "A", "1000")
    return bank.ok("transfer", "A", "B", "700", "--pending", *options).strip()


def test_a_pending_transfer_holds_the_money_until_posted(bank: Cli) -> None:
    transfer_id = held(bank)

    before = fields(bank.ok("show", "A"))
    posted = bank.ok("post", transfer_id, "500")
    after = fields(bank.ok("show", "A"))

    assert (before["Balance (cents)"], before["Available (cents)"]) == ("1000", "300")
    assert posted == f"Transfer {transfer_id} is posted: 500 cents moved.\n"
    assert (after["Balance (cents)"], after["Available (cents)"]) == ("500", "500")
    assert fields(bank.ok("show", "B"))["Balance (cents)"] == "500"


def test_void_releases_the_hold(bank: Cli) -> None:
    transfer_id = held(bank)

    voided = bank.ok("void", transfer_id)

    assert voided == f"Transfer {transfer_id} is voided: nothing moved.\n"
    assert fields(bank.ok("show", "A"))["Available (cents)"] == "1000"


def test_posting_twice_is_refused_with_transfer_not_pending(bank: Cli) -> None:
    transfer_id = held(bank)
    bank.ok("post", transfer_id)
    stored_before = bank.max_notification_id()

    result = bank("post", transfer_id)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: transfer_not_pending: Transfer {transfer_id} is posted, not pending.\n"
    )
    assert bank.max_notification_id() == stored_before


def test_transfer_show_prints_the_transfer(bank: Cli) -> None:
    transfer_id = held(bank, "--timeout", "60", "--meta", "order=7")

    shown = fields(bank.ok("transfer-show", transfer_id))

    assert shown["Transfer id"] == transfer_id
    assert (shown["From account"], shown["To account"]) == ("A", "B")
    assert (shown["Status"], shown["Amount (cents)"]) == ("pending", "700")
    assert shown["Expires at"].endswith("+00:00")
    assert shown["Metadata"] == "order=7"


def test_reverse_moves_money_back_and_prints_the_new_transfer_id(bank: Cli) -> None:
    bank.ok("open", "alice@example.com", "--id", "A")
    bank.ok("open", "bob@example.com", "--id", "B")
    bank.ok("deposit", "A", "1000")
    transfer_id = bank.ok("transfer", "A", "B", "600").strip()

    reversal_id = bank.ok("reverse", transfer_id, "200").strip()

    reversal = fields(bank.ok("transfer-show", reversal_id))
    original = fields(bank.ok("transfer-show", transfer_id))
    assert reversal["Reverses"] == transfer_id
    assert (reversal["From account"], reversal["To account"]) == ("B", "A")
    assert original["Reversed (cents)"] == "200"


def test_holds_expire_records_every_lapsed_hold(bank: Cli) -> None:
    transfer_id = held(bank, "--timeout", "1")
    time.sleep(1.1)

    output = bank.ok("holds", "expire")
    again = bank.ok("holds", "expire")

    assert output == "Expired 1 lapsed hold.\n"
    assert again == "Expired 0 lapsed holds.\n"
    with bank.app() as app:
        history = app.get_history("A")
        assert isinstance(history[-1], Account.HoldExpired)
        assert app.get_transfer(transfer_id).status == "expired"
