"""`bank serve` as a real subprocess for tests: start, stop, SIGKILL, restart."""

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

from bank import BankApplication

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from conftest import BankEnv

REPO_ROOT = Path(__file__).resolve().parent.parent
BANK_SCRIPT = Path(sys.executable).parent / "bank"
HOST = "127.0.0.1"
STARTUP_SECONDS = 20.0
SHUTDOWN_SECONDS = 10.0
REQUEST_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers (names lower-cased) and the JSON body."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


class Connection:
    """One keep-alive HTTP/1.1 connection to a server; use one per thread."""

    def __init__(self, port: int, timeout: float = REQUEST_SECONDS) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (the next request would open a new one)."""
        self._connection.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request on this connection and read the whole answer.

        A transport failure (refused, reset, timed out) closes the connection
        and propagates: the caller decides what an unknown outcome means.
        """
        all_headers = {"Accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        try:
            self._connection.request(method, path, body=payload, headers=all_headers)
            response = self._connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        return Reply(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            decode(raw),
        )

    def command(
        self,
        name: str,
        data: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """POST one command to /api."""
        return self.request(
            "POST", "/api", {"command": name, "data": dict(data)}, headers
        )


def decode(raw: bytes) -> Any:
    """A body as JSON, or as text when it is not JSON (say, a proxy's error page)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class Server:
    """A `bank serve` subprocess (its own process group) on one database."""

    def __init__(
        self,
        db_env: BankEnv,
        log_path: Path,
        workers: int = 2,
        threads: int | None = None,
        *,
        create_tables_first: bool = False,
    ) -> None:
        self.db_env = dict(db_env)
        self.log_path = log_path
        self.workers = workers
        self.threads = threads
        # By default the workers create the tables themselves as they boot,
        # all at once, as on a real first start.
        self.create_tables_first = create_tables_first
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the master process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start on a fresh free port and wait until GET /api/health answers 200."""
        assert not self.running, "the server is already running"
        if self.create_tables_first:
            with BankApplication(env=self.db_env):
                self.create_tables_first = False
        self.port = free_port()
        command = [
            str(BANK_SCRIPT),
            "--db",
            self.db_env["SQLALCHEMY_URL"],
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.threads is not None:
            command += ["--threads", str(self.threads)]
        # Every setting (SQLALCHEMY_SCHEMA for PostgreSQL) reaches the workers
        # via the environment; the URL also via --db, which beats BANK_* keys.
        env = {**os.environ, **self.db_env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=REPO_ROOT,  # gunicorn imports `web` from its working directory
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_healthy(self, self.process)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL the whole group if it lingers."""
        if self.process is not None:
            stop(self.process)

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, mid-request if need be."""
        assert self.process is not None, "the server was never started"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(SHUTDOWN_SECONDS)
        wait_until_group_is_gone(self.process.pid)

    def restart(self) -> None:
        """Stop (if running) and start again on the same database and log."""
        self.stop()
        self.start()

    def connect(self, timeout: float = REQUEST_SECONDS) -> Connection:
        """A new keep-alive connection to the server."""
        return Connection(self.port, timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = REQUEST_SECONDS,
    ) -> tuple[int, Any]:
        """Send one request on a new connection; return the status and JSON body."""
        with self.connect(timeout) as connection:
            reply = connection.request(method, path, body)
        return reply.status, reply.body

    def command(self, name: str, **data: Any) -> tuple[int, Any]:
        """POST one command to /api on a new connection."""
        return self.request("POST", "/api", {"command": name, "data": data})

    def events(self, account_id: str, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every event of an account, oldest first, following the paging links."""
        events: list[dict[str, Any]] = []
        with self.connect() as connection:
            for _ in range(10_000):
                after = events[-1]["version"] if events else 0
                reply = connection.request(
                    "GET",
                    f"/api/accounts/{account_id}/events"
                    f"?after_version={after}&limit={page_size}",
                )
                assert reply.status == 200, reply
                events += reply.body
                if "link" not in reply.headers:
                    versions = [event["version"] for event in events]
                    assert versions == list(range(1, len(events) + 1)), versions
                    return events
        pytest.fail(f"account {account_id} has more pages than expected")

    def log_tail(self, characters: int = 6000) -> str:
        """The end of the server's own log (tracebacks, worker exits), no access log."""
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines(keepends=True)
        own = [line for line in lines if not line.startswith(f"{HOST} - - [")]
        return "".join(own)[-characters:]


@dataclass(frozen=True)
class Ledger:
    """Some accounts' events as a live server lists them, and checks on them."""

    events: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, server: Server, account_ids: Iterable[str]) -> Ledger:
        """Read every event of these accounts over HTTP."""
        return cls(
            {account_id: server.events(account_id) for account_id in account_ids}
        )

    def count(self, account_id: str, event_type: str) -> int:
        """How many events of this type the account has."""
        return sum(event["type"] == event_type for event in self.events[account_id])

    def balances(self, account_id: str) -> dict[int, tuple[int, int]]:
        """(balance, overdraft limit) right after each version, by replaying."""
        balance = limit = 0
        after: dict[int, tuple[int, int]] = {}
        for event in self.events[account_id]:
            kind, data = event["type"], event["data"]
            if kind in {"Deposited", "TransferReceived"}:
                balance += data["amount_in_cents"]
            elif kind in {"Withdrawn", "TransferSent"}:
                balance -= data["amount_in_cents"]
            elif kind == "OverdraftLimitSet":
                limit = data["overdraft_limit_in_cents"]
            after[event["version"]] = (balance, limit)
        return after

    def balance(self, account_id: str) -> int:
        """The balance after the account's last event."""
        balances = self.balances(account_id)
        return balances[max(balances)][0] if balances else 0

    def transfers(self) -> dict[str, tuple[str, str, int]]:
        """Every transfer as (from, to, amount), checking both halves agree.

        Fails the test if any TransferSent lacks its TransferReceived (or the
        reverse), or the halves disagree on accounts or amount.
        """
        sent: dict[str, tuple[str, str, int]] = {}
        received: dict[str, tuple[str, str, int]] = {}
        for account_id, events in self.events.items():
            for event in events:
                data = event["data"]
                if event["type"] == "TransferSent":
                    half = (account_id, data["to_account_id"], data["amount_in_cents"])
                    assert data["transfer_id"] not in sent, data
                    sent[data["transfer_id"]] = half
                elif event["type"] == "TransferReceived":
                    half = (
                        data["from_account_id"],
                        account_id,
                        data["amount_in_cents"],
                    )
                    assert data["transfer_id"] not in received, data
                    received[data["transfer_id"]] = half
        half_applied = set(sent) ^ set(received)
        assert not half_applied, f"half-applied transfers: {sorted(half_applied)}"
        assert sent == received
        return sent


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
    wait_until_group_is_gone(process.pid)


def wait_until_group_is_gone(group: int) -> None:
    """Wait (bounded) until no live process of the group is left."""
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    while time.monotonic() < deadline and group_members(group):
        time.sleep(0.05)


def group_members(group: int) -> list[int]:
    """The live (not zombie) processes in a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces or parens.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state not in {"Z", "X"}:
            members.append(int(stat.parent.name))
    return members


@contextlib.contextmanager
def running_server(
    db_env: BankEnv, tmp_path: Path, workers: int = 2, threads: int | None = None
) -> Iterator[Server]:
    """Start `bank serve` on the database, yield it, and always stop it."""
    server = Server(db_env, tmp_path / "server.log", workers, threads)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        sys.stderr.write(server.log_tail())


def server_fixture(workers: int = 2, name: str = "server") -> Callable[..., Any]:
    """A pytest fixture running `bank serve` with `workers` on each real database."""

    @pytest.fixture(name=name)
    def fixture(db_env: BankEnv, tmp_path: Path) -> Iterator[Server]:
        with running_server(db_env, tmp_path, workers) as server:
            yield server

    return fixture
