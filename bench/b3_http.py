"""B3: deposits over HTTP against a no-op Flask endpoint served the same way."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.http_load import call, drive, json_body, running_server
from bench.measure import ms_text, percentile, rate_text, ratio_text
from bench.report import Row, judged
from bench.stores import sqlite_url
from cli.serve import gunicorn_argv
from web.testing import HOST, ServerError, free_port

if TYPE_CHECKING:
    from bench.http_load import LoadResult
    from bench.sizes import Sizes

CLIENTS = 8
WORKERS = 2
THREADS = 4
NOOP_APP_FACTORY = "bench.noop_app:create_app()"
TARGET_RATIO = 0.5
TARGET_P99_SECONDS = 0.025


def run(sizes: Sizes) -> list[Row]:
    """Throughput and latency of the bank's API, and of a no-op app, under load."""
    with tempfile.TemporaryDirectory(prefix="bench-b3-") as directory:
        bank = load_bank(Path(directory), sizes.b3_seconds)
        noop = load_noop(Path(directory), sizes.b3_seconds)
    ratio = bank.requests_per_second / noop.requests_per_second
    p99 = percentile(bank.latencies, 0.99)
    setup = f"{CLIENTS} keep-alive clients, {WORKERS} workers x {THREADS} threads"
    return [
        Row(
            "B3",
            f"bank: deposits over HTTP, SQLite ({setup}, {bank.seconds:.1f} s)",
            rate_text(bank.requests_per_second),
        ),
        Row(
            "B3",
            "no-op Flask JSON endpoint, same server and clients",
            rate_text(noop.requests_per_second),
        ),
        judged(
            "B3",
            "bank ÷ no-op throughput",
            ratio_text(ratio),
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
        Row("B3", "bank p50 latency", ms_text(percentile(bank.latencies, 0.5))),
        judged(
            "B3",
            "bank p99 latency",
            ms_text(p99),
            f"< {ms_text(TARGET_P99_SECONDS)}",
            p99 < TARGET_P99_SECONDS,
        ),
        Row(
            "B3",
            "no-op p50 / p99 latency (what the server and clients cost alone)",
            f"{ms_text(percentile(noop.latencies, 0.5))} / "
            f"{ms_text(percentile(noop.latencies, 0.99))}",
        ),
        judged("B3", "non-2xx responses (bank and no-op)", "0", "0", passed=True),
    ]


def load_bank(directory: Path, seconds: float) -> LoadResult:
    """`bank serve` on a fresh SQLite file; each client pays into its own account."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "bank"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--threads",
        str(THREADS),
        "--db",
        sqlite_url(directory / "bank.db"),
    ]
    with running_server(argv, port, directory / "bank.log"):
        account_ids = [open_account(port, f"b3-{n}") for n in range(CLIENTS)]
        result = drive(port, [deposit_body(a) for a in account_ids], seconds)
        result.raise_if_failed("the bank")
        check_balances(port, account_ids, result)
    return result


def load_noop(directory: Path, seconds: float) -> LoadResult:
    """The no-op app served as `bank serve` serves the bank, driven the same way."""
    port = free_port()
    argv = gunicorn_argv(HOST, port, WORKERS, THREADS, app_factory=NOOP_APP_FACTORY)
    with running_server(argv, port, directory / "noop.log"):
        bodies = [deposit_body(f"b3-{n}") for n in range(CLIENTS)]
        result = drive(port, bodies, seconds)
        result.raise_if_failed("the no-op app")
    return result


def deposit_body(account_id: str) -> bytes:
    """The JSON body of a 1-cent deposit."""
    return json_body(
        {
            "command": "account_deposit",
            "data": {"account_id": account_id, "amount_in_cents": 1},
        }
    )


def open_account(port: int, account_id: str) -> str:
    """Open an account over HTTP."""
    status, answer = call(
        port,
        "POST",
        "/api",
        {
            "command": "account_open",
            "data": {"account_owner_email": "b3@example.com", "account_id": account_id},
        },
    )
    if status != 201:
        raise ServerError(f"account_open answered {status}: {answer}")
    return account_id


def check_balances(port: int, account_ids: list[str], result: LoadResult) -> None:
    """Every answered deposit is in its account's balance, and no other."""
    for account_id, client in zip(account_ids, result.clients, strict=True):
        status, answer = call(port, "GET", f"/api/accounts/{account_id}")
        if status != 200 or answer["balance_in_cents"] != len(client.latencies):
            raise ServerError(
                f"account {account_id}: {status} {answer}, "
                f"expected a balance of {len(client.latencies)}"
            )
