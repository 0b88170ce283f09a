"""bank.persistence: the library's recorder tests, compatibility, and its guarantees."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import tempfile
import threading
import time
import unittest
import uuid
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

import psycopg
import pytest
from conftest import POSTGRES_URL
from eventsourcing.persistence import (
    AggregateRecorder,
    InfrastructureFactory,
    IntegrityError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from eventsourcing.tests import persistence as library
from eventsourcing.utils import Environment

from bank import BankApplication
from bank.persistence import (
    SqlAggregateRecorder,
    SqlApplicationRecorder,
    SqlFactory,
    SqlProcessRecorder,
    SqlTrackingRecorder,
)
from bank.persistence.base import LOG_START, LogPosition
from bank.settings import with_sqlite_busy_timeout
from web.testing import libpq_url, postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv

MODULE = "bank.persistence"
STOCK_MODULE = "eventsourcing_sqlalchemy"


# The library's own recorder test cases, on a fresh SQLite file and a fresh
# PostgreSQL schema per test (their notification ids must start at 1). Their
# module imports eventsourcing.cipher, which needs pycryptodome.


class OnSQLite(unittest.TestCase):
    """A fresh SQLite file for each test."""

    def setUp(self) -> None:
        """Point the settings at a new file."""
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.env = Environment(
            env={
                "PERSISTENCE_MODULE": MODULE,
                "SQLALCHEMY_URL": f"sqlite:///{directory.name}/test.db?timeout=15",
            }
        )
        super().setUp()

    def create_factory(self) -> SqlFactory:
        """A factory on this test's database, closed after the test."""
        factory = SqlFactory(self.env)
        self.addCleanup(factory.close)
        return factory


@pytest.mark.postgres
class OnPostgres(unittest.TestCase):
    """A fresh PostgreSQL schema for each test, dropped afterwards."""

    @classmethod
    def setUpClass(cls) -> None:
        """Skip when PostgreSQL is unreachable, or fail under CI."""
        reason = postgres_unreachable_reason(POSTGRES_URL)
        if reason is not None:
            if os.environ.get("CI"):
                pytest.fail(f"{reason} (CI is set, so PostgreSQL tests may not skip)")
            raise unittest.SkipTest(reason)
        super().setUpClass()

    def setUp(self) -> None:
        """Create the schema and point the settings at it."""
        schema = f"test_{uuid.uuid4().hex[:12]}"
        _run_on_postgres(f"CREATE SCHEMA {schema}")
        self.addCleanup(_run_on_postgres, f"DROP SCHEMA {schema} CASCADE")
        self.env = Environment(
            env={
                "PERSISTENCE_MODULE": MODULE,
                "SQLALCHEMY_URL": POSTGRES_URL,
                "SQLALCHEMY_SCHEMA": schema,
            }
        )
        super().setUp()

    def create_factory(self) -> SqlFactory:
        """A factory on this test's schema, closed after the test."""
        factory = SqlFactory(self.env)
        self.addCleanup(factory.close)
        return factory


def _run_on_postgres(statement: str) -> None:
    with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
        connection.execute(statement.encode())


class MakesFactory(ABC):
    """Test cases that get their factory from a database mixin.

    Abstract, so pytest collects only the classes that name a database.
    """

    @abstractmethod
    def create_factory(self) -> SqlFactory:
        """A factory on this test's database."""


class EventsRecorderCases(MakesFactory, library.AggregateRecorderTestCase):
    """An aggregate recorder on the events table."""

    def create_recorder(self) -> AggregateRecorder:
        """The recorder under test."""
        return self.create_factory().aggregate_recorder("events")


class SnapshotsRecorderCases(MakesFactory, library.AggregateRecorderTestCase):
    """An aggregate recorder on the snapshots table."""

    def create_recorder(self) -> AggregateRecorder:
        """The recorder under test."""
        return self.create_factory().aggregate_recorder("snapshots")


class ApplicationRecorderCases(
    MakesFactory, library.ApplicationRecorderTestCase[SqlApplicationRecorder]
):
    """The application recorder."""

    def create_recorder(self) -> SqlApplicationRecorder:
        """The recorder under test."""
        return self.create_factory().application_recorder()


class TrackingRecorderCases(MakesFactory, library.TrackingRecorderTestCase):
    """The tracking recorder."""

    def create_recorder(self) -> SqlTrackingRecorder:
        """The recorder under test."""
        return self.create_factory().tracking_recorder()


class ProcessRecorderCases(MakesFactory, library.ProcessRecorderTestCase):
    """The process recorder."""

    def create_recorder(self) -> ProcessRecorder:
        """The recorder under test."""
        return self.create_factory().process_recorder()


class NonInterleavingCases(
    MakesFactory, library.NonInterleavingNotificationIDsBaseCase
):
    """Two racing writers get a block of notification ids each."""

    def create_recorder(self) -> SqlApplicationRecorder:
        """The recorder under test."""
        return self.create_factory().application_recorder()


class TrackingRecorderSubclass(SqlTrackingRecorder):
    """A tracking recorder subclass, for the factory test to ask for."""


class FactoryCases(MakesFactory, library.InfrastructureFactoryTestCase[SqlFactory]):
    """The factory found through PERSISTENCE_MODULE."""

    def expected_factory_class(self) -> type[SqlFactory]:
        """The factory class."""
        return SqlFactory

    def expected_aggregate_recorder_class(self) -> type[SqlAggregateRecorder]:
        """The aggregate recorder class."""
        return SqlAggregateRecorder

    def expected_application_recorder_class(self) -> type[SqlApplicationRecorder]:
        """The application recorder class."""
        return SqlApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[SqlTrackingRecorder]:
        """The tracking recorder class."""
        return SqlTrackingRecorder

    def tracking_recorder_subclass(self) -> type[SqlTrackingRecorder]:
        """A subclass the factory must honour."""
        return TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[SqlProcessRecorder]:
        """The process recorder class."""
        return SqlProcessRecorder


class TestSQLiteEventsRecorder(OnSQLite, EventsRecorderCases):
    """The library's aggregate recorder tests on a SQLite events table."""


class TestSQLiteSnapshotsRecorder(OnSQLite, SnapshotsRecorderCases):
    """The library's aggregate recorder tests on a SQLite snapshots table."""


class TestSQLiteApplicationRecorder(OnSQLite, ApplicationRecorderCases):
    """The library's application recorder tests on SQLite."""


class TestSQLiteTrackingRecorder(OnSQLite, TrackingRecorderCases):
    """The library's tracking recorder tests on SQLite."""


class TestSQLiteProcessRecorder(OnSQLite, ProcessRecorderCases):
    """The library's process recorder tests on SQLite."""


class TestSQLiteNonInterleaving(OnSQLite, NonInterleavingCases):
    """The library's non-interleaving notification ids test on SQLite."""


class TestSQLiteFactory(OnSQLite, FactoryCases):
    """The library's infrastructure factory tests on SQLite."""


class TestPostgresEventsRecorder(OnPostgres, EventsRecorderCases):
    """The library's aggregate recorder tests on a PostgreSQL events table."""


class TestPostgresSnapshotsRecorder(OnPostgres, SnapshotsRecorderCases):
    """The library's aggregate recorder tests on a PostgreSQL snapshots table."""


class TestPostgresApplicationRecorder(OnPostgres, ApplicationRecorderCases):
    """The library's application recorder tests on PostgreSQL, and subscribing."""

    def test_insert_subscribe(self) -> None:
        """Subscriptions see recorded and newly recorded notifications."""
        self.optional_test_insert_subscribe()


class TestPostgresTrackingRecorder(OnPostgres, TrackingRecorderCases):
    """The library's tracking recorder tests on PostgreSQL."""


class TestPostgresProcessRecorder(OnPostgres, ProcessRecorderCases):
    """The library's process recorder tests on PostgreSQL."""


class TestPostgresNonInterleaving(OnPostgres, NonInterleavingCases):
    """Two racing writes each come out of the log in one piece, on PostgreSQL.

    The library's case asks for more: that the two writes' notification ids
    don't interleave. That held while every writer locked the table; writers
    no longer do (they would all wait for each other's commit), so two
    1,000-row INSERTs may take ids from the sequence in turns. What readers
    rely on is the order of the log, which is by writing transaction: each
    write's events come out together, and in the order they were written.
    """

    def test(self) -> None:
        """Both writes are read back whole: one after the other, each in order."""
        recorder = self.create_recorder()
        first, second = self.new_originator_id(), self.new_originator_id()
        start = threading.Event()

        def write(originator_id: UUID) -> None:
            start.wait()
            recorder.insert_events(self.create_stack(originator_id))

        threads = [
            threading.Thread(target=write, args=(originator_id,))
            for originator_id in (first, second)
        ]
        for thread in threads:
            thread.start()
        start.set()
        for thread in threads:
            thread.join(30)

        # As every reader does: wait for transactions begun before now to end
        # (another test's, on the same server, would hold the log back).
        horizon = recorder.log_horizon()
        deadline = time.monotonic() + 30
        while not recorder.log_settled(horizon) and time.monotonic() < deadline:
            time.sleep(0.01)
        log = recorder.select_log(LOG_START, 3 * self.insert_num)
        streams = [notification.originator_id for _, notification in log]
        assert len(streams) == 2 * self.insert_num
        # One block per write: the stream changes once, halfway.
        assert streams[0] != streams[-1]
        assert (
            streams == [streams[0]] * self.insert_num + [streams[-1]] * self.insert_num
        )
        for stream in (first, second):
            versions = [
                notification.originator_version
                for _, notification in log
                if notification.originator_id == stream
            ]
            assert versions == list(range(self.insert_num))


class TestPostgresFactory(OnPostgres, FactoryCases):
    """The library's infrastructure factory tests on PostgreSQL."""


# Behaviour of our own, on each database in turn (conftest's db_env).


@pytest.fixture
def env(db_env: BankEnv) -> BankEnv:
    """Settings for bank.persistence on each real database in turn."""
    url = with_sqlite_busy_timeout(db_env["SQLALCHEMY_URL"], "15")
    return {**db_env, "PERSISTENCE_MODULE": MODULE, "SQLALCHEMY_URL": url}


@pytest.fixture
def factory(env: BankEnv) -> Iterator[SqlFactory]:
    """A factory for the bank's tables, closed afterwards."""
    factory = SqlFactory(Environment("Bank", env))
    yield factory
    factory.close()


@pytest.fixture
def stock_factory(env: BankEnv) -> Iterator[InfrastructureFactory[Any]]:
    """An eventsourcing_sqlalchemy factory on the same database."""
    factory = InfrastructureFactory.construct(
        Environment("Bank", {**env, "PERSISTENCE_MODULE": STOCK_MODULE})
    )
    yield factory
    factory.datastore.engine.dispose()  # type: ignore[attr-defined]  # it has no close()


def event(originator_id: UUID, version: int) -> StoredEvent:
    """A stored event with some state."""
    return StoredEvent(originator_id, version, "test:Event", b'{"amount": 1}')


def test_the_module_is_found_through_persistence_module(env: BankEnv) -> None:
    factory = InfrastructureFactory.construct(Environment("Bank", env))
    try:
        assert type(factory) is SqlFactory
    finally:
        factory.close()


def test_a_bank_written_by_eventsourcing_sqlalchemy_carries_on_with_bank_persistence(
    env: BankEnv,
) -> None:
    fast_env = {**env, "SNAPSHOT_INTERVAL": "3"}
    stock_env = {**fast_env, "PERSISTENCE_MODULE": STOCK_MODULE}

    with BankApplication(env=stock_env) as app:
        alice = app.open_account("alice@example.com")
        app.deposit(alice, 100)
        app.deposit(alice, 20)  # version 3: a snapshot
        app.deposit(alice, 3)
    with BankApplication(env=fast_env) as app:
        assert type(app.factory) is SqlFactory
        assert app.get_balance(alice) == 123
        assert app.get_account(alice, version=2).balance_in_cents == 100
        app.deposit(alice, 1000)
        app.deposit(alice, 2000)  # version 6: a snapshot
        bob = app.open_account("bob@example.com")
        app.transfer(alice, bob, 23)
    with BankApplication(env=stock_env) as app:
        assert app.get_balance(alice) == 3100
        assert app.get_balance(bob) == 23
        assert [type(e).__name__ for e in app.get_history(alice)] == [
            "Opened",
            *["Deposited"] * 5,
            "TransferSent",
        ]
        assert app.snapshots is not None
        snapshots = list(app.snapshots.get(app.get_account(alice).id))
        assert [s.originator_version for s in snapshots] == [3, 6]
        app.deposit(bob, 7)
    with BankApplication(env=fast_env) as app:
        assert app.get_balance(bob) == 30
        notifications = app.recorder.select_notifications(None, 100)
        # 4 + 3 + Transfer.Created, TransferSent, TransferReceived + 1.
        assert [n.id for n in notifications] == list(range(1, 12))
        positions = [position for position, _ in app.event_log.events()]
        assert [p.notification_id for p in positions] == [
            n.id for n in notifications if "Idempotency" not in n.topic
        ]
        # Events from before the log recorded transactions come first, as 0.
        assert positions[0].transaction_id == 0
        assert isinstance(app.factory, SqlFactory)
        assert (positions[-1].transaction_id > 0) == app.factory.database.is_postgres


@pytest.mark.filterwarnings("ignore:This declarative base already contains a class")
def test_the_notification_log_and_tracking_are_shared_with_eventsourcing_sqlalchemy(
    factory: SqlFactory, stock_factory: InfrastructureFactory[Any]
) -> None:
    # Not the stock process recorder: on PostgreSQL it ignores SQLALCHEMY_SCHEMA
    # for the events table (eventsourcing-sqlalchemy 1.0.1).
    stock, stock_tracking = (
        stock_factory.application_recorder(),
        stock_factory.tracking_recorder(),
    )
    fast = factory.process_recorder()
    a, b = uuid.uuid4(), uuid.uuid4()

    assert stock.insert_events([event(a, 1), event(a, 2)]) == [1, 2]
    stock_tracking.insert_tracking(Tracking("up", 1))
    assert fast.insert_events([event(b, 1)], tracking=Tracking("up", 2)) == [3]
    with pytest.raises(IntegrityError):
        stock_tracking.insert_tracking(Tracking("up", 2))
    with pytest.raises(IntegrityError):
        fast.insert_events([event(b, 2)], tracking=Tracking("up", 2))
    assert stock.insert_events([event(b, 2)]) == [4]
    stock_tracking.insert_tracking(Tracking("up", 3))

    assert fast.max_tracking_id("up") == stock_tracking.max_tracking_id("up") == 3
    assert fast.select_events(a) == stock.select_events(a) == [event(a, 1), event(a, 2)]
    assert fast.select_events(b) == stock.select_events(b) == [event(b, 1), event(b, 2)]
    assert fast.select_notifications(None, 10) == stock.select_notifications(None, 10)
    assert [n.id for n in fast.select_notifications(None, 10)] == [1, 2, 3, 4]
    assert fast.max_notification_id() == stock.max_notification_id() == 4


def test_originator_ids_are_stored_as_uuid_type_stores_them(
    env: BankEnv, factory: SqlFactory, stock_factory: InfrastructureFactory[Any]
) -> None:
    stock_factory.application_recorder().insert_events([event(uuid.uuid4(), 1)])
    fast = factory.application_recorder()
    fast.insert_events([event(uuid.uuid4(), 1)])

    with fast.transaction() as connection:
        if factory.database.is_postgres:
            # A native uuid column: the value's type is the column's.
            table = _table(env, "bank_events")
            sql = f"SELECT DISTINCT pg_typeof(originator_id)::text FROM {table}"
            assert connection.execute(sql).fetchall() == [("uuid",)]
        else:
            # BINARY(16): the UUID's 16 raw bytes, not its text.
            sql = (
                "SELECT DISTINCT typeof(originator_id), length(originator_id) "
                "FROM bank_events"
            )
            assert connection.execute(sql).fetchall() == [("blob", 16)]


def test_events_of_several_aggregates_are_inserted_all_or_none(
    factory: SqlFactory,
) -> None:
    recorder = factory.application_recorder()
    a, b = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events([event(a, 1)])

    with pytest.raises(IntegrityError):
        recorder.insert_events([event(b, 1), event(b, 2), event(a, 1)])

    assert recorder.select_events(b) == []
    assert recorder.max_notification_id() == 1
    ids = recorder.insert_events([event(b, 1), event(a, 2)])
    # PostgreSQL's sequence doesn't roll back: the failed write leaves a gap.
    assert ids == ([5, 6] if factory.database.is_postgres else [2, 3])


def test_a_stale_tracking_position_leaves_the_events_unwritten(
    factory: SqlFactory,
) -> None:
    recorder = factory.process_recorder()
    recorder.insert_tracking(Tracking("up", 5))
    a = uuid.uuid4()

    with pytest.raises(IntegrityError):
        recorder.insert_events([event(a, 1)], tracking=Tracking("up", 5))

    assert recorder.select_events(a) == []
    assert recorder.max_notification_id() is None


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_on_sqlite_a_writer_waits_for_an_open_write_so_ids_commit_in_order(
    factory: SqlFactory,
) -> None:
    recorder = factory.application_recorder()
    later_ids: list[int] = []

    def write() -> None:
        later_ids.extend(recorder.insert_events([event(uuid.uuid4(), 1)]) or [])

    writer = threading.Thread(target=write)

    with recorder.transaction():
        first_ids = recorder.insert_events([event(uuid.uuid4(), 1)])
        writer.start()
        writer.join(0.5)
        assert writer.is_alive(), "a second writer must wait for the events table"
    writer.join(15)

    assert first_ids == [1]
    assert later_ids == [2]
    assert [position for position, _ in recorder.select_log(LOG_START, 10)] == [
        LogPosition(0, 1),
        LogPosition(0, 2),
    ]


@pytest.mark.parametrize(
    "db_env", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_on_postgres_a_write_that_commits_first_is_read_after_an_older_open_one(
    factory: SqlFactory,
) -> None:
    recorder = factory.application_recorder()
    first, later = uuid.uuid4(), uuid.uuid4()

    with recorder.transaction():
        assert recorder.insert_events([event(first, 1)]) == [1]
        # Writers don't wait for each other: this one commits while the
        # first is still open...
        writer = threading.Thread(
            target=recorder.insert_events, args=([event(later, 1)],)
        )
        writer.start()
        writer.join(15)
        assert not writer.is_alive(), "writers must not wait for each other"
        # ...but readers don't see it yet: the open transaction is older, so
        # its event comes first in the log, and a reader that took the later
        # one now would pass the first by, for good.
        assert recorder.select_log(LOG_START, 10) == []
        assert recorder.log_head() == LOG_START

    # (As readers do: wait for any other test's transaction on the server.)
    horizon = recorder.log_horizon()
    deadline = time.monotonic() + 30
    while not recorder.log_settled(horizon) and time.monotonic() < deadline:
        time.sleep(0.01)
    log = recorder.select_log(LOG_START, 10)
    assert [notification.originator_id for _, notification in log] == [first, later]
    assert [notification.id for _, notification in log] == [1, 2]
    assert log[0][0] < log[1][0] == recorder.log_head()


def test_nested_transactions_join_the_outer_one_and_roll_back_as_a_whole(
    env: BankEnv, factory: SqlFactory
) -> None:
    recorder = factory.process_recorder()
    a = uuid.uuid4()

    class UndoError(Exception):
        pass

    with pytest.raises(UndoError), recorder.transaction() as outer:  # noqa: PT012
        recorder.insert_events([event(a, 1)])
        with recorder.transaction() as inner:
            assert inner is outer
            recorder.insert_tracking(Tracking("up", 1))
            outer.execute(f"CREATE TABLE {_table(env, 'side')} (n INTEGER)")
        # The inner block's end committed nothing: another connection sees none of it.
        assert _in_another_thread(lambda: recorder.select_events(a)) == []
        raise UndoError

    assert recorder.select_events(a) == []
    assert recorder.max_tracking_id("up") is None
    with recorder.transaction() as connection:
        connection.execute(f"CREATE TABLE {_table(env, 'side')} (n INTEGER)")


def test_a_transaction_in_which_a_recorder_call_failed_does_not_commit(
    factory: SqlFactory,
) -> None:
    recorder = factory.process_recorder()
    a = uuid.uuid4()
    recorder.insert_tracking(Tracking("up", 1))

    with pytest.raises(ProgrammingError), recorder.transaction():  # noqa: PT012
        recorder.insert_events([event(a, 1)])
        with pytest.raises(IntegrityError):
            recorder.insert_tracking(Tracking("up", 1))

    assert recorder.select_events(a) == []


def test_a_transaction_commits_recorder_calls_and_its_own_sql_together(
    env: BankEnv, factory: SqlFactory
) -> None:
    recorder = factory.process_recorder()
    table, p = _table(env, "totals"), factory.database.param
    with recorder.transaction() as connection:
        connection.execute(f"CREATE TABLE {table} (total BIGINT)")

    with recorder.transaction() as connection:
        recorder.insert_tracking(Tracking("up", 1))
        connection.execute(f"INSERT INTO {table} (total) VALUES ({p})", (42,))
        ids = recorder.insert_events([event(uuid.uuid4(), 1)])

    assert ids == [1]
    assert recorder.max_tracking_id("up") == 1
    with recorder.transaction() as connection:
        assert connection.execute(f"SELECT total FROM {table}").fetchall() == [(42,)]


def test_connections_go_back_to_the_pool_as_sqlalchemy_lent_them(
    env: BankEnv, factory: SqlFactory
) -> None:
    recorder = factory.process_recorder()
    table = _table(env, "side")
    with recorder.transaction() as connection:
        connection.execute(f"CREATE TABLE {table} (n INTEGER)")
    recorder.insert_events([event(uuid.uuid4(), 1)])
    recorder.max_notification_id()

    # Other code shares the engine (the read models do): its transactions
    # must still be transactions, on whichever pooled connection it gets.
    engine = factory.database.engine
    with pytest.raises(ZeroDivisionError), engine.begin() as connection:  # noqa: PT012
        connection.exec_driver_sql(f"INSERT INTO {table} (n) VALUES (1)")
        _ = 1 / 0

    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT n FROM {table}").fetchall()
    assert rows == []


def _table(env: BankEnv, name: str) -> str:
    schema = env.get("SQLALCHEMY_SCHEMA")
    return f"{schema}.{name}" if schema else name


def _in_another_thread(function: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function).result(timeout=15)


def project(env: BankEnv, last_id: int, start: Any) -> int:
    """Be a projector: apply notifications 1..last_id to a read model, with tracking."""
    try:
        factory = SqlFactory(Environment("Bank", env))
        recorder = factory.tracking_recorder()
    except BaseException:
        start.abort()  # so the rival fails now rather than at the barrier's timeout
        raise
    p = factory.database.param
    insert = f"INSERT INTO {_table(env, 'applied')} (notification_id) VALUES ({p})"
    applied = 0
    try:
        start.wait(timeout=60)
        for notification_id in range(1, last_id + 1):
            try:
                with recorder.transaction() as connection:
                    recorder.insert_tracking(Tracking("upstream", notification_id))
                    connection.execute(insert, (notification_id,))
            except IntegrityError:
                continue  # the other projector got there first
            applied += 1
    finally:
        factory.close()
    return applied


class _Projectors:
    """Two or more projectors racing over the same notifications."""

    count: ClassVar[int] = 2
    last_id: ClassVar[int] = 100

    @staticmethod
    def prepare(factory: SqlFactory, env: BankEnv) -> None:
        factory.tracking_recorder()
        with factory.process_recorder().transaction() as connection:
            table = _table(env, "applied")
            connection.execute(
                f"CREATE TABLE {table} (notification_id BIGINT NOT NULL)"
            )

    @staticmethod
    def check(factory: SqlFactory, env: BankEnv, applied: list[int]) -> None:
        recorder = factory.tracking_recorder()
        with recorder.transaction() as connection:
            rows = connection.execute(
                f"SELECT notification_id, COUNT(*) FROM {_table(env, 'applied')} "
                "GROUP BY notification_id"
            ).fetchall()
        counts = dict(rows)
        assert max(counts.values()) == 1, "a notification was applied twice"
        assert sum(applied) == len(counts), "a failed projection left rows behind"
        assert recorder.max_tracking_id("upstream") == _Projectors.last_id


def test_projector_threads_never_both_apply_a_notification(
    env: BankEnv, factory: SqlFactory
) -> None:
    _Projectors.prepare(factory, env)
    start = threading.Barrier(_Projectors.count)

    with ThreadPoolExecutor(_Projectors.count) as pool:
        futures = [
            pool.submit(project, env, _Projectors.last_id, start)
            for _ in range(_Projectors.count)
        ]
        applied = [future.result() for future in futures]

    _Projectors.check(factory, env, applied)


@pytest.mark.slow
def test_projector_processes_never_both_apply_a_notification(
    env: BankEnv, factory: SqlFactory
) -> None:
    _Projectors.prepare(factory, env)
    context = multiprocessing.get_context("spawn")

    with (
        context.Manager() as manager,
        ProcessPoolExecutor(_Projectors.count, mp_context=context) as pool,
    ):
        start = manager.Barrier(_Projectors.count)
        futures = [
            pool.submit(project, env, _Projectors.last_id, start)
            for _ in range(_Projectors.count)
        ]
        applied = [future.result() for future in futures]

    _Projectors.check(factory, env, applied)


def test_sqlite_runs_in_wal_mode_with_the_urls_busy_timeout(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}?timeout=0.2"
    factory = SqlFactory(Environment("Bank", {"SQLALCHEMY_URL": url}))
    recorder = factory.application_recorder()
    try:
        with recorder.transaction() as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.execute("PRAGMA busy_timeout").fetchone() == (200,)

        other = sqlite3.connect(tmp_path / "bank.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            recorder.insert_events([event(uuid.uuid4(), 1)])
        assert time.monotonic() - started >= 0.2
        other.execute("ROLLBACK")
        other.close()

        assert recorder.insert_events([event(uuid.uuid4(), 1)]) == [1]
    finally:
        factory.close()


def _hold_writers_lock(path: str, ready: Any, release: Any) -> None:
    """In another process: hold the SQLite writers' lock file until told."""
    with open(path, "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        ready.set()
        release.wait(timeout=30)


@pytest.mark.slow
def test_sqlite_writers_in_other_processes_queue_on_the_writers_lock_file(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}?timeout=0.3"
    factory = SqlFactory(Environment("Bank", {"SQLALCHEMY_URL": url}))
    recorder = factory.application_recorder()
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(
        target=_hold_writers_lock,
        args=(f"{tmp_path / 'bank.db'}-writers.lock", ready, release),
    )
    holder.start()
    try:
        assert ready.wait(timeout=30)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="another process"):
            recorder.insert_events([event(uuid.uuid4(), 1)])
        waited = time.monotonic() - started

        release.set()
        holder.join(timeout=30)

        assert waited >= 0.3
        assert recorder.insert_events([event(uuid.uuid4(), 1)]) == [1]
    finally:
        release.set()
        holder.join(timeout=30)
        factory.close()


def test_sqlite_switches_to_wal_once_another_connections_write_ends(
    tmp_path: Any,
) -> None:
    other = sqlite3.connect(
        tmp_path / "bank.db", isolation_level=None, check_same_thread=False
    )
    other.execute("CREATE TABLE other (n INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, other.close).start()  # closing rolls back
    url = f"sqlite:///{tmp_path / 'bank.db'}?timeout=15"
    factory = SqlFactory(
        Environment("Bank", {"SQLALCHEMY_URL": url, "CREATE_TABLE": "n"})
    )
    try:
        with factory.process_recorder().transaction() as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        factory.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent/directory/bank.db",
        "postgresql+psycopg://root@127.0.0.1:1/test",
    ],
)
def test_an_unreachable_database_raises_operational_error(url: str) -> None:
    env = {"SQLALCHEMY_URL": url, "CREATE_TABLE": "n"}
    factory = SqlFactory(Environment("Bank", env))
    try:
        with pytest.raises(OperationalError):
            factory.application_recorder().max_notification_id()
    finally:
        factory.close()


def test_subscribing_needs_postgresql(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    factory = SqlFactory(Environment("Bank", {"SQLALCHEMY_URL": url}))
    try:
        with pytest.raises(NotImplementedError):
            factory.application_recorder().subscribe()
    finally:
        factory.close()


def test_the_log_is_read_in_the_order_of_its_index_never_sorted(
    factory: SqlFactory, env: BankEnv
) -> None:
    recorder = factory.application_recorder()
    recorder.insert_events([event(uuid.uuid4(), 1)])
    log = recorder.log_sql
    page_params = [*log.position_params(LOG_START), 100]
    page = (log.select_sql(up_to=False, topics_condition=""), page_params)
    head: tuple[str, list[Any]] = (log.head_sql(), [])
    sqlite = env["SQLALCHEMY_URL"].startswith("sqlite")

    with recorder.transaction() as connection:
        if not sqlite:
            # Only a plan that can't avoid sorting still sorts with this off.
            connection.execute("SET LOCAL enable_sort = off")
        plans = []
        for sql, params in (page, head):
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = connection.execute(explain + sql, params).fetchall()
            plans.append(" ".join(str(row[-1]) for row in rows))

    for plan in plans:
        assert "TEMP B-TREE" not in plan, plan
        assert "Sort" not in plan, plan


@pytest.mark.parametrize(
    "db_env", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_write_after_the_server_dropped_the_writers_connection_gets_a_new_one(
    factory: SqlFactory,
) -> None:
    recorder = factory.application_recorder()
    assert recorder.insert_events([event(uuid.uuid4(), 1)]) == [1]
    with recorder.transaction() as connection:
        writer_pid = connection.info.backend_pid
    # The server ends the connection kept for writes (a restart, a failover).
    with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (writer_pid,))

    lost, kept = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(PersistenceError):
        recorder.insert_events([event(lost, 1)])
    recorder.insert_events([event(kept, 1)])

    stored = recorder.select_notifications(None, 10)
    assert [n.originator_id for n in stored][1:] == [kept]


@pytest.mark.parametrize(
    "db_env", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_bank_starting_beside_a_long_reader_does_not_wait_for_it(
    env: BankEnv,
) -> None:
    with BankApplication(env=env) as first:
        first.open_account("a@example.com", "A")
    schema = env["SQLALCHEMY_SCHEMA"]
    with psycopg.connect(libpq_url(POSTGRES_URL)) as reader:
        # A long read (a report, a backup) holds the events table's lightest
        # lock; anything altering the table would queue behind it, and every
        # writer behind that.
        reader.execute(f"LOCK TABLE {schema}.bank_events IN ACCESS SHARE MODE")
        started = time.monotonic()
        with BankApplication(env=env) as second:
            assert second.get_balance("A") == 0
        assert time.monotonic() - started < 5
        reader.rollback()
