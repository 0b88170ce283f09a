"""Read models follow the log exactly once; the past can be read at any moment."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from bank import AccountNotFoundError, BankApplication, InvalidCommandError
from bank.domain import ACCOUNT_EVENT_TYPES
from bank.projections import STATEMENT_KINDS, Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv


@pytest.fixture
def ledger(app: BankApplication) -> Ledger:
    """The read models of the bank on each real database."""
    return Ledger(app)


def _statement(ledger: Ledger, account_id: str) -> list[tuple[Any, ...]]:
    lines = ledger.statement(account_id).items
    return [
        (
            line["kind"],
            line["amount_in_cents"],
            line["balance_after_in_cents"],
            line["counterparty_account_id"],
        )
        for line in lines
    ]


def test_every_kind_of_account_event_has_a_kind_of_statement_line() -> None:
    assert set(STATEMENT_KINDS) == set(ACCOUNT_EVENT_TYPES.values())


def test_a_query_after_a_command_sees_it(app: BankApplication, ledger: Ledger) -> None:
    app.open_account("a@example.com", "A")

    app.deposit("A", 250)

    view = ledger.account_view("A")
    assert view is not None
    assert (view["balance_in_cents"], view["version"]) == (250, 2)


def test_the_accounts_view_and_statement_follow_every_kind_of_event(
    app: BankApplication, ledger: Ledger
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    app.deposit("A", 1000)
    app.withdraw("A", 100)
    transfer_id = app.transfer("A", "B", 300)
    app.set_overdraft_limit("B", 50)
    app.withdraw("B", 350)
    app.deposit("B", 50)
    app.close_account("B")

    assert _statement(ledger, "A") == [
        ("opened", 0, 0, None),
        ("deposit", 1000, 1000, None),
        ("withdrawal", -100, 900, None),
        ("transfer_out", -300, 600, "B"),
    ]
    assert _statement(ledger, "B") == [
        ("opened", 0, 0, None),
        ("transfer_in", 300, 300, "A"),
        ("overdraft_limit_set", 0, 300, None),
        ("withdrawal", -350, -50, None),
        ("deposit", 50, 0, None),
        ("closed", 0, 0, None),
    ]
    lines = ledger.statement("A").items
    assert lines[3]["transfer_id"] == transfer_id
    for account_id in ("A", "B"):
        account = app.get_account(account_id)
        view = ledger.account_view(account_id)
        assert view is not None
        assert (
            view["owner_email"],
            view["balance_in_cents"],
            view["overdraft_limit_in_cents"],
            view["closed"],
            view["version"],
        ) == (
            account.owner_email,
            account.balance_in_cents,
            account.overdraft_limit_in_cents,
            account.is_closed,
            account.version,
        )
        assert view["opened_at"] <= view["updated_at"]


def test_an_owners_accounts_are_listed_a_page_at_a_time(
    app: BankApplication, ledger: Ledger
) -> None:
    for account_id in ("c", "a", "b", "d"):
        app.open_account("owner@example.com", account_id)
    app.open_account("someone.else@example.com", "e")

    first = ledger.accounts_by_owner("owner@example.com", limit=3)
    rest = ledger.accounts_by_owner(
        "owner@example.com", limit=3, cursor=first.next_cursor
    )

    assert [row["account_id"] for row in first.items] == ["a", "b", "c"]
    assert [row["account_id"] for row in rest.items] == ["d"]
    assert rest.next_cursor is None
    assert ledger.accounts_by_owner("nobody@example.com").items == []


def test_a_statement_can_be_cut_by_time_and_paged(
    app: BankApplication, ledger: Ledger
) -> None:
    app.open_account("a@example.com", "A")
    for amount in (1, 2, 3, 4):
        app.deposit("A", amount)
    lines = ledger.statement("A").items
    third = lines[2]["timestamp"]

    window = ledger.statement("A", since=third, until=lines[4]["timestamp"])
    page = ledger.statement("A", limit=2, cursor="1")

    assert [line["version"] for line in window.items] == [3, 4]
    assert [line["version"] for line in page.items] == [2, 3]
    assert page.next_cursor == "3"
    with pytest.raises(InvalidCommandError):
        ledger.statement("A", since=third.replace(tzinfo=None))


def test_idempotency_records_do_not_reach_the_read_models(
    app: BankApplication, ledger: Ledger
) -> None:
    app.open_account("a@example.com", "A", idempotency_key="open-A")

    app.deposit("A", 5, idempotency_key="pay-A")

    assert [line["kind"] for line in ledger.statement("A").items] == [
        "opened",
        "deposit",
    ]


def test_a_rebuild_recreates_the_same_tables_from_the_log(
    app: BankApplication, ledger: Ledger
) -> None:
    app.open_account("a@example.com", "A")
    app.deposit("A", 700)
    before = ledger.statement("A").items

    ledger.projection.rebuild()

    assert ledger.statement("A").items == before
    assert not ledger.projection.is_rebuilding()


def test_an_interrupted_rebuild_resumes_where_it_stopped(
    app: BankApplication, ledger: Ledger
) -> None:
    app.open_account("a@example.com", "A")
    for _ in range(9):
        app.deposit("A", 1)
    expected = _statement(ledger, "A")
    ledger.projection.start_rebuild()

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ledger.projection.catch_up(batch_size=4, progress=interrupt)
    stopped_at = ledger.projection.position()
    ledger.projection.rebuild()

    assert 0 < stopped_at < 10
    assert _statement(ledger, "A") == expected


def catch_up_repeatedly(env: BankEnv, rounds: int, start: Any) -> int:
    """In a fresh process, catch the projection up in small batches, repeatedly."""
    with BankApplication(env=env) as app:
        projection = Ledger(app).projection
        start.wait(timeout=60)
        applied = 0
        for _ in range(rounds):
            applied += projection.catch_up(batch_size=7)
            time.sleep(0.005)
    return applied


@pytest.mark.slow
def test_two_projector_processes_apply_every_event_exactly_once(
    app: BankApplication, db_env: BankEnv
) -> None:
    app.open_account("a@example.com", "A")
    app.open_account("b@example.com", "B")
    Ledger(app)  # create the tables before the race
    context = multiprocessing.get_context("spawn")

    with (
        context.Manager() as manager,
        ProcessPoolExecutor(2, mp_context=context) as pool,
    ):
        start = manager.Barrier(3)
        projectors = [
            pool.submit(catch_up_repeatedly, db_env, 40, start) for _ in range(2)
        ]
        start.wait(timeout=60)
        for n in range(150):
            app.deposit("A", 2)
            if n % 3 == 0:
                app.transfer("A", "B", 1)
        applied = sum(projector.result() for projector in projectors)

    ledger = Ledger(app)
    events_so_far = applied + ledger.projection.catch_up()
    view_a, view_b = ledger.account_view("A"), ledger.account_view("B")
    assert view_a is not None
    assert view_b is not None
    assert (view_a["balance_in_cents"], view_b["balance_in_cents"]) == (250, 50)
    assert events_so_far == 2 + 150 + 2 * 50
    assert len(ledger.statement("A", limit=1000).items) == app.get_account("A").version


# Time travel.


def _moments(app: BankApplication, account_id: str) -> list[datetime]:
    return [event.timestamp for event in app.get_history(account_id)]


def test_an_account_can_be_read_as_it_was_at_any_moment(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")
    for amount in (100, 20, 3):
        app.deposit("A", amount)
    opened, first, second, third = _moments(app, "A")
    tick = timedelta(microseconds=1)

    balances = [
        app.get_account("A", as_of=moment).balance_in_cents
        for moment in (opened, first - tick, first, second, third - tick, third)
    ]

    assert balances == [0, 0, 100, 120, 120, 123]
    assert app.get_account("A", as_of=third + timedelta(days=1)).version == 4


def test_before_it_was_opened_an_account_is_not_found(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")
    opened = _moments(app, "A")[0]

    with pytest.raises(AccountNotFoundError):
        app.get_account("A", as_of=opened - timedelta(microseconds=1))
    with pytest.raises(AccountNotFoundError):
        app.get_account("nobody", as_of=datetime.now(UTC))


def test_a_moment_must_carry_a_time_zone(app: BankApplication) -> None:
    app.open_account("a@example.com", "A")

    with pytest.raises(InvalidCommandError):
        app.get_account("A", as_of=datetime(2026, 1, 1))


def test_time_travel_over_a_long_history_reads_few_events(
    app: BankApplication,
) -> None:
    app.open_account("a@example.com", "A")
    for _ in range(300):
        app.deposit("A", 1)
    middle = _moments(app, "A")[150]
    reads = _count_event_reads(app)

    account = app.get_account("A", as_of=middle)

    assert (account.version, account.balance_in_cents) == (151, 150)
    assert sum(reads) < 80


def _count_event_reads(app: BankApplication) -> list[int]:
    reads: list[int] = []
    original_get = app.events.get

    def counting_get(*args: Any, **kwargs: Any) -> Iterator[Any]:
        events = list(original_get(*args, **kwargs))
        reads.append(len(events))
        return iter(events)

    app.events.get = counting_get  # type: ignore[method-assign]
    return reads
