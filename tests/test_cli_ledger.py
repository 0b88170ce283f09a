"""`bank statement`, `accounts`, `replay`, `projections rebuild` and `audit`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from cli_runner import Cli, cli_on_a_fresh_sqlite_file, rows
from sqlalchemy import update

from bank.projections import Ledger, LedgerProjection

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The `bank` command on a fresh SQLite file."""
    return cli_on_a_fresh_sqlite_file(tmp_path, monkeypatch)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the commands read the read models two rows at a time."""
    monkeypatch.setattr("cli.ledger.PAGE_SIZE", 2)


@pytest.fixture
def two_accounts(bank: Cli) -> str:
    """A pays in 1000 and sends 250 to B, who withdraws 50; returns the transfer id."""
    with bank.app() as app:
        app.open_account("alice@example.com", "A")
        app.open_account("bob@example.com", "B")
        app.deposit("A", 1000, reference="salary")
        transfer_id = app.transfer("A", "B", 250)
        app.withdraw("B", 50)
    return transfer_id


def replayed(output: str) -> list[list[str]]:
    """`bank replay` lines as [notification id, time, account, type, fields]."""
    return [line.strip().split("  ") for line in output.splitlines()]


def corrupt_a_view_row(bank: Cli, account_id: str) -> None:
    """Change an account's balance in the accounts view behind the projection."""
    with bank.app() as app:
        projection = Ledger(app).projection
        projection.catch_up()
        with projection.engine.begin() as db:
            db.execute(
                update(projection.accounts)
                .where(projection.accounts.c.account_id == account_id)
                .values(balance_in_cents=1)
            )


def test_statement_shows_every_line_in_cents_and_as_money(
    bank: Cli, two_accounts: str
) -> None:
    output = bank.ok("statement", "A")

    assert [row[:1] + row[2:] for row in rows(output)] == [
        ["1", "opened", "0", "0.00", "0", "0.00", "", "", ""],
        ["2", "deposit", "1000", "10.00", "1000", "10.00", "", "", "salary"],
        ["3", "transfer_out", "-250", "-2.50", "750", "7.50", "B", two_accounts, ""],
    ]
    assert all(row[1].endswith("+00:00") for row in rows(output))


def test_statement_from_and_to_keep_the_lines_of_that_window(
    bank: Cli, two_accounts: str
) -> None:
    with bank.app() as app:
        moments = [event.timestamp for event in app.get_history("B")]
    since = moments[1].isoformat().replace("+00:00", "Z")

    output = bank.ok("statement", "B", "--from", since, "--to", moments[2].isoformat())

    assert [(row[0], row[2]) for row in rows(output)] == [("2", "transfer_in")]


@pytest.mark.usefixtures("small_pages")
def test_statement_pages_through_every_line_up_to_the_limit(bank: Cli) -> None:
    with bank.app() as app:
        app.open_account("a@example.com", "A")
        for amount in range(1, 6):
            app.deposit("A", amount)

    everything = bank.ok("statement", "A")
    first_three = bank.ok("statement", "A", "--limit", "3")

    assert [row[0] for row in rows(everything)] == ["1", "2", "3", "4", "5", "6"]
    assert [row[0] for row in rows(first_three)] == ["1", "2", "3"]


def test_statement_of_an_unknown_account_exits_1(bank: Cli) -> None:
    result = bank("statement", "nobody")

    assert result.exit_code == 1
    assert result.stderr == "error: account_not_found: There is no account nobody.\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ["statement", "A", "--from", "2026-11-27T18:00:00"],
        ["statement", "A", "--to", "2026-11-27"],
        ["replay", "--since", "2026-11-27T18:00:00"],
        ["replay", "--until", "yesterday"],
    ],
)
def test_a_time_without_a_zone_is_a_usage_error(
    bank: Cli, two_accounts: str, command: list[str]
) -> None:
    result = bank(*command)

    assert result.exit_code == 2
    assert "Invalid value for '--" in result.stderr


@pytest.mark.usefixtures("small_pages")
def test_accounts_lists_every_account_of_the_owner(bank: Cli) -> None:
    with bank.app() as app:
        for account_id in ("c", "a", "b"):
            app.open_account("owner@example.com", account_id)
        app.open_account("someone.else@example.com", "d")
        app.deposit("b", 1525)

    output = bank.ok("accounts", "--owner", "owner@example.com")

    assert [row[:6] for row in rows(output)] == [
        ["a", "0", "0.00", "0", "no", "1"],
        ["b", "1525", "15.25", "0", "no", "2"],
        ["c", "0", "0.00", "0", "no", "1"],
    ]
    assert rows(bank.ok("accounts", "--owner", "nobody@example.com")) == []


def test_replay_prints_every_ledger_event_in_log_order(
    bank: Cli, two_accounts: str
) -> None:
    output = bank.ok("replay")

    lines = replayed(output)
    assert [line[2:] for line in lines] == [
        ["A", "Opened", "account_id=A owner_email=alice@example.com currency=USD"],
        ["B", "Opened", "account_id=B owner_email=bob@example.com currency=USD"],
        ["A", "Deposited", "amount_in_cents=1000 reference=salary metadata={}"],
        [
            two_accounts,  # a transfer's own events have no account: its id
            "Transfer.Created",
            f"transfer_id={two_accounts} from_account_id=A to_account_id=B "
            "currency=USD amount_in_cents=250 is_pending=False expires_at=None "
            "reverses_transfer_id=None metadata={}",
        ],
        [
            "A",
            "TransferSent",
            f"transfer_id={two_accounts} to_account_id=B amount_in_cents=250 "
            "metadata={}",
        ],
        [
            "B",
            "TransferReceived",
            f"transfer_id={two_accounts} from_account_id=A amount_in_cents=250 "
            "metadata={}",
        ],
        ["B", "Withdrawn", "amount_in_cents=50 metadata={}"],
    ]
    assert [int(line[0]) for line in lines] == sorted(int(line[0]) for line in lines)
    assert all(line[1].endswith("+00:00") for line in lines)


def test_replay_of_one_account_prints_only_its_events(
    bank: Cli, two_accounts: str
) -> None:
    output = bank.ok("replay", "--account", "B")

    assert [line[2:4] for line in replayed(output)] == [
        ["B", "Opened"],
        ["B", "TransferReceived"],
        ["B", "Withdrawn"],
    ]


def test_replay_by_type_names_each_account_without_its_opening(
    bank: Cli, two_accounts: str
) -> None:
    output = bank.ok("replay", "--type", "Withdrawn", "--type", "TransferSent")

    assert [line[2:4] for line in replayed(output)] == [
        ["A", "TransferSent"],
        ["B", "Withdrawn"],
    ]


def test_replay_stops_at_the_limit_and_keeps_to_the_time_window(
    bank: Cli, two_accounts: str
) -> None:
    with bank.app() as app:
        since = app.get_history("A")[1].timestamp.isoformat()

    limited = bank.ok("replay", "--limit", "2")
    windowed = bank.ok("replay", "--since", since, "--limit", "2")

    assert [line[3] for line in replayed(limited)] == ["Opened", "Opened"]
    assert [line[3] for line in replayed(windowed)] == [
        "Deposited",
        "Transfer.Created",
    ]


def test_replay_shows_holds_and_each_transfers_own_events(bank: Cli) -> None:
    with bank.app() as app:
        app.open_account("alice@example.com", "A")
        app.open_account("bob@example.com", "B")
        app.deposit("A", 1000)
        held = app.transfer("A", "B", 700, pending=True, metadata={"order": "7"})
        app.post_transfer(held, 500)
        voided = app.transfer("A", "B", 100, pending=True)
        app.void_transfer(voided)
        reversal = app.reverse_transfer(held, 200)

    lines = replayed(bank.ok("replay"))
    transfers = replayed(bank.ok("replay", "--type", "Transfer.Reversed"))
    holds = replayed(bank.ok("replay", "--type", "HoldPlaced", "--type", "HoldPosted"))

    assert [line[2:4] for line in lines[3:]] == [
        [held, "Transfer.Created"],
        ["A", "HoldPlaced"],
        ["B", "HoldPlaced"],
        [held, "Transfer.Posted"],
        ["A", "HoldPosted"],
        ["B", "HoldPosted"],
        [voided, "Transfer.Created"],
        ["A", "HoldPlaced"],
        ["B", "HoldPlaced"],
        [voided, "Transfer.Voided"],
        ["A", "HoldVoided"],
        ["B", "HoldVoided"],
        [held, "Transfer.Reversed"],
        [reversal, "Transfer.Created"],
        ["B", "TransferSent"],
        ["A", "TransferReceived"],
    ]
    assert lines[4][4] == (
        f"transfer_id={held} counterparty_account_id=B amount_in_cents=700 "
        "is_debit=True expires_at=None metadata={'order': '7'}"
    )
    assert [line[2:] for line in transfers] == [
        [
            held,
            "Transfer.Reversed",
            f"amount_in_cents=200 reversal_transfer_id={reversal}",
        ]
    ]
    assert [line[2:4] for line in holds] == [
        ["A", "HoldPlaced"],
        ["B", "HoldPlaced"],
        ["A", "HoldPosted"],
        ["B", "HoldPosted"],
        ["A", "HoldPlaced"],
        ["B", "HoldPlaced"],
    ]


def test_replay_refuses_an_unknown_event_type(bank: Cli, two_accounts: str) -> None:
    result = bank("replay", "--type", "Stolen")

    assert result.exit_code == 2
    assert "'Stolen' is not one of" in result.stderr


def test_replay_of_an_unknown_account_exits_1(bank: Cli, two_accounts: str) -> None:
    result = bank("replay", "--account", "nobody")

    assert result.exit_code == 1
    assert result.stderr == "error: account_not_found: There is no account nobody.\n"


def test_projections_rebuild_reports_the_events_applied(
    bank: Cli, two_accounts: str
) -> None:
    before = bank.ok("statement", "A")

    output = bank.ok("projections", "rebuild")

    assert output.startswith("Rebuilt the read models: 7 events applied in ")
    assert "events/s" in output
    assert "Resuming" not in output
    assert bank.ok("statement", "A") == before


def test_projections_rebuild_resumes_an_interrupted_rebuild(
    bank: Cli, two_accounts: str
) -> None:
    before = bank.ok("statement", "A")
    with bank.app() as app:
        Ledger(app).projection.start_rebuild()

    output = bank.ok("projections", "rebuild")

    assert output.splitlines()[0] == (
        "Resuming the interrupted rebuild after notification 0."
    )
    assert "7 events applied" in output
    assert bank.ok("statement", "A") == before
    with bank.app() as app:
        assert not Ledger(app).projection.is_rebuilding()


def test_an_interrupted_rebuild_says_how_to_resume_and_then_resumes(
    bank: Cli, two_accounts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = bank.ok("statement", "A")
    catch_up = LedgerProjection.catch_up

    def interrupted(projection: LedgerProjection, **_: Any) -> int:
        def stop(_: int) -> None:
            raise KeyboardInterrupt

        return catch_up(projection, batch_size=2, progress=stop)

    with monkeypatch.context() as patch:
        patch.setattr(LedgerProjection, "catch_up", interrupted)
        stopped = bank("projections", "rebuild")
    resumed = bank.ok("projections", "rebuild")

    assert stopped.exit_code == 130
    assert (
        "error: interrupted: stopped after notification 2; run `bank projections "
        "rebuild` again to resume." in stopped.stderr
    )
    resuming, summary = resumed.splitlines()
    assert resuming == "Resuming the interrupted rebuild after notification 2."
    assert summary.startswith("Rebuilt the read models: 5 events applied in ")
    assert bank.ok("statement", "A") == before


def test_audit_of_a_clean_bank_exits_0(bank: Cli, two_accounts: str) -> None:
    result = bank("audit")

    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("Audit passed: no violations.")
    assert result.stderr == ""
    checks = {row[0]: row[1] for row in rows(result.stdout) if len(row) == 4}
    assert checks == {
        "streams": "ok",
        "overdraft": "ok",
        "transfers": "ok",
        "holds": "ok",
        "money": "ok",
        "read models": "ok",
        "snapshots": "ok",
    }


def test_audit_after_a_view_row_is_corrupted_exits_1(
    bank: Cli, two_accounts: str
) -> None:
    corrupt_a_view_row(bank, "B")

    result = bank("audit")

    assert result.exit_code == 1
    assert result.stderr == "error: audit_failed: 1 violation found.\n"
    assert "Audit FAILED: 1 violation." in result.stdout
    [violation] = [row for row in rows(result.stdout) if len(row) == 5]
    assert violation[:3] == ["read models", "B", ""]
    assert "balance_in_cents is 1, the events give 200" in violation[4]
