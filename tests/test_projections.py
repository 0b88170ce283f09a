"""Read models follow the log exactly once; the past can be read at any moment.

The holds, transfers, currencies and metadata of the ledger are given as the
events production records (tests/scenario.py), then read from the read models.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from scenario import (
    BACK,
    GONE,
    HELD,
    LAPSED,
    OLD,
    OPEN,
    PAID,
    SOON,
    TRANSFER_KEYS,
    VOID,
    deposited,
    every_new_kind_of_event,
    halves,
    opened,
    pending,
)
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    select,
)

from bank import Account, AccountNotFoundError, BankApplication, InvalidCommandError
from bank.domain import ACCOUNT_EVENT_TYPES
from bank.projections import (
    HOLD_ENDS,
    LINE_KINDS,
    STATEMENT_KINDS,
    Ledger,
    statement_kind,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from scenario import Scenario


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
    stopped_at = ledger.projection.position().notification_id
    ledger.projection.rebuild()

    assert 0 < stopped_at < 10
    assert _statement(ledger, "A") == expected


# Holds, transfers, currencies and metadata.

HOLD = Account.HoldPlaced


def _lines(ledger: Ledger, account_id: str) -> list[tuple[Any, ...]]:
    return [
        (
            line["kind"],
            line["amount_in_cents"],
            line["balance_after_in_cents"],
            line["counterparty_account_id"],
            line["transfer_id"],
        )
        for line in ledger.statement(account_id).items
    ]


def _hold_event(event_type: type[Account.Event], *, is_debit: bool) -> Any:
    """A hold event of this type and direction, as the domain records it."""
    make: Any = event_type
    extra: dict[str, Any] = (
        {"expires_at": None, "metadata": {}} if event_type is HOLD else {}
    )
    return make(
        originator_id=uuid4(),
        originator_version=2,
        timestamp=datetime_now_with_tzinfo(),
        transfer_id=OPEN,
        counterparty_account_id="B",
        amount_in_cents=1,
        is_debit=is_debit,
        **extra,
    )


def test_every_hold_event_shows_on_the_statement_by_its_direction() -> None:
    kinds = {
        (event_type, is_debit): statement_kind(
            _hold_event(event_type, is_debit=is_debit)
        )
        for event_type in (HOLD, *HOLD_ENDS)
        for is_debit in (True, False)
    }

    assert kinds == {
        (HOLD, True): ("hold_out", 0),
        (HOLD, False): ("hold_in", 0),
        (Account.HoldPosted, True): ("transfer_out", -1),
        (Account.HoldPosted, False): ("transfer_in", 1),
        (Account.HoldVoided, True): ("hold_voided", 0),
        (Account.HoldVoided, False): ("hold_voided", 0),
        (Account.HoldExpired, True): ("hold_expired", 0),
        (Account.HoldExpired, False): ("hold_expired", 0),
    }
    assert {kind for kind, _ in kinds.values()} <= set(LINE_KINDS)


def test_holds_show_on_both_statements_and_posting_moves_the_money(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    assert _lines(ledger, "A") == [
        ("opened", 0, 0, None, None),
        ("deposit", 1000, 1000, None, None),
        ("transfer_out", -10, 990, "B", OLD),
        ("hold_out", 0, 990, "B", HELD),
        ("transfer_out", -200, 790, "B", HELD),
        ("hold_out", 0, 790, "B", VOID),
        ("hold_voided", 0, 790, "B", VOID),
        ("hold_out", 0, 790, "B", GONE),
        ("hold_expired", 0, 790, "B", GONE),
        ("hold_out", 0, 790, "B", LAPSED),
        ("hold_out", 0, 790, "B", OPEN),
        ("transfer_out", -100, 690, "B", PAID),
        ("transfer_in", 60, 750, "B", BACK),
    ]
    assert _lines(ledger, "B") == [
        ("opened", 0, 0, None, None),
        ("transfer_in", 10, 10, "A", OLD),
        ("hold_in", 0, 10, "A", HELD),
        ("transfer_in", 200, 210, "A", HELD),
        ("hold_in", 0, 210, "A", VOID),
        ("hold_voided", 0, 210, "A", VOID),
        ("hold_in", 0, 210, "A", GONE),
        ("hold_expired", 0, 210, "A", GONE),
        ("hold_in", 0, 210, "A", LAPSED),
        ("hold_in", 0, 210, "A", OPEN),
        ("transfer_in", 100, 310, "A", PAID),
        ("transfer_out", -60, 250, "A", BACK),
    ]


def test_statement_lines_show_the_metadata_their_events_carry(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    metadata = [line["metadata"] for line in ledger.statement("A").items]

    assert metadata[:5] == [{}, {"invoice": "42"}, {}, {"order": "7"}, {}]
    assert metadata[11] == {"note": "rent"}
    assert [line["metadata"] for line in ledger.statement("B").items][10] == {
        "note": "rent"
    }


def test_an_accounts_transfers_are_listed_oldest_first_with_their_status(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    listed = ledger.transfers("B").items

    assert [(item["transfer_id"], item["status"]) for item in listed] == [
        (OLD, "posted"),
        (HELD, "posted"),
        (VOID, "voided"),
        (GONE, "expired"),
        (LAPSED, "expired"),  # lapsed: it reads expired before Expired is recorded
        (OPEN, "pending"),
        (PAID, "posted"),
        (BACK, "posted"),
    ]
    assert ledger.transfers("A").items == listed
    assert set(listed[0]) == TRANSFER_KEYS
    held, paid, back = listed[1], listed[6], listed[7]
    assert (held["amount_in_cents"], held["posted_amount_in_cents"]) == (300, 200)
    assert held["metadata"] == {"order": "7"}
    assert held["expires_at"] > held["created_at"]
    assert (paid["reversed_amount_in_cents"], paid["metadata"]) == (
        60,
        {"note": "rent"},
    )
    assert (back["from_account_id"], back["to_account_id"]) == ("B", "A")
    assert (back["reverses_transfer_id"], back["amount_in_cents"]) == (PAID, 60)
    assert [item["currency"] for item in ledger.transfers("F").items] == ["EUR"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", [OPEN]),
        ("expired", [GONE, LAPSED]),
        ("voided", [VOID]),
        ("posted", [OLD, HELD, PAID, BACK]),
    ],
)
def test_transfers_can_be_listed_by_status_as_of_now(
    stored_bank: Scenario, ledger: Ledger, status: str, expected: list[str]
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    listed = ledger.transfers("A", status=status).items

    assert [item["transfer_id"] for item in listed] == expected


def test_an_accounts_transfers_are_listed_a_page_at_a_time(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    first = ledger.transfers("A", limit=3)
    second = ledger.transfers("A", limit=3, cursor=first.next_cursor)
    last = ledger.transfers("A", limit=3, cursor=second.next_cursor)

    assert [item["transfer_id"] for item in first.items] == [OLD, HELD, VOID]
    assert [item["transfer_id"] for item in second.items] == [GONE, LAPSED, OPEN]
    assert [item["transfer_id"] for item in last.items] == [PAID, BACK]
    assert isinstance(first.next_cursor, str)
    assert last.next_cursor is None
    assert ledger.transfers("nobody").items == []


def test_a_transfer_made_before_transfer_aggregates_reads_as_posted(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(opened("A"), opened("B"), deposited("A", 50))
    stored_bank.given(*halves(OLD, "A", "B", 20))

    view = ledger.transfer_view(OLD)

    assert view is not None
    assert view == {
        "transfer_id": OLD,
        "from_account_id": "A",
        "to_account_id": "B",
        "currency": "USD",
        "amount_in_cents": 20,
        "status": "posted",
        "posted_amount_in_cents": 20,
        "reversed_amount_in_cents": 0,
        "reverses_transfer_id": None,
        "metadata": {},
        "created_at": stored_bank.app.get_history("A")[2].timestamp,
        "expires_at": None,
    }
    assert ledger.transfer_view(HELD) is None


def test_the_owner_listing_counts_only_holds_that_have_not_lapsed(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())

    listed = ledger.accounts_by_owner("owner@example.com").items
    stored = ledger.projection.accounts
    with ledger.projection.engine.connect() as db:
        recorded = db.execute(
            select(stored.c.pending_debits_in_cents).where(stored.c.account_id == "A")
        ).scalar_one()

    assert [
        (
            row["account_id"],
            row["currency"],
            row["balance_in_cents"],
            row["pending_debits_in_cents"],
            row["pending_credits_in_cents"],
        )
        for row in listed
    ] == [
        ("A", "USD", 750, 30, 0),
        ("B", "USD", 250, 0, 30),
        ("E", "EUR", 495, 0, 0),
        ("F", "EUR", 5, 0, 0),
    ]
    assert recorded == 70  # LAPSED's 40 stays until its HoldExpired is recorded
    view = ledger.account_view("B")
    assert view is not None
    assert view["pending_credits_in_cents"] == 30


def test_lapsed_transfers_are_found_for_expiry(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    now = datetime_now_with_tzinfo()
    stored_bank.given(*pending(SOON, "A", "B", 1, expires_at=now + timedelta(hours=2)))
    tomorrow = now + timedelta(days=1)

    assert ledger.lapsed_transfer_ids(now) == [LAPSED]
    assert ledger.lapsed_transfer_ids(now - timedelta(days=1)) == []
    assert ledger.lapsed_transfer_ids(tomorrow) == [LAPSED, SOON]
    assert ledger.lapsed_transfer_ids(tomorrow, limit=1) == [LAPSED]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"account_id": "A", "status": "lost"}, "status"),
        ({"account_id": "A", "cursor": "next"}, "cursor"),
        ({"account_id": "A", "cursor": "9" * 20}, "cursor"),
        ({"account_id": "no spaces"}, "account_id"),
    ],
)
def test_a_bad_transfers_query_is_refused_naming_the_field(
    stored_bank: Scenario, ledger: Ledger, query: dict[str, Any], field: str
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    events = stored_bank.event_count()

    with pytest.raises(InvalidCommandError) as refusal:
        ledger.transfers(**query)

    assert refusal.value.details["field"] == field
    assert stored_bank.event_count() == events


def test_with_a_cipher_key_metadata_is_sealed_in_the_read_models(
    db_env: BankEnv,
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with BankApplication(env={**db_env, "BANK_CIPHER_KEY": key}) as app:
        app.open_account("a@example.com", "A")
        app.open_account("b@example.com", "B")
        app.deposit("A", 100, metadata={"secret": "salary"})
        transfer_id = app.transfer("A", "B", 10, metadata={"secret": "gift"})
        ledger = Ledger(app)

        lines = ledger.statement("A").items
        transfer = ledger.transfer_view(transfer_id)
        tables = ledger.projection.tables
        with ledger.projection.engine.connect() as db:
            stored = [
                *db.execute(select(tables.statement_lines.c.metadata)).scalars(),
                *db.execute(select(tables.transfers.c.metadata)).scalars(),
            ]

    assert [line["metadata"] for line in lines] == [
        {},
        {"secret": "salary"},
        {"secret": "gift"},
    ]
    assert transfer is not None
    assert transfer["metadata"] == {"secret": "gift"}
    sealed = [text for text in stored if text is not None]
    assert (
        len(sealed) == 4
    )  # A's deposit and transfer_out, B's transfer_in, the transfer
    assert all(text.startswith("sealed:") for text in sealed)
    assert not any("salary" in text or "gift" in text for text in sealed)


def _dump(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table, in a stable order."""
    with ledger.projection.engine.connect() as db:
        return {
            table.name: sorted(
                tuple(map(str, row)) for row in db.execute(select(table)).all()
            )
            for table in ledger.projection.tables.derived
        }


def test_a_rebuild_from_a_log_of_every_new_event_gives_the_same_tables(
    stored_bank: Scenario, ledger: Ledger
) -> None:
    stored_bank.given(*every_new_kind_of_event())
    ledger.projection.catch_up(batch_size=7)  # the facts split over many batches
    before = _dump(ledger)

    ledger.projection.rebuild()

    assert _dump(ledger) == before
    assert all(before.values())


def _old_read_model_tables(metadata: MetaData) -> None:
    """The read-model tables as the bank made them before holds and currencies."""
    Table(
        "bank_account_views",
        metadata,
        Column("account_id", String(64), primary_key=True),
        Column("aggregate_id", String(36), nullable=False, unique=True),
        Column("owner_email", String(512), nullable=False),
        Column("owner_key", String(254), nullable=False),
        Column("balance_in_cents", BigInteger, nullable=False),
        Column("overdraft_limit_in_cents", BigInteger, nullable=False),
        Column("closed", Boolean, nullable=False),
        Column("version", Integer, nullable=False),
        Column("opened_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "bank_statement_lines",
        metadata,
        Column("account_id", String(64), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("amount_in_cents", BigInteger, nullable=False),
        Column("balance_after_in_cents", BigInteger, nullable=False),
        Column("transfer_id", String(64)),
        Column("counterparty_account_id", String(64)),
        Column("reference", String(512)),
        Column("timestamp", DateTime(timezone=True), nullable=False),
        Column("notification_id", BigInteger, nullable=False),
    )
    Table(
        "bank_projection_positions",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("rebuilding", Boolean, nullable=False),
    )


def test_a_bank_upgraded_in_place_rebuilds_its_old_read_models(
    stored_bank: Scenario, db_env: BankEnv
) -> None:
    app = stored_bank.app
    stored_bank.given(*every_new_kind_of_event())
    engine = app.factory.datastore.engine  # type: ignore[attr-defined]
    old = MetaData(schema=db_env.get("SQLALCHEMY_SCHEMA"))
    _old_read_model_tables(old)
    old.create_all(engine)
    with engine.begin() as db:  # an old projector that had read the whole log
        db.execute(
            old.tables[_qualified(old, "bank_projection_positions")].insert(),
            {
                "name": "ledger",
                "position": stored_bank.event_count(),
                "rebuilding": False,
            },
        )

    ledger = Ledger(app)

    assert _lines(ledger, "A")[4] == ("transfer_out", -200, 790, "B", HELD)
    assert ledger.statement("A").items[1]["metadata"] == {"invoice": "42"}
    assert len(ledger.transfers("A").items) == 8
    assert ledger.projection.position() == app.event_log.head()
    assert app.event_log.head().notification_id == stored_bank.event_count()
    before = _dump(ledger)
    Ledger(app)  # up to date now: a second start changes nothing
    assert _dump(ledger) == before


def _qualified(metadata: MetaData, name: str) -> str:
    return f"{metadata.schema}.{name}" if metadata.schema else name


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
    assert events_so_far == 2 + 150 + 3 * 50  # a transfer: Created, Sent, Received
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
