"""Servers under gunicorn and keep-alive clients driving them, for B3."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Barrier
from typing import TYPE_CHECKING, Any

from bench.report import REPO_ROOT
from web.testing import HEALTH_PATH, HOST, ServerError, ServerProcess

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

STARTUP_SECONDS = 30.0
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


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


def running_server(
    argv: Sequence[str],
    port: int,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """A server that `with` starts, waits for until healthy, and always stops."""
    return ServerProcess(
        argv,
        port,
        log_path,
        cwd=REPO_ROOT,  # gunicorn imports `web` and `bench` from here
        env=env,
        startup_seconds=STARTUP_SECONDS,
    )


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


def health_once(port: int, timeout: float = 10) -> dict[str, Any]:
    """GET /api/health on a fresh connection that the server closes after it."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(
            "GET", HEALTH_PATH, headers={**JSON_HEADERS, "Connection": "close"}
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ServerError(f"health answered {response.status}: {body[:300]!r}")
    answer = json.loads(body)
    if not isinstance(answer, dict):
        raise ServerError(f"health answered {answer!r}, not a JSON object")
    return answer


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
