"""The audit re-derives the ledger from the log and catches corrupted storage.

Corruption of the log itself (holds, reversals, currencies) is given as events
(tests/scenario.py), one of them bad; corrupted read models and snapshots are
made behind the bank's back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from scenario import (
    HELD,
    OLD,
    deposited,
    every_new_kind_of_event,
    expired,
    halves,
    hold_placed,
    hold_voided,
    moved,
    opened,
    pending,
    posted,
    reversal,
    transfer_created,
    transfer_posted,
    transfer_voided,
    voided,
    withdrawn,
)
from sqlalchemy import delete, text, update

from bank import Account, BankApplication
from bank.audit import AuditReport, CurrencyTotals, audit
from bank.commands import Deposit, Transfer, Withdraw
from bank.projections import Ledger
from bank.transfers import Transfer as TransferAggregate

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from scenario import Fact, Scenario
    from sqlalchemy import Table


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
    assert report.transfer_events == 3
    assert report.total_balance_in_cents == 4_525 - 250
    assert report.total_deposits_in_cents == 10_600
    assert report.total_withdrawals_in_cents == 6_325
    examined = {check.name: check.examined for check in report.checks}
    assert examined["read models"] == (
        "3 view rows, 17 statement lines, 3 transfer rows, 0 hold rows"
    )
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
        metadata={},
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
        "The USD balances add up to 3575 cents, but deposits minus withdrawals are "
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
        metadata={},
    )
    store_directly(
        trading,
        Account.TransferReceived,
        "B",
        transfer_id="uneven",
        from_account_id="A",
        amount_in_cents=600,
        metadata={},
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
    version = store_directly(
        trading, Account.Withdrawn, "B", amount_in_cents=10_000, metadata={}
    )

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
    ghost = new_event(
        Account.Deposited, "ghost", 1, amount_in_cents=5, reference="", metadata={}
    )
    trading.events.put([ghost])

    report = audit(trading, ledger)

    assert failed_checks(report) == {"streams", "read models"}
    assert report.violations[0].message == (
        f"Stream {ghost.originator_id}: Deposited (version 1) comes before any "
        "Opened event."
    )
    assert messages(report)[1].startswith("The projection cannot catch up: ")


# Holds, reversals and currencies: the log given as events, one of them bad.

T = "00000000-0000-4000-8000-0000000000aa"
GHOST = "00000000-0000-4000-8000-0000000000bb"
A_HOLDS_500 = (opened("A"), opened("B"), deposited("A", 500))


def hold_problem(account_id: str, event: str, version: int, problem: str) -> str:
    """The sentence the audit says of one bad hold event of transfer T."""
    return (
        f"Account {account_id}: {event} (version {version}) of transfer {T} {problem}"
    )


def test_a_log_with_holds_reversals_and_two_currencies_passes(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    report = audit(stored_bank.app, ledger)

    assert report.violations == []
    assert all(check.passed for check in report.checks)
    assert report.currencies == {
        "EUR": CurrencyTotals(500, 500, 0),
        "USD": CurrencyTotals(1000, 1000, 0),
    }
    assert report.transfers == 9
    examined = {check.name: check.examined for check in report.checks}
    assert examined["holds"] == "10 holds of 5 pending transfers"
    assert examined["read models"] == (
        "4 view rows, 30 statement lines, 9 transfer rows, 4 hold rows"
    )


def test_a_bank_using_holds_and_reversals_through_its_commands_passes(
    app: BankApplication, ledger: Ledger
) -> None:
    for account_id, currency in (("A", "USD"), ("B", "USD"), ("E", "EUR")):
        app.open_account(f"{account_id}@example.com", account_id, currency=currency)
    app.open_account("f@example.com", "F", currency="EUR")
    app.deposit("A", 1_000, metadata={"source": "payroll"})
    app.deposit("E", 700)
    held = app.transfer("A", "B", 600, pending=True, timeout_seconds=3_600)
    app.post_transfer(held, 400)
    app.void_transfer(app.transfer("A", "B", 100, pending=True))
    app.transfer("A", "B", 50, pending=True)  # left pending
    paid = app.transfer("A", "B", 300, metadata={"note": "rent"})
    app.reverse_transfer(paid, 120)
    app.transfer("E", "F", 70, pending=True)

    report = audit(app, ledger)

    assert report.violations == []
    assert report.currencies["EUR"] == CurrencyTotals(700, 700, 0)
    assert app.get_account("A").balance_in_cents == 1_000 - 400 - 300 + 120


def test_a_hold_beyond_the_money_available_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, *pending(T, "A", "B", 700))

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"holds"}
    [violation] = report.violations
    assert (violation.account_id, violation.version, violation.transfer_id) == (
        "A",
        3,
        T,
    )
    assert violation.message == hold_problem(
        "A",
        "HoldPlaced",
        3,
        "holds 700 cents, which leaves -200 cents available (balance 500 + "
        "overdraft limit 0 - 700 cents on hold).",
    )


def test_a_withdrawal_of_held_money_fails_the_overdraft_check(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, *pending(T, "A", "B", 300), withdrawn("A", 400))

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"overdraft"}
    assert messages(report) == [
        "Account A: Withdrawn of 400 cents (version 4) took the balance to 100 "
        "cents, below its floor of 300 cents (overdraft limit 0, 300 cents on hold)."
    ]


@pytest.mark.parametrize(
    ("bad_end", "problem"),
    [
        (
            [*posted(T, "A", "B", 400)],
            hold_problem("A", "HoldPosted", 4, "posts 400 cents of a hold of 300."),
        ),
        (
            [
                transfer_voided(T),
                hold_voided("A", "B", 300, T, is_debit=False),
                hold_voided("B", "A", 300, T, is_debit=False),
            ],
            hold_problem(
                "A", "HoldVoided", 4, "ends its debit hold as the other direction."
            ),
        ),
        (
            [
                transfer_voided(T),
                hold_voided("A", "B", 200, T, is_debit=True),
                hold_voided("B", "A", 300, T, is_debit=False),
            ],
            hold_problem("A", "HoldVoided", 4, "releases 200 cents of a hold of 300."),
        ),
        (
            [
                transfer_voided(T),
                hold_voided("A", "E", 300, T, is_debit=True),
                hold_voided("B", "A", 300, T, is_debit=False),
            ],
            hold_problem(
                "A", "HoldVoided", 4, "names counterparty E, but the hold names B."
            ),
        ),
        (
            [*voided(T, "A", "B", 300), *voided(T, "A", "B", 300)],
            hold_problem("A", "HoldVoided", 5, "ends a hold that is not placed."),
        ),
        (
            [hold_placed("A", "B", 300, T, is_debit=True)],
            hold_problem("A", "HoldPlaced", 4, "places a second hold for it."),
        ),
    ],
    ids=[
        "posts-more",
        "wrong-direction",
        "wrong-amount",
        "wrong-party",
        "ended-twice",
        "placed-twice",
    ],
)
def test_a_hold_that_ends_otherwise_than_it_was_placed_fails(
    stored_bank: Scenario, ledger: Ledger, bad_end: list[Fact], problem: str
) -> None:
    stored_bank.given(*A_HOLDS_500, *pending(T, "A", "B", 300), *bad_end)

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"holds"}
    assert problem in messages(report)


def test_a_hold_expired_before_its_expiry_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    later = datetime_now_with_tzinfo() + timedelta(hours=1)
    stored_bank.given(
        *A_HOLDS_500,
        *pending(T, "A", "B", 300, expires_at=later),
        *expired(T, "A", "B", 300),
    )

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"holds"}
    assert [violation.transfer_id for violation in report.violations] == [T] * 3
    assert messages(report)[0].startswith(f"Transfer {T}: Expired (version 2) at ")
    assert messages(report)[0].endswith(f"but it expires at {later.isoformat()}.")


def test_a_pending_transfer_whose_holds_disagree_with_it_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(
        *A_HOLDS_500,
        transfer_created(T, "A", "B", 300, is_pending=True),
        hold_placed("A", "B", 300, T, is_debit=True),
        hold_placed("B", "A", 250, T, is_debit=False),
    )

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"holds"}
    assert messages(report) == [
        f"Transfer {T}: its credit hold on B (towards A, 250 USD cents, expiring "
        "never) disagrees with its Transfer (A to B, 300 USD cents, expiring never)."
    ]


def test_holds_that_no_transfer_records_fail(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, *pending(T, "A", "B", 300)[1:])

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"holds"}
    assert messages(report) == [
        f"Transfer {T}: its holds were placed, but no Transfer records it."
    ]


def test_posting_a_transfer_that_is_not_pending_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(
        *A_HOLDS_500,
        *pending(T, "A", "B", 300),
        *voided(T, "A", "B", 300),
        transfer_posted(T, 100),
    )

    report = audit(stored_bank.app, ledger)

    # The transfers view ends only pending transfers, so it still says voided.
    assert failed_checks(report) == {"holds", "read models"}
    assert messages(report) == [
        f"Transfer {T}: Posted (version 3) but it was voided.",
        f"Transfer {T}: its Transfer is posted (100 cents posted), but the hold on "
        "A ended by HoldVoided of 300.",
        f"Transfer {T}: the transfers view row differs from the events: status is "
        "'voided', the events give 'posted'; posted_amount_in_cents is 0, the "
        "events give 100.",
    ]


def test_reversing_more_than_was_posted_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(
        *A_HOLDS_500,
        deposited("B", 100),
        *moved(T, "A", "B", 100),
        *reversal(T, GHOST, "A", "B", 150),
    )

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"transfers"}
    assert messages(report) == [
        f"Transfer {T}: Reversed 150 cents (version 2), but only 100 of the 100 "
        "posted were left to reverse."
    ]


def test_a_reversal_of_a_transfer_no_one_made_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, *moved(T, "A", "B", 50, reverses=GHOST))

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"transfers"}
    assert messages(report) == [
        f"Transfer {T}: reverses transfer {GHOST}, which no Transfer records."
    ]


def test_a_reversal_of_a_pending_transfer_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(
        *A_HOLDS_500,
        deposited("B", 100),
        *pending(T, "A", "B", 300),
        *reversal(T, GHOST, "A", "B", 50),
    )

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"transfers"}
    assert messages(report) == [
        f"Transfer {T}: Reversed (version 2) but it is pending.",
        f"Transfer {GHOST}: reverses transfer {T}, which is pending, not posted.",
    ]


def test_a_transfer_between_two_currencies_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, opened("E", currency="EUR"))
    stored_bank.given(*halves(T, "A", "E", 100))  # made before Transfer aggregates

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"transfers", "money"}
    assert messages(report) == [
        f"Transfer {T}: it moved money from A (USD) to E (EUR); a transfer needs "
        "one currency.",
        "The EUR balances add up to 100 cents, but deposits minus withdrawals are 0 "
        "cents (0 - 0): transfers net to 100 cents instead of 0.",
        "The USD balances add up to 400 cents, but deposits minus withdrawals are "
        "500 cents (500 - 0): transfers net to -100 cents instead of 0.",
    ]


def test_halves_that_disagree_with_their_transfer_fail(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(
        *A_HOLDS_500,
        transfer_created(T, "A", "B", 100),
        *halves(T, "A", "B", 90),
    )

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"transfers"}
    assert messages(report) == [
        f"Transfer {T}: its halves moved 90 USD cents from A to B, but its Transfer "
        "says 100 USD cents from A to B."
    ]


def test_a_posted_transfer_that_no_account_recorded_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, transfer_created(T, "A", "B", 100))

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"transfers"}
    assert messages(report) == [
        f"Transfer {T}: its Transfer was created posted, but no account recorded "
        "it (no TransferSent or TransferReceived)."
    ]


def test_a_transfer_event_before_its_creation_fails_and_reaches_no_view(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*A_HOLDS_500, transfer_posted(T, 100))

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"streams"}
    assert messages(report) == [
        f"Stream {TransferAggregate.create_id(T)}: Posted (version 1) comes before "
        "any Created event."
    ]


def _corrupt(ledger: Ledger, table: Table, where: Any, **values: Any) -> None:
    """Change read-model rows behind the projection's back."""
    ledger.projection.catch_up()
    with ledger.projection.engine.begin() as db:
        db.execute(update(table).where(where).values(**values))


def test_a_transfers_view_row_with_a_wrong_status_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    transfers = ledger.projection.transfers
    _corrupt(ledger, transfers, transfers.c.transfer_id == HELD, status="voided")

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"read models"}
    [violation] = report.violations
    assert violation.transfer_id == HELD
    assert violation.message == (
        f"Transfer {HELD}: the transfers view row differs from the events: status "
        "is 'voided', the events give 'posted'."
    )


def test_a_missing_transfers_view_row_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    transfers = ledger.projection.transfers
    ledger.projection.catch_up()
    with ledger.projection.engine.begin() as db:
        db.execute(delete(transfers).where(transfers.c.transfer_id == OLD))

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"read models"}
    assert messages(report) == [f"Transfer {OLD}: it has no row in the transfers view."]


def test_an_accounts_view_row_with_wrong_pending_debits_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    views = ledger.projection.accounts
    _corrupt(ledger, views, views.c.account_id == "A", pending_debits_in_cents=30)

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"read models"}
    assert messages(report) == [
        "Account A: the accounts view row differs from the events: "
        "pending_debits_in_cents is 30, the events give 70."
    ]


def test_a_statement_line_that_lost_its_metadata_fails(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    lines = ledger.projection.statement_lines
    where = (lines.c.account_id == "A") & (lines.c.version == 2)
    _corrupt(ledger, lines, where, metadata=None)

    report = audit(stored_bank.app, ledger)

    assert failed_checks(report) == {"read models"}
    assert messages(report) == [
        "Account A: statement line 2 says deposit +1000, balance after 1000; its "
        "event says deposit +1000, balance after 1000, metadata {'invoice': '42'}."
    ]
