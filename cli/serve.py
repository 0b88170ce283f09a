"""`bank serve`: the JSON API under gunicorn; `bank keygen`: a cipher key."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
from eventsourcing.cryptography import AESCipher

from cli.serve_hooks import METRICS_DIR_SETTING, RUN_PROJECTOR_SETTING
from cli.session import BankSession, pass_session

if TYPE_CHECKING:
    from collections.abc import Mapping

DATABASE_URL_KEYS = ("SQLALCHEMY_URL", "BANK_SQLALCHEMY_URL")
WEB_APP_FACTORY = "web:create_app()"
# web.server's worker; named here so that the CLI needs no import of it.
WORKER_CLASS = "web.server.EventedWorker"
READ_TIMEOUT_SETTING = "BANK_READ_TIMEOUT_SECONDS"
CATCH_UP_SETTING = "BANK_CATCH_UP_IN_REQUEST"
SERVER_HOOKS = "python:cli.serve_hooks"
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
METRICS_DIR_PREFIX = "bank-metrics-"
DEFAULT_KEEPALIVE_SECONDS = 5
# The settings web.auth reads, named here so that the CLI needs no Flask import.
API_TOKEN_SETTINGS = ("BANK_API_TOKENS", "BANK_API_TOKENS_FILE")


def database_env(url: str) -> dict[str, str]:
    """Process environment that points the server's workers at the database URL."""
    # The workers read the process environment, where BANK_SQLALCHEMY_URL
    # beats SQLALCHEMY_URL: --db sets both, so a stray one cannot win.
    return dict.fromkeys(DATABASE_URL_KEYS, url)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to bind.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes, each with its own bank.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Threads per worker.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_READ_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds a request may take to arrive whole; a slower one gets 408.",
)
@click.option(
    "--keep-alive",
    "keepalive",
    type=click.IntRange(min=1),
    default=DEFAULT_KEEPALIVE_SECONDS,
    show_default=True,
    help="Seconds an idle connection is kept open between requests.",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="SQLAlchemy database URL for the server (overrides the global --db).",
)
@click.option(
    "--no-projector",
    is_flag=True,
    help="Run no projector beside the workers (run `bank projector` elsewhere).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Allow a non-loopback address without API tokens (never in production).",
)
@pass_session
def serve(
    session: BankSession,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    read_timeout: float,
    keepalive: int,
    db_url: str | None,
    no_projector: bool,
    insecure_no_auth: bool,
) -> None:
    """Serve the JSON API over HTTP with gunicorn (replaces this process).

    Connections are read by each worker's event loop; a request reaches one of
    its threads only once it has arrived whole, so idle and slow clients hold
    no thread. A `bank projector` runs beside the workers (restarted if it
    dies) unless --no-projector says one runs elsewhere.
    """
    if not (is_loopback(host) or api_tokens_configured(os.environ) or insecure_no_auth):
        raise click.UsageError(
            f"refusing to serve on {host} without API tokens: anyone who can reach "
            f"it could move money. Set {API_TOKEN_SETTINGS[0]} or "
            f"{API_TOKEN_SETTINGS[1]}, or pass --insecure-no-auth."
        )
    argv = gunicorn_argv(host, port, workers, threads, keepalive)
    env = serve_env(os.environ, db_url or session.db_url)
    env[READ_TIMEOUT_SETTING] = str(read_timeout)
    # A projector keeps the read models current, this server's or another's:
    # reads wait for it rather than catching up themselves.
    env[CATCH_UP_SETTING] = "n"
    env[RUN_PROJECTOR_SETTING] = "0" if no_projector else "1"
    env[METRICS_DIR_SETTING] = fresh_metrics_dir(env.get(METRICS_DIR_SETTING))
    os.execvpe(argv[0], argv, env)


def fresh_metrics_dir(configured: str | None) -> str:
    """An empty directory for the workers' metrics files: no earlier server's counts.

    The configured one, emptied, or else a new temporary one.
    """
    if not configured:
        remove_dead_servers_metrics()
        # gunicorn's master keeps this process's pid (exec), so the name says
        # whose it is.
        return tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return str(directory)


def remove_dead_servers_metrics() -> None:
    """Delete the temporary metrics directories of servers that have stopped."""
    for directory in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid = directory.name.removeprefix(METRICS_DIR_PREFIX).partition("-")[0]
        owned = directory.is_dir() and directory.stat().st_uid == os.getuid()
        if owned and pid.isdigit() and not is_running(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def is_running(pid: int) -> bool:
    """Whether a process with that pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def is_loopback(host: str) -> bool:
    """Whether the address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_tokens_configured(environ: Mapping[str, str]) -> bool:
    """Whether the web app will demand bearer tokens."""
    return any(environ.get(setting) for setting in API_TOKEN_SETTINGS)


@click.command()
def keygen() -> None:
    """Print a fresh random key for BANK_CIPHER_KEY (AES-256, base64)."""
    click.echo(AESCipher.create_key(32))


def gunicorn_argv(
    host: str,
    port: int,
    workers: int,
    threads: int,
    keepalive: int = DEFAULT_KEEPALIVE_SECONDS,
    app_factory: str = WEB_APP_FACTORY,
) -> list[str]:
    """The command that runs a web app's factory (the bank's) under gunicorn."""
    # No --preload: every worker builds its own BankApplication after the fork.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        WORKER_CLASS,
        "--threads",
        str(threads),
        "--keep-alive",
        str(keepalive),
        "--bind",
        f"{host}:{port}",
        "--access-logfile",
        "-",
        # gunicorn 27 otherwise shares one ~/.gunicorn control socket between
        # every server on the machine.
        "--no-control-socket",
        "--config",
        SERVER_HOOKS,
        app_factory,
    ]


def serve_env(environ: Mapping[str, str], db_url: str | None) -> dict[str, str]:
    """The server's environment: this one, plus the database URL when given."""
    env = dict(environ)
    if db_url:
        env.update(database_env(db_url))
    return env
