"""The standby fixture: a real PostgreSQL hot standby streaming from the test server."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url
from standby import (
    StandbyError,
    kill_postmaster,
    running_standby,
    skip_or_fail,
    start_standby,
)

from web.testing import HOST, free_port, libpq_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPLICATION_SECONDS = 10.0
TESTS = Path(__file__).parent


def eventually(check: Callable[[], bool], seconds: float) -> bool:
    """Whether the check comes true within the time, asked every 50 ms."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def table_exists(url: str, table: str) -> bool:
    """Whether the server at this URL has the table (in its search path)."""
    with psycopg.connect(libpq_url(url)) as connection:
        row = connection.execute("SELECT to_regclass(%s)", [table]).fetchone()
    return row is not None and row[0] is not None


def answers(url: str) -> bool:
    """Whether a PostgreSQL server accepts connections at this URL."""
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def table(postgres_url: str, standby_url: str) -> Iterator[str]:
    """A throwaway table, made on the primary and already on the standby."""
    name = f"standby_probe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, note text)")
    try:
        assert eventually(lambda: table_exists(standby_url, name), REPLICATION_SECONDS)
        yield name
    finally:
        with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.mark.postgres
def test_the_standby_is_a_server_of_its_own_in_recovery(
    postgres_url: str, standby_url: str
) -> None:
    # Given the standby's URL
    url = make_url(standby_url)
    primary = make_url(postgres_url)

    # When SQLAlchemy asks it whether it is in recovery
    engine = sqlalchemy.create_engine(standby_url)
    try:
        with engine.connect() as connection:
            in_recovery = connection.scalar(
                sqlalchemy.text("SELECT pg_is_in_recovery()")
            )
    finally:
        engine.dispose()

    # Then it is: a standby, on a port of its own, of the same database and user
    assert in_recovery is True
    assert (url.drivername, url.host) == ("postgresql+psycopg", HOST)
    assert url.port != primary.port
    assert (url.username, url.database) == (primary.username, primary.database)


@pytest.mark.postgres
def test_a_row_committed_on_the_primary_is_soon_readable_on_the_standby(
    postgres_url: str, standby_url: str, table: str
) -> None:
    # Given a standby of the primary, with the table, and a connection to it
    with psycopg.connect(libpq_url(standby_url), autocommit=True) as standby:

        def replicated() -> bool:
            return standby.execute(
                f"SELECT note FROM {table} WHERE id = 1"
            ).fetchone() == ("committed on the primary",)

        assert not replicated()

        # When a row is committed on the primary
        with psycopg.connect(libpq_url(postgres_url)) as primary:
            primary.execute(
                f"INSERT INTO {table} (id, note) VALUES (1, 'committed on the primary')"
            )

        # Then the standby reads it soon after
        assert eventually(replicated, REPLICATION_SECONDS)


@pytest.mark.postgres
def test_the_standby_refuses_writes(standby_url: str, table: str) -> None:
    # Given a connection to the standby, which has the table
    with psycopg.connect(libpq_url(standby_url), autocommit=True) as standby:
        # When it is asked to write a row, or to make a table
        # Then it refuses: it is read-only
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute(
                f"INSERT INTO {table} (id, note) VALUES (2, 'on a replica')"
            )
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute(f"CREATE TABLE {table}_copy (id integer)")


@pytest.mark.postgres
def test_a_stopped_standby_leaves_no_server_and_no_files(postgres_url: str) -> None:
    # Given a standby that answers
    with running_standby(postgres_url) as standby:
        assert answers(standby.url)

    # When its block ends
    # Then no server answers at its URL and its directory is gone
    assert not answers(standby.url)
    assert not standby.directory.exists()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_standby_whose_starter_is_killed_is_stopped_by_its_watchdog(
    postgres_url: str,
) -> None:
    # Given a process that started a standby (and so its watchdog)
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); import standby; "
            "s = standby.start_standby(sys.argv[2]); "
            "print(s.url, s.directory, flush=True); time.sleep(600)",
            str(TESTS),
            postgres_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    ready, _, _ = select.select([starter.stdout], [], [], 60)
    assert ready, "the starter printed no standby within 60 s"
    url, directory = starter.stdout.readline().split()
    try:
        assert answers(url)

        # When it is killed outright, so neither its atexit nor any finally runs
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)

        # Then the standby stops and its directory goes, soon after
        assert eventually(lambda: not answers(url), 20)
        assert eventually(lambda: not Path(directory).exists(), 20)
    finally:
        starter.kill()
        starter.wait(10)
        kill_postmaster(Path(directory) / "data")


def test_a_primary_that_does_not_answer_is_named_in_the_reason() -> None:
    # Given a primary URL where no server listens
    primary = f"postgresql+psycopg://root@{HOST}:{free_port()}/test"

    # When a standby of it is started
    # Then that fails, saying which server does not answer
    with pytest.raises(
        StandbyError, match=re.escape(f"PostgreSQL at {primary} is unreachable")
    ):
        start_standby(primary, timeout=10)


def test_without_ci_a_standby_that_cannot_start_skips_the_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run outside CI
    monkeypatch.delenv("CI", raising=False)

    # When the standby cannot start
    # Then the test is skipped, with the reason
    with pytest.raises(pytest.skip.Exception, match="no pg_basebackup here"):
        skip_or_fail("no pg_basebackup here")


def test_under_ci_a_standby_that_cannot_start_fails_the_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a CI run
    monkeypatch.setenv("CI", "true")

    # When the standby cannot start
    # Then the test fails, with the reason
    with pytest.raises(pytest.fail.Exception, match="no pg_basebackup here"):
        skip_or_fail("no pg_basebackup here")
