"""`bank serve` as a real subprocess for tests: start, stop, SIGKILL, restart."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bank import BankApplication
from web.testing import HOST, ServerProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from conftest import BankEnv

REPO_ROOT = Path(__file__).resolve().parent.parent
BANK_SCRIPT = Path(sys.executable).parent / "bank"
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
        serve_args: Sequence[str] = (),
    ) -> None:
        self.db_env = dict(db_env)
        self.log_path = log_path
        self.workers = workers
        self.threads = threads
        self.serve_args = list(serve_args)
        # By default the workers create the tables themselves as they boot,
        # all at once, as on a real first start.
        self.create_tables_first = create_tables_first
        self.port = 0
        self.process: ServerProcess | None = None

    @property
    def running(self) -> bool:
        """Whether the master process is alive."""
        return self.process is not None and self.process.running

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
        command += self.serve_args
        # Every setting (SQLALCHEMY_SCHEMA for PostgreSQL) reaches the workers
        # via the environment; the URL also via --db, which beats BANK_* keys.
        self.process = ServerProcess(
            command,
            self.port,
            self.log_path,
            cwd=REPO_ROOT,  # gunicorn imports `web` from its working directory
            env={**os.environ, **self.db_env},
            name="`bank serve`",
            startup_seconds=STARTUP_SECONDS,
            shutdown_seconds=SHUTDOWN_SECONDS,
        )
        self.process.start()

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL the whole group if it lingers."""
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, mid-request if need be."""
        assert self.process is not None, "the server was never started"
        self.process.kill()

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


@contextlib.contextmanager
def running_server(
    db_env: BankEnv,
    tmp_path: Path,
    workers: int = 2,
    threads: int | None = None,
    serve_args: Sequence[str] = (),
) -> Iterator[Server]:
    """Start `bank serve` on the database, yield it, and always stop it."""
    server = Server(
        db_env, tmp_path / "server.log", workers, threads, serve_args=serve_args
    )
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
