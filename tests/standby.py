"""A real PostgreSQL hot standby of the test server, for tests that read a replica.

The session fixture `standby_url` pg_basebackups the primary into a temporary
directory, starts a streaming hot standby there on a free port and yields its
SQLAlchemy URL. `running_standby` does the same outside pytest, and
`python tests/standby.py` keeps one up until Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import psycopg
import pytest
from sqlalchemy.engine import make_url

from web.testing import HOST, free_port, libpq_url, postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

START_SECONDS = 60.0
STOP_SECONDS = 15.0
OS_USER = "postgres"
REPLICATION_HBA_LINE = "host replication all 127.0.0.1/32 trust"
# A hot standby refuses to start with less of any of these than its primary has.
PRIMARY_SETTINGS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
# Runs apart from the tests, in a session of its own. However the process that
# started the standby ends (even by SIGKILL, which skips atexit), its end of the
# pipe closes; then this stops the standby and removes its directory.
WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.buffer.read()
try:
    subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd="/", timeout=30, check=False)
finally:
    shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class StandbyError(RuntimeError):
    """A hot standby could not be started."""


@dataclass
class Standby:
    """A hot standby's files, how to run its tools, and (once started) its URL."""

    directory: Path
    tool_prefix: list[str]
    pg_ctl: Path
    url: str = ""
    watchdog: subprocess.Popen[bytes] | None = None
    stopped: bool = field(default=False, init=False)

    @property
    def data(self) -> Path:
        """Its data directory (a base backup of the primary's)."""
        return self.directory / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.directory / "log"

    def stop_argv(self) -> list[str]:
        """The command that stops the server at once (no clean shutdown needed)."""
        return [
            *self.tool_prefix,
            str(self.pg_ctl),
            "stop",
            "-D",
            str(self.data),
            "-m",
            "immediate",
            "-w",
            "-t",
            str(int(STOP_SECONDS)),
        ]

    def log_tail(self, characters: int = 800) -> str:
        """The end of the server's log, on one line."""
        try:
            return one_line(self.log.read_text(errors="replace"))[-characters:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server, remove its directory and end the watchdog; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        atexit.unregister(self.stop)
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    run(self.stop_argv(), self.directory, STOP_SECONDS, "pg_ctl stop")
                except StandbyError:
                    kill_postmaster(self.data)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._end_watchdog()

    def _end_watchdog(self) -> None:
        if self.watchdog is None:
            return
        if self.watchdog.stdin is not None:
            self.watchdog.stdin.close()
        try:
            self.watchdog.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
            self.watchdog.wait(STOP_SECONDS)


def one_line(text: str) -> str:
    """The text with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())


def run(argv: Sequence[str], cwd: Path, seconds: float, what: str) -> None:
    """Run a tool in a process group of its own; StandbyError if it fails or stalls."""
    if seconds <= 0:
        raise StandbyError(f"no time was left for {what}")
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        # runuser does not pass a kill on to the tool it runs: end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=STOP_SECONDS)
        problem = f"took more than {seconds:.1f} s"
    else:
        if process.returncode == 0:
            return
        problem = f"exited with status {process.returncode}"
    said = one_line(output.decode(errors="replace"))[-800:]
    raise StandbyError(f"{what} {problem}: {said or '(no output)'}")


def kill_postmaster(data: Path) -> None:
    """SIGKILL the postmaster of this data directory, if it is still running."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    # Only if the pid is still that server's, not a process that reused it.
    if str(data).encode() in command:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def as_postgres_user() -> tuple[list[str], tuple[int, int] | None]:
    """How to run PostgreSQL's tools here: a command prefix, and the files' owner."""
    if os.geteuid() != 0:
        # PostgreSQL runs as any user but root: as whoever runs the tests.
        return [], None
    try:
        user = pwd.getpwnam(OS_USER)
    except KeyError:
        raise StandbyError(
            f"there is no {OS_USER!r} OS user to run PostgreSQL as "
            "(it refuses to run as root)"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise StandbyError(f"runuser is not installed, so cannot run as {OS_USER!r}")
    return [runuser, "-u", OS_USER, "--"], (user.pw_uid, user.pw_gid)


def primary_settings(primary_url: str) -> tuple[int, dict[str, str]]:
    """The primary's major version, and the settings a standby must match."""
    reason = postgres_unreachable_reason(primary_url)
    if reason is not None:
        raise StandbyError(reason)
    names = ", ".join(f"current_setting('{name}')" for name in PRIMARY_SETTINGS)
    with psycopg.connect(libpq_url(primary_url), connect_timeout=3) as connection:
        row = connection.execute(
            f"SELECT current_setting('server_version_num')::int, {names}"
        ).fetchone()
    assert row is not None
    return row[0] // 10000, dict(zip(PRIMARY_SETTINGS, row[1:], strict=True))


def postgresql_conf(port: int, sockets: Path, settings: dict[str, str]) -> str:
    """A standby's whole postgresql.conf (Debian keeps the primary's elsewhere)."""
    copied = "".join(f"{name} = {value}\n" for name, value in settings.items())
    return (
        f"port = {port}\n"
        f"listen_addresses = '{HOST}'\n"
        f"unix_socket_directories = '{sockets}'\n"
        "hot_standby = on\n"
        # The primary keeps rows the standby's readers still see, so they are
        # not cancelled by replication conflicts.
        "hot_standby_feedback = on\n"
        "fsync = off\n"
        "shared_buffers = 32MB\n"
        "log_line_prefix = '%m [%p] '\n"
        f"{copied}"
    )


PG_HBA_CONF = """\
local all all trust
host all all 127.0.0.1/32 trust
"""


def start_standby(primary_url: str, *, timeout: float = START_SECONDS) -> Standby:
    """Start a hot standby streaming from the primary; StandbyError if it cannot."""
    deadline = time.monotonic() + timeout
    version, settings = primary_settings(primary_url)
    bin_dir = Path(f"/usr/lib/postgresql/{version}/bin")
    for tool in ("pg_basebackup", "pg_ctl"):
        if not (bin_dir / tool).is_file():
            raise StandbyError(f"{bin_dir / tool} (PostgreSQL {version}) is missing")
    prefix, owner = as_postgres_user()
    standby = Standby(
        directory=Path(tempfile.mkdtemp(prefix="bank-standby-")),
        tool_prefix=prefix,
        pg_ctl=bin_dir / "pg_ctl",
    )
    atexit.register(standby.stop)
    try:
        if owner is not None:
            os.chown(standby.directory, *owner)
        stop_argv = standby.stop_argv()
        standby.watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(standby.directory), *stop_argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base_backup(standby, bin_dir, primary_url, deadline)
        port = free_port()
        configure(standby, port, settings, owner)
        start_server(standby, deadline)
        standby.url = (
            make_url(primary_url)
            .set(host=HOST, port=port)
            .render_as_string(hide_password=False)
        )
        wait_until_streaming(standby, deadline)
    except BaseException:
        standby.stop()
        raise
    return standby


def base_backup(
    standby: Standby, bin_dir: Path, primary_url: str, deadline: float
) -> None:
    """Copy the primary into the standby's data directory, set up to follow it."""
    primary = make_url(primary_url)
    argv = [
        *standby.tool_prefix,
        str(bin_dir / "pg_basebackup"),
        f"--host={primary.host or HOST}",
        f"--port={primary.port or 5432}",
        f"--username={primary.username or OS_USER}",
        "--no-password",
        f"--pgdata={standby.data}",
        # standby.signal and primary_conninfo, so it starts as a standby of it.
        "--write-recovery-conf",
        "--wal-method=stream",
        # Otherwise the backup waits for a spread checkpoint: minutes.
        "--checkpoint=fast",
        "--no-sync",
    ]
    try:
        run(argv, standby.directory, deadline - time.monotonic(), "pg_basebackup")
    except StandbyError as error:
        if "no pg_hba.conf entry for replication" in str(error):
            raise StandbyError(
                f"{error} (the primary's pg_hba.conf needs "
                f"`{REPLICATION_HBA_LINE}`; .ci/run adds it)"
            ) from None
        raise


def configure(
    standby: Standby, port: int, settings: dict[str, str], owner: tuple[int, int] | None
) -> None:
    """Write the standby's own postgresql.conf, pg_hba.conf and pg_ident.conf."""
    files = {
        "postgresql.conf": postgresql_conf(port, standby.directory, settings),
        "pg_hba.conf": PG_HBA_CONF,
        "pg_ident.conf": "",
    }
    for name, text in files.items():
        path = standby.data / name
        path.write_text(text)
        path.chmod(0o600)
        if owner is not None:
            os.chown(path, *owner)


def start_server(standby: Standby, deadline: float) -> None:
    """pg_ctl start, waiting until the server accepts connections."""
    seconds = deadline - time.monotonic()
    argv = [
        *standby.tool_prefix,
        str(standby.pg_ctl),
        "start",
        "-D",
        str(standby.data),
        "-l",
        str(standby.log),
        "-w",
        "-t",
        str(max(1, int(seconds) - 1)),
    ]
    try:
        run(argv, standby.directory, seconds, "pg_ctl start")
    except StandbyError as error:
        raise StandbyError(f"{error}; server log: {standby.log_tail()}") from None


def wait_until_streaming(standby: Standby, deadline: float) -> None:
    """Wait until the standby answers, is in recovery and receives the primary's WAL."""
    problem = "no answer yet"
    while True:
        try:
            with psycopg.connect(
                libpq_url(standby.url), connect_timeout=3
            ) as connection:
                row = connection.execute(
                    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn() IS NOT NULL"
                ).fetchone()
        except psycopg.Error as error:
            problem = one_line(str(error))
        else:
            if row == (True, True):
                return
            problem = (
                "it is not receiving WAL from the primary yet"
                if row == (True, False)
                else "it is not in recovery, so it is no standby"
            )
        if time.monotonic() >= deadline:
            raise StandbyError(
                f"the standby at {standby.url} is not ready: {problem}; "
                f"server log: {standby.log_tail()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running_standby(
    primary_url: str, *, timeout: float = START_SECONDS
) -> Iterator[Standby]:
    """A hot standby of the primary while the block runs; stopped and removed after."""
    standby = start_standby(primary_url, timeout=timeout)
    try:
        yield standby
    finally:
        standby.stop()


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for this reason, or fail it when CI is set (as conftest does)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so PostgreSQL tests may not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def standby_url(postgres_url: str) -> Iterator[str]:
    """A hot standby streaming from the test server: its SQLAlchemy URL."""
    try:
        standby = start_standby(postgres_url)
    except StandbyError as error:
        skip_or_fail(f"Cannot start a PostgreSQL hot standby: {error}")
    try:
        yield standby.url
    finally:
        standby.stop()


def main() -> None:
    """Keep a standby of the test server up, printing its URL, until Ctrl-C."""
    from conftest import POSTGRES_URL  # noqa: PLC0415 (conftest imports this module)

    with running_standby(POSTGRES_URL) as standby:
        print(standby.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
