"""Servers under gunicorn and keep-alive clients driving them, for B3."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Barrier
from typing import TYPE_CHECKING, Any

from bench.report import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

HOST = "127.0.0.1"
STARTUP_SECONDS = 30.0
SHUTDOWN_SECONDS = 10.0
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class ServerError(RuntimeError):
    """A server did not start, or answered with errors."""


@dataclass
class ClientLoad:
    """What one keep-alive client saw: request latencies and failed answers."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[int] = field(default_factory=Counter)
    failure_samples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadResult:
    """What all clients saw over one timed run."""

    seconds: float
    clients: list[ClientLoad]

    @property
    def latencies(self) -> list[float]:
        """Every request's latency, in seconds."""
        return [latency for client in self.clients for latency in client.latencies]

    @property
    def requests_per_second(self) -> float:
        """Answered requests per second, over all clients."""
        return len(self.latencies) / self.seconds

    @property
    def failures(self) -> Counter[int]:
        """Non-2xx answers by status."""
        return sum((client.failures for client in self.clients), Counter())

    def raise_if_failed(self, server_name: str) -> None:
        """Fail loudly on any non-2xx answer."""
        failures = self.failures
        if failures:
            samples = [s for client in self.clients for s in client.failure_samples]
            raise ServerError(
                f"{server_name} answered {sum(failures.values())} non-2xx responses "
                f"{dict(failures)}; first: {samples[:3]}"
            )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(argv: Sequence[str], port: int, log_path: Path) -> Iterator[None]:
    """Run a server until it answers GET /api/health; always stop it afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,  # gunicorn imports `web` and `bench` from here
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_healthy(process, port, log_path)
            yield
        finally:
            stop(process)


def wait_until_healthy(
    process: subprocess.Popen[bytes], port: int, log_path: Path
) -> None:
    """Poll GET /api/health until it answers 200; raise if the server dies or stalls."""
    deadline = time.monotonic() + STARTUP_SECONDS
    problem = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            problem = f"it exited with status {process.returncode}"
            break
        try:
            status, _ = call(port, "GET", "/api/health", timeout=2)
        except (OSError, http.client.HTTPException) as error:
            problem = repr(error)
        else:
            if status == 200:
                return
            problem = f"health answered {status}"
        time.sleep(0.1)
    raise ServerError(
        f"server on port {port} not healthy: {problem}; log: {tail(log_path)}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM gunicorn (a graceful stop), then kill its process group if it lingers."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(SHUTDOWN_SECONDS)
    # Workers of a killed master are left in its (own, new) process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def tail(log_path: Path, characters: int = 2000) -> str:
    """The end of a server's log."""
    return log_path.read_text(errors="replace")[-characters:]


def call(
    port: int,
    method: str,
    path: str,
    document: dict[str, Any] | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """One request on a connection of its own: the status and the decoded answer."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        body = None if document is None else json_body(document)
        connection.request(method, path, body=body, headers=JSON_HEADERS)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def json_body(document: dict[str, Any]) -> bytes:
    """A JSON request body."""
    return json.dumps(document).encode()


def drive(port: int, bodies: Sequence[bytes], seconds: float) -> LoadResult:
    """One client thread per body, each POSTing it to /api over one connection."""
    start_together = Barrier(len(bodies) + 1, timeout=STARTUP_SECONDS)

    def client(body: bytes) -> ClientLoad:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            try:
                connection.connect()
            finally:
                start_together.wait()
            return post_until(connection, body, time.perf_counter() + seconds)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        futures = [pool.submit(client, body) for body in bodies]
        start_together.wait()
        start = time.perf_counter()
        clients = [future.result() for future in futures]
        elapsed = time.perf_counter() - start
    return LoadResult(elapsed, clients)


def post_until(
    connection: http.client.HTTPConnection, body: bytes, deadline: float
) -> ClientLoad:
    """POST the body to /api again and again until the deadline; time each answer."""
    load = ClientLoad()
    while (sent := time.perf_counter()) < deadline:
        connection.request("POST", "/api", body=body, headers=JSON_HEADERS)
        response = connection.getresponse()
        answer = response.read()
        load.latencies.append(time.perf_counter() - sent)
        if not 200 <= response.status < 300:
            load.failures[response.status] += 1
            if len(load.failure_samples) < 3:
                load.failure_samples.append(f"{response.status} {answer[:300]!r}")
    return load
