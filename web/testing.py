"""Test support: run a server as a subprocess, wait for it, find PostgreSQL.

Standard library and psycopg only (no Flask), so tests and benchmarks can run
`bank serve` or any other server that answers GET /api/health.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

HOST = "127.0.0.1"
HEALTH_PATH = "/api/health"


class ServerError(RuntimeError):
    """A server did not start, or answered with errors."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """A server subprocess in a session (process group) of its own, logging to a file.

    As a context manager it starts the server, waits until it is healthy, and
    always stops it afterwards.
    """

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        log_path: Path,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        name: str = "the server",
        startup_seconds: float = 20.0,
        shutdown_seconds: float = 10.0,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.env = None if env is None else dict(env)
        self.name = name
        self.startup_seconds = startup_seconds
        self.shutdown_seconds = shutdown_seconds
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the (master) process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it is healthy; stop it if it is not."""
        if self.process is not None:
            raise ServerError(f"{self.name} on port {self.port} was already started")
        # Appending keeps what earlier runs logged to the same file.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def wait_until_healthy(self) -> None:
        """Poll GET /api/health until it answers 200; raise if it exits or stalls."""
        process = self._started()
        deadline = time.monotonic() + self.startup_seconds
        problem = "no answer yet"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise self._error(f"exited with status {process.returncode}")
            try:
                status, body = health(self.port)
            except (OSError, http.client.HTTPException) as error:
                problem = repr(error)
            else:
                if status == 200:
                    return
                problem = f"health answered {status} {body[:300]!r}"
            time.sleep(0.1)
        raise self._error(f"not healthy within {self.startup_seconds} s: {problem}")

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL the whole group if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(self.shutdown_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(self.shutdown_seconds)
        self._end_group()

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, mid-request if need be."""
        process = self._started()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(self.shutdown_seconds)
        self._end_group()

    def log_tail(self, characters: int = 2000) -> str:
        """The end of the server's log."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-characters:]

    def _error(self, problem: str) -> ServerError:
        return ServerError(
            f"{self.name} on port {self.port} {problem}; log: {self.log_tail()}"
        )

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise ServerError(f"{self.name} on port {self.port} is not started")
        return self.process

    def _end_group(self) -> None:
        group = self._started().pid
        # Workers left behind by a killed master share its (new) process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        wait_until_group_is_gone(group, self.shutdown_seconds)
        # Forget the reaped process: its pid (and group id) may be reused.
        self.process = None


def health(port: int, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET /api/health on a connection of its own: the status and the body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", HEALTH_PATH)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until_group_is_gone(group: int, timeout: float) -> None:
    """Wait (at most `timeout` seconds) until no live process of the group is left."""
    deadline = time.monotonic() + timeout
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


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg wants it."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_unreachable_reason(url: str) -> str | None:
    """Why PostgreSQL at this SQLAlchemy URL does not answer, or None when it does."""
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3):
            return None
    except psycopg.Error as error:
        # On one line, to fit a skip reason or a report's table row.
        return " ".join(f"PostgreSQL at {url} is unreachable: {error}".split())
