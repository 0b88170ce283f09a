"""`bank serve` end to end: gunicorn workers answering the JSON API over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STARTUP_SECONDS = 20.0
SHUTDOWN_SECONDS = 10.0


@dataclass(frozen=True)
class Server:
    """A running `bank serve`, spoken to over real HTTP."""

    port: int

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """Send one request; return the status and the decoded JSON body."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def command(self, name: str, **data: Any) -> tuple[int, Any]:
        """POST one command to /api."""
        return self.request("POST", "/api", {"command": name, "data": data})


def free_port() -> int:
    """A TCP port nothing is listening on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_healthy(server: Server, process: subprocess.Popen[bytes]) -> None:
    """Poll GET /api/health until it answers 200, the server dies, or time is up."""
    deadline = time.monotonic() + STARTUP_SECONDS
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`bank serve` exited with status {process.returncode}")
        try:
            status, body = server.request("GET", "/api/health", timeout=2.0)
        except (OSError, http.client.HTTPException, ValueError) as problem:
            last_problem = repr(problem)
        else:
            if status == 200:
                return
            last_problem = f"{status} {body}"
        time.sleep(0.2)
    pytest.fail(f"`bank serve` not healthy after {STARTUP_SECONDS} s: {last_problem}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM gunicorn (a graceful stop), then kill its whole group if it lingers."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(SHUTDOWN_SECONDS)
    # Workers left behind by a killed master share its (new) process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def server(db_env: BankEnv, tmp_path: Path) -> Iterator[Server]:
    """`bank serve` with two workers on a free port, on each real database."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "bank"),
        "--db",
        db_env["SQLALCHEMY_URL"],
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    # Every setting (SQLALCHEMY_SCHEMA for PostgreSQL) reaches the workers via
    # the environment; the URL also via --db, which overrides BANK_* settings.
    env = {**os.environ, **db_env}
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_ROOT,  # gunicorn imports `web` from its working directory
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            running = Server(port)
            wait_until_healthy(running, process)
            yield running
        finally:
            stop(process)
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])


def test_the_server_runs_commands_and_queries_over_real_http(server: Server) -> None:
    opened = server.command(
        "account_open", account_owner_email="a@example.com", account_id=123
    )
    deposited = server.command(
        "account_deposit", account_id="123", amount_in_cents=1000
    )
    withdrawn = server.command(
        "account_withdraw", account_id="123", amount_in_cents=300
    )
    refused = server.command("account_withdraw", account_id="123", amount_in_cents=5000)
    shown = server.request("GET", "/api/accounts/123")

    assert opened[0] == 201
    assert opened[1]["account_id"] == "123"
    assert deposited[0] == 200
    assert deposited[1]["balance_in_cents"] == 1000
    assert withdrawn[0] == 200
    assert withdrawn[1]["balance_in_cents"] == 700
    assert refused[0] == 409
    assert refused[1]["error"]["code"] == "insufficient_funds"
    assert shown[0] == 200
    assert shown[1]["balance_in_cents"] == 700
