"""The audit re-derives every account from the log and catches corrupted storage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from sqlalchemy import delete, text, update

from bank import Account, BankApplication
from bank.audit import AuditReport, audit
from bank.commands import Deposit, Transfer, Withdraw
from bank.projections import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv


@pytest.fixture
def app(db_env: BankEnv) -> Iterator[BankApplication]:
    """A bank on each real database that takes a snapshot every third event."""
    with BankApplication(env={**db_env, "SNAPSHOT_INTERVAL": "3"}) as application:
        yield application


@pytest.fixture
def ledger(app: BankApplication) -> Ledger:
    """The bank's read models."""
    return Ledger(app)


@pytest.fixture
def trading(app: BankApplication) -> BankApplication:
    """A bank with every kind of event: A ends at 4525, B at -250, C closed."""
    app.open_account("alice@example.com", "A")
    app.open_account("bob@example.com", "B")
    app.open_account("alice@example.com", "C")
    app.deposit("A", 10_000, reference="salary")
    app.withdraw("A", 2_500)
    app.transfer("A", "B", 3_000)
    app.set_overdraft_limit("B", 1_000)
    app.withdraw("B", 3_800)  # into the overdraft: -800
    app.deposit("C", 500, idempotency_key="pay-C")
    app.deposit("C", 500, idempotency_key="pay-C")  # a retry stores nothing
    app.transfer("C", "B", 500)
    app.close_account("C")
    app.execute_batch([Deposit("A", 100), Transfer("A", "B", 50), Withdraw("A", 25)])
    return app


def failed_checks(report: AuditReport) -> set[str]:
    """The names of the checks that found violations."""
    return {check.name for check in report.checks if check.violations}


def messages(report: AuditReport) -> list[str]:
    """Every violation's sentence, in report order."""
    return [violation.message for violation in report.violations]


def new_event(
    kind: type[Account.Event], account_id: str, version: int, **fields: Any
) -> Account.Event:
    """An event as the domain would have recorded it, built by hand."""
    return kind(
        originator_id=Account.create_id(account_id),
        originator_version=version,
        timestamp=datetime_now_with_tzinfo(),
        **fields,
    )


def store_directly(
    app: BankApplication, kind: type[Account.Event], account_id: str, **fields: Any
) -> int:
    """Put an event in the store as the next of its account, bypassing every rule."""
    version = app.get_account(account_id).version + 1
    app.events.put([new_event(kind, account_id, version, **fields)])
    return version


def test_a_bank_with_every_kind_of_event_passes(
    trading: BankApplication, ledger: Ledger
) -> None:
    report = audit(trading, ledger)

    assert report.violations == []
    assert report.clean
    assert all(check.passed for check in report.checks)
    assert (report.accounts, report.events, report.transfers) == (3, 17, 3)
    assert report.total_balance_in_cents == 4_525 - 250
    assert report.total_deposits_in_cents == 10_600
    assert report.total_withdrawals_in_cents == 6_325
    examined = {check.name: check.examined for check in report.checks}
    assert examined["read models"] == "3 view rows, 17 statement lines"
    assert examined["snapshots"] == "3 accounts, 5 snapshots"


def test_lowering_a_limit_below_an_existing_debt_is_no_violation(
    app: BankApplication, ledger: Ledger
) -> None:
    app.open_account("a@example.com", "A")
    app.set_overdraft_limit("A", 1_000)
    app.withdraw("A", 800)

    app.set_overdraft_limit("A", 0)

    assert audit(app, ledger).clean
    assert app.get_balance("A") == -800


def test_without_a_ledger_the_read_models_are_not_checked(
    trading: BankApplication,
) -> None:
    report = audit(trading)

    [read_models] = [check for check in report.checks if check.name == "read models"]
    assert not read_models.ran
    assert report.clean


def test_a_view_row_with_a_wrong_balance_fails(
    trading: BankApplication, ledger: Ledger
) -> None:
    views = ledger.projection.accounts
    ledger.projection.catch_up()
    with ledger.projection.engine.begin() as db:
        db.execute(
            update(views)
            .where(views.c.account_id == "A")
            .values(balance_in_cents=999_999)
        )

    report = audit(trading, ledger)

    assert failed_checks(report) == {"read models"}
    [violation] = report.violations
    assert violation.account_id == "A"
    assert violation.message == (
        "Account A: the accounts view row differs from the events: "
        "balance_in_cents is 999999, the events give 4525."
    )


def test_a_removed_statement_line_fails(
    trading: BankApplication, ledger: Ledger
) -> None:
    lines = ledger.projection.statement_lines
    ledger.projection.catch_up()
    with ledger.projection.engine.begin() as db:
        db.execute(delete(lines).where(lines.c.account_id == "B", lines.c.version == 4))

    report = audit(trading, ledger)

    assert failed_checks(report) == {"read models"}
    assert messages(report) == [
        "Account B: the withdrawal event of version 4 has no statement line."
    ]


def test_half_a_transfer_fails(trading: BankApplication, ledger: Ledger) -> None:
    version = store_directly(
        trading,
        Account.TransferSent,
        "A",
        transfer_id="lone-half",
        to_account_id="B",
        amount_in_cents=700,
    )

    report = audit(trading, ledger)

    assert failed_checks(report) == {"transfers", "money"}
    transfer, money = report.violations
    assert (transfer.account_id, transfer.version, transfer.transfer_id) == (
        "A",
        version,
        "lone-half",
    )
    assert transfer.message == (
        "Transfer lone-half: account A sent 700 cents to B, which never received "
        "them (no TransferReceived)."
    )
    assert money.message == (
        "The balances add up to 3575 cents, but deposits minus withdrawals are "
        "4275 cents (10600 - 6325): transfers net to -700 cents instead of 0."
    )


def test_transfer_halves_that_disagree_on_the_amount_fail(
    trading: BankApplication, ledger: Ledger
) -> None:
    store_directly(
        trading,
        Account.TransferSent,
        "A",
        transfer_id="uneven",
        to_account_id="B",
        amount_in_cents=700,
    )
    store_directly(
        trading,
        Account.TransferReceived,
        "B",
        transfer_id="uneven",
        from_account_id="A",
        amount_in_cents=600,
    )

    report = audit(trading, ledger)

    assert failed_checks(report) == {"transfers", "money"}
    assert report.violations[0].message == (
        "Transfer uneven: 700 cents were sent but 600 received, so it nets to "
        "-100 cents instead of 0."
    )


def test_a_debit_below_the_overdraft_floor_fails(
    trading: BankApplication, ledger: Ledger
) -> None:
    version = store_directly(trading, Account.Withdrawn, "B", amount_in_cents=10_000)

    report = audit(trading, ledger)

    assert failed_checks(report) == {"overdraft"}
    [violation] = report.violations
    assert (violation.account_id, violation.version) == ("B", version)
    assert violation.message == (
        f"Account B: Withdrawn of 10000 cents (version {version}) took the balance "
        "to -10250 cents, below its floor of -1000 cents (overdraft limit 1000)."
    )


def test_a_corrupt_snapshot_fails(trading: BankApplication, ledger: Ledger) -> None:
    tampered = trading.get_account("A")
    tampered.balance_in_cents += 1_000_000
    assert trading.snapshots is not None
    trading.snapshots.put([Account.Snapshot.take(tampered)])

    report = audit(trading, ledger)

    assert failed_checks(report) == {"snapshots"}
    assert messages(report) == [
        "Account A: the repository rebuilds version 7 differently from the events: "
        "balance_in_cents is 1004525, the events give 4525.",
        "Account A: the snapshot of version 7 differs from the events: "
        "balance_in_cents is 1004525, the events give 4525.",
    ]


def test_a_corrupt_old_snapshot_that_only_time_travel_reads_fails(
    trading: BankApplication, ledger: Ledger
) -> None:
    tampered = trading.get_account("A", version=2)
    tampered.balance_in_cents = -1
    assert trading.snapshots is not None
    trading.snapshots.put([Account.Snapshot.take(tampered)])

    report = audit(trading, ledger)

    assert trading.get_account("A", version=2).balance_in_cents == -1
    assert failed_checks(report) == {"snapshots"}
    [violation] = report.violations
    assert (violation.account_id, violation.version) == ("A", 2)
    assert "balance_in_cents is -1, the events give 10000" in violation.message


def test_a_deleted_event_leaves_a_gap_in_the_versions(
    trading: BankApplication, ledger: Ledger, db_env: BankEnv
) -> None:
    ledger.projection.catch_up()
    withdrawn = next(
        notification.id
        for notification in trading.recorder.select_notifications(1, 100)
        if notification.originator_id == Account.create_id("A")
        and notification.originator_version == 3
    )
    schema = db_env.get("SQLALCHEMY_SCHEMA")
    table = f"{schema}.bank_events" if schema else "bank_events"
    with ledger.projection.engine.begin() as db:
        db.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": withdrawn})

    report = audit(trading, ledger)

    assert failed_checks(report) == {"streams", "read models", "snapshots"}
    assert report.violations[0].message == (
        "Account A: TransferSent has version 4 but follows version 2; versions "
        "must run on without gaps."
    )
    assert (
        "Account A: statement line 3 has no event of that version in the log."
        in messages(report)
    )


def test_an_event_before_its_accounts_opening_is_reported_not_raised(
    trading: BankApplication, ledger: Ledger
) -> None:
    ghost = new_event(Account.Deposited, "ghost", 1, amount_in_cents=5, reference="")
    trading.events.put([ghost])

    report = audit(trading, ledger)

    assert failed_checks(report) == {"streams", "read models"}
    assert report.violations[0].message == (
        f"Stream {ghost.originator_id}: Deposited (version 1) comes before any "
        "Opened event."
    )
    assert messages(report)[1].startswith("The projection cannot catch up: ")
