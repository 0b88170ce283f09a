"""B3: deposits over HTTP against a no-op Flask endpoint served the same way.

The bank is served on SQLite (B3a) and on PostgreSQL (B3b), the no-op app once;
each is driven by 8 and then by 32 keep-alive clients, and each bank load is
held to the no-op's at the same number of clients.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bank import BankApplication
from bank.persistence import LogPosition
from bank.projections import Ledger
from bench.http_load import call, drive, health_once, json_body, running_server
from bench.measure import ms_text, percentile, rate_text, ratio_text
from bench.report import Row, judged
from bench.stores import POSTGRES_URL, postgres_schema, sqlite_url
from cli.serve import gunicorn_argv
from web.testing import HOST, ServerError, free_port, postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bench.http_load import LoadResult
    from bench.sizes import Sizes

CLIENT_COUNTS = (8, 32)
P99_CLIENTS = 8  # the client count the p99 target is for
WORKERS = 2
THREADS = 4
NOOP_APP_FACTORY = "bench.noop_app:create_app()"
TARGET_RATIO = 0.5
TARGET_P99_SECONDS = 0.025
TARGET_LAG = 0.1  # p99 from a command's answer to its read-model rows
LAG_PROBE_PAUSE_SECONDS = 0.01
LAG_LIMIT_SECONDS = 60.0
# Fresh connections to GET /api/health, to hear from every worker at least once.
HEALTH_ATTEMPTS = 50
NO_GROUP_COMMITS = "n/a (server does not report group commits)"
GROUP_COMMIT_OFF = "n/a (server reports group commit off)"
# Where GET /api/health may name the worker that answered.
PID_FIELDS = (("answer", "pid"), ("answer", "worker_pid"), ("group_commit", "pid"))


@dataclass(frozen=True)
class GroupCommits:
    """One worker's group-commit counters, as GET /api/health reports them."""

    transactions: int
    commands: int


@dataclass(frozen=True)
class BankLoad:
    """One timed load of the bank, and what else was measured meanwhile.

    The group commits its workers made, and the projection lag a probe saw:
    for each of its deposits, from the answer to its rows being readable.
    """

    result: LoadResult
    mean_group_size: str
    lags: list[float]


class LagProbe:
    """A client beside the load: deposits, then times until the projector shows each."""

    def __init__(self, port: int, env: Mapping[str, str], account_id: str) -> None:
        self.port = port
        self.account_id = account_id
        self.app = BankApplication(env=dict(env))
        self.projection = Ledger(self.app).projection
        self.lags: list[float] = []
        self.failure: Exception | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self) -> LagProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(LAG_LIMIT_SECONDS + 10)
        self.app.close()
        if self.failure is not None:
            raise self.failure

    def _probe(self) -> None:
        try:
            self._measure()
        except Exception as error:  # re-raised by __exit__, in the caller
            self.failure = error

    def _measure(self) -> None:
        body = json.loads(deposit_body(self.account_id))
        while not self.stop.is_set():
            status, answer = call(self.port, "POST", "/api", body)
            answered = time.perf_counter()
            if status != 200:
                raise ServerError(f"the lag probe's deposit answered {status}")
            position = LogPosition.from_token(answer["position"])
            while self.projection.position() < position:
                if time.perf_counter() - answered > LAG_LIMIT_SECONDS:
                    raise ServerError("the projector fell behind by over a minute")
                time.sleep(0.0005)
            self.lags.append(time.perf_counter() - answered)
            self.stop.wait(LAG_PROBE_PAUSE_SECONDS)


def run(sizes: Sizes) -> list[Row]:
    """Throughput and latency of the bank's API, and of a no-op app, under load."""
    seconds = sizes.b3_seconds
    with tempfile.TemporaryDirectory(prefix="bench-b3-") as directory:
        path = Path(directory)
        noop = load_noop(path, seconds)
        sqlite = load_bank(path, "sqlite", sqlite_url(path / "bank.db"), {}, seconds)
        reason = postgres_unreachable_reason(POSTGRES_URL)
        postgres = None if reason is not None else load_postgres(path, seconds)
    rows = noop_rows(noop)
    rows += bank_rows("B3a", "SQLite", sqlite, noop)
    if postgres is None:
        rows.append(
            Row(
                "B3b",
                f"PostgreSQL: bank ÷ no-op throughput, p99; skipped: {reason}",
                "-",
                f"≥ {TARGET_RATIO}; < {ms_text(TARGET_P99_SECONDS)}",
                "SKIP",
            )
        )
    else:
        rows += bank_rows("B3b", "PostgreSQL", postgres, noop)
    rows.append(
        judged("B3", "non-2xx responses (bank and no-op)", "0", "0", passed=True)
    )
    return rows


def setup_text(clients: int) -> str:
    """How the server is run and driven."""
    return f"{clients} keep-alive clients, {WORKERS} workers x {THREADS} threads"


def noop_rows(noop: dict[int, LoadResult]) -> list[Row]:
    """The no-op's throughput and latency at each client count."""
    rows = []
    for clients, result in noop.items():
        rows += [
            Row(
                "B3",
                f"no-op Flask JSON endpoint, same server ({setup_text(clients)}, "
                f"{result.seconds:.1f} s)",
                rate_text(result.requests_per_second),
            ),
            Row(
                "B3",
                f"no-op, {clients} clients: p50 / p99 latency "
                f"(what the server and clients cost alone)",
                f"{ms_text(percentile(result.latencies, 0.5))} / "
                f"{ms_text(percentile(result.latencies, 0.99))}",
            ),
        ]
    return rows


def bank_rows(
    row_id: str,
    database: str,
    bank: dict[int, BankLoad],
    noop: dict[int, LoadResult],
) -> list[Row]:
    """The bank's throughput against the no-op's, its latency and group size."""
    rows = []
    for clients, load in bank.items():
        result = load.result
        ratio = result.requests_per_second / noop[clients].requests_per_second
        p99 = percentile(result.latencies, 0.99)
        where = f"{database}, {clients} clients"
        rows += [
            Row(
                row_id,
                f"bank: deposits over HTTP, {database} ({setup_text(clients)}, "
                f"{result.seconds:.1f} s)",
                rate_text(result.requests_per_second),
            ),
            judged(
                row_id,
                f"{where}: bank ÷ no-op throughput",
                ratio_text(ratio),
                f"≥ {TARGET_RATIO}",
                ratio >= TARGET_RATIO,
            ),
            Row(
                row_id,
                f"{where}: bank p50 latency",
                ms_text(percentile(result.latencies, 0.5)),
            ),
            judged(
                row_id,
                f"{where}: bank p99 latency",
                ms_text(p99),
                f"< {ms_text(TARGET_P99_SECONDS)}",
                p99 < TARGET_P99_SECONDS,
            )
            if clients == P99_CLIENTS
            else Row(row_id, f"{where}: bank p99 latency", ms_text(p99)),
            Row(
                row_id,
                f"{where}: mean group size (commands ÷ commits, from GET /api/health "
                f"before and after)",
                load.mean_group_size,
            ),
            lag_row(row_id, where, load.lags),
        ]
    return rows


def lag_row(row_id: str, where: str, lags: list[float]) -> Row:
    """The projection lag's p99 under the load, held to its target."""
    figure = (
        f"{where}: projection lag p99 (a probe's deposit answered → its rows "
        f"readable; {len(lags)} probes, bank projector beside the workers)"
    )
    if not lags:
        return Row(row_id, figure, "no probe finished", f"≤ {ms_text(TARGET_LAG)}")
    p99 = percentile(lags, 0.99)
    return judged(
        row_id, figure, ms_text(p99), f"≤ {ms_text(TARGET_LAG)}", p99 <= TARGET_LAG
    )


def load_postgres(directory: Path, seconds: float) -> dict[int, BankLoad]:
    """The bank on a fresh PostgreSQL schema, its tables made before it starts."""
    with postgres_schema() as schema:
        settings = {"SQLALCHEMY_SCHEMA": schema, "BANK_SQLALCHEMY_SCHEMA": schema}
        BankApplication(env={"SQLALCHEMY_URL": POSTGRES_URL, **settings}).close()
        return load_bank(directory, "postgres", POSTGRES_URL, settings, seconds)


def load_bank(
    directory: Path,
    name: str,
    url: str,
    settings: Mapping[str, str],
    seconds: float,
) -> dict[int, BankLoad]:
    """`bank serve` on the database; at each client count, each client's account."""
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
        url,
    ]
    loads = {}
    env = {**os.environ, **settings}
    with running_server(argv, port, directory / f"bank-{name}.log", env):
        for clients in CLIENT_COUNTS:
            account_ids = [
                open_account(port, f"b3-{clients}-{n}") for n in range(clients)
            ]
            probe_account = open_account(port, f"b3-{clients}-lag")
            before = group_commits(port)
            with LagProbe(port, {**settings, "SQLALCHEMY_URL": url}, probe_account) as (
                probe
            ):
                result = drive(port, [deposit_body(a) for a in account_ids], seconds)
            after = group_commits(port)
            result.raise_if_failed(f"the bank on {name}")
            check_balances(port, account_ids, result)
            loads[clients] = BankLoad(
                result, mean_group_size(before, after), probe.lags
            )
    return loads


def load_noop(directory: Path, seconds: float) -> dict[int, LoadResult]:
    """The no-op app served as `bank serve` serves the bank, driven the same way."""
    port = free_port()
    argv = gunicorn_argv(HOST, port, WORKERS, THREADS, app_factory=NOOP_APP_FACTORY)
    loads = {}
    with running_server(argv, port, directory / "noop.log"):
        for clients in CLIENT_COUNTS:
            bodies = [deposit_body(f"b3-{n}") for n in range(clients)]
            result = drive(port, bodies, seconds)
            result.raise_if_failed("the no-op app")
            loads[clients] = result
    return loads


def group_commits(port: int) -> dict[int, GroupCommits] | str:
    """Each worker's group-commit counters by pid, or why there are none.

    Every fresh connection is answered by one worker; ask until each of the
    WORKERS has answered, or HEALTH_ATTEMPTS times.
    """
    workers: dict[int, GroupCommits] = {}
    for _ in range(HEALTH_ATTEMPTS):
        answer = health_once(port)
        if "group_commit" not in answer:
            return NO_GROUP_COMMITS
        counters = answer["group_commit"]
        if counters is None:
            return GROUP_COMMIT_OFF
        if not isinstance(counters, dict):
            raise ServerError(f"health's group_commit is not an object: {counters!r}")
        pid = worker_pid(answer, counters)
        if pid is None:
            return "n/a (health reports group commits without the worker's pid)"
        workers[pid] = parse_group_commits(counters)
        if len(workers) == WORKERS:
            break
    return workers


def worker_pid(answer: dict[str, Any], counters: dict[str, Any]) -> int | None:
    """The answering worker's pid, wherever health puts it."""
    for holder, key in PID_FIELDS:
        pid = (answer if holder == "answer" else counters).get(key)
        if isinstance(pid, int):
            return pid
    return None


def parse_group_commits(counters: dict[str, Any]) -> GroupCommits:
    """The two counters, checked to be whole numbers."""
    transactions, commands = counters.get("transactions"), counters.get("commands")
    if not isinstance(transactions, int) or not isinstance(commands, int):
        raise ServerError(f"health's group_commit is not two whole numbers: {counters}")
    return GroupCommits(transactions, commands)


def mean_group_size(
    before: dict[int, GroupCommits] | str, after: dict[int, GroupCommits] | str
) -> str:
    """Commands per commit over the load, summed over the workers seen both times."""
    if isinstance(before, str):
        return before
    if isinstance(after, str):
        return after
    pids = before.keys() & after.keys()
    transactions = sum(after[p].transactions - before[p].transactions for p in pids)
    commands = sum(after[p].commands - before[p].commands for p in pids)
    if transactions <= 0:
        return f"n/a (no group commits counted by {len(pids)} worker(s))"
    seen = "" if len(pids) == WORKERS else f" ({len(pids)} of {WORKERS} workers)"
    return f"{commands / transactions:.2f}{seen}"


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
