"""`bank projector` as a process of its own, and beside `bank serve`'s workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import psutil
import pytest
from cli_runner import Cli
from live_server import BANK_SCRIPT, REPO_ROOT, Server, running_server

from bank import BankApplication
from bank.projections import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import BankEnv

pytestmark = pytest.mark.slow
WAIT_SECONDS = 20.0


def projection_reaches_head(env: BankEnv, seconds: float = WAIT_SECONDS) -> bool:
    """Whether the read models reach the log's head within the time."""
    with BankApplication(env=env) as app:
        ledger = Ledger(app)
        head = app.event_log.settled_head()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ledger.projection.position() >= head:
                return True
            time.sleep(0.02)
    return False


@pytest.fixture
def projector_process(
    db_env: BankEnv, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`bank projector` running on the database, stopped afterwards."""
    log = (tmp_path / "projector.log").open("wb")
    process = subprocess.Popen(
        [str(BANK_SCRIPT), "--db", db_env["SQLALCHEMY_URL"], "projector"],
        env={**os.environ, **db_env},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        log.close()


def test_projector_once_applies_the_backlog_and_exits(db_env: BankEnv) -> None:
    with BankApplication(env=db_env) as app:
        app.open_account("a@example.com", "a")
        app.deposit("a", 100)
    cli = Cli(db_env["SQLALCHEMY_URL"])
    env = {key: value for key, value in db_env.items() if key != "SQLALCHEMY_URL"}
    os.environ.update(env)
    try:
        assert cli.ok("projector", "--once") == (
            "Applied 2 events; the read models are current.\n"
        )
        assert cli.ok("projector", "--once") == (
            "Applied 0 events; the read models are current.\n"
        )
    finally:
        for key in env:
            os.environ.pop(key, None)


def test_a_projector_process_follows_the_log_and_stops_on_sigterm(
    db_env: BankEnv, projector_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    # Given a running projector, when commands are recorded by another process,
    with BankApplication(env=db_env) as app:
        app.open_account("a@example.com", "a")
        for _ in range(20):
            app.deposit("a", 1)
    # then the read models soon hold them all,
    assert projection_reaches_head(db_env)
    # and SIGTERM stops it cleanly, saying what it did.
    projector_process.send_signal(signal.SIGTERM)
    assert projector_process.wait(10) == 0
    log = (tmp_path / "projector.log").read_text()
    assert "Projector stopped after applying 21 events." in log


def test_bank_serve_runs_a_projector_and_restarts_it_if_it_dies(
    db_env: BankEnv, tmp_path: Path
) -> None:
    env = {**db_env, "BANK_READ_WAIT_SECONDS": "10"}
    with running_server(env, tmp_path, workers=1) as server:
        status, _ = server.command(
            "account_open", account_owner_email="a@example.com", account_id="a"
        )
        assert status == 201
        # Reads are answered: the server's own projector keeps them current.
        assert statement_kinds(server) == ["opened"]
        # When its projector is killed,
        [projector] = projector_children(server)
        projector.kill()
        projector.wait(10)
        # then another takes its place, and reads keep up with commands.
        status, _ = server.command("account_deposit", account_id="a", amount_in_cents=5)
        assert status == 200
        assert statement_kinds(server) == ["opened", "deposit"]
        [restarted] = projector_children(server)
        assert restarted.pid != projector.pid


def test_with_no_projector_reads_wait_for_one_started_elsewhere(
    db_env: BankEnv, tmp_path: Path
) -> None:
    env = {**db_env, "BANK_READ_WAIT_SECONDS": "0.5"}
    with running_server(env, tmp_path, workers=1, serve_args=["--no-projector"]) as (
        server
    ):
        status, _ = server.command(
            "account_open", account_owner_email="a@example.com", account_id="a"
        )
        assert status == 201
        assert projector_children(server, wanted=0) == []
        # Given no projector runs, a read is refused as behind, not stale;
        status, body = server.request("GET", "/api/accounts/a/statement")
        assert status == 503
        assert body["error"]["code"] == "read_model_behind"
        # when one is run by hand, the same read is answered.
        command = [str(BANK_SCRIPT), "--db", db_env["SQLALCHEMY_URL"], "projector"]
        elsewhere = subprocess.Popen(
            command, env={**os.environ, **db_env}, cwd=REPO_ROOT
        )
        try:
            assert projection_reaches_head(db_env)
            assert statement_kinds(server) == ["opened"]
        finally:
            elsewhere.terminate()
            elsewhere.wait(10)


def statement_kinds(server: Server) -> list[str]:
    """The kinds of account a's statement lines, read over HTTP."""
    status, body = server.request("GET", "/api/accounts/a/statement")
    assert status == 200, body
    return [line["kind"] for line in body["lines"]]


def projector_children(
    server: Server, wanted: int = 1, seconds: float = WAIT_SECONDS
) -> list[psutil.Process]:
    """The server's projector processes, once there are `wanted` of them."""
    assert server.process is not None
    assert server.process.process is not None
    master = psutil.Process(server.process.process.pid)
    deadline = time.monotonic() + seconds
    while True:
        found = [
            child
            for child in master.children(recursive=True)
            if "projector" in " ".join(child.cmdline()) and child.is_running()
            and child.status() != psutil.STATUS_ZOMBIE
        ]  # fmt: skip
        if len(found) == wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
