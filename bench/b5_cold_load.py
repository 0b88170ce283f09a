"""B5: load a long account in a fresh process, from its snapshot and without.

Run as `python -m bench.b5_cold_load URL ACCOUNT_ID y|n`, this module is the
fresh process: it times one `get_account` and prints what it found as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from bank import BankApplication
from bank.commands import MAX_BATCH_SIZE, Deposit
from bench.measure import ms_text
from bench.report import Row, judged, report_of_process
from bench.stores import sqlite_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bench.sizes import Sizes

ACCOUNT_ID = "b5"
TARGET_SECONDS = 0.005
SNAPSHOT_INTERVAL = 100  # the application's default


def run(sizes: Sizes) -> list[Row]:
    """Median cold-load time of a long account, from its snapshot and by full replay."""
    deposits = sizes.b5_deposits
    with tempfile.TemporaryDirectory(prefix="bench-b5-") as directory:
        url = sqlite_url(Path(directory) / "bank.db")
        build_seconds = build_account(url, deposits)
        from_snapshot = [
            cold_load(url, snapshots=True) for _ in range(sizes.b5_snapshot_loads)
        ]
        by_replay = [
            cold_load(url, snapshots=False) for _ in range(sizes.b5_replay_loads)
        ]
        # Counted here, on applications of their own: the timed loads carry no counter.
        after_snapshot = events_replayed(load_env(url, snapshots=True), ACCOUNT_ID)
        replayed = events_replayed(load_env(url, snapshots=False), ACCOUNT_ID)
    events = deposits + 1
    check_loads(from_snapshot, deposits, snapshots=True)
    check_loads(by_replay, deposits, snapshots=False)
    if not after_snapshot < SNAPSHOT_INTERVAL or replayed != events:
        raise AssertionError(
            f"{events} events: {after_snapshot} read after the snapshot, "
            f"{replayed} read without snapshots"
        )
    snapshot_seconds = statistics.median(load["seconds"] for load in from_snapshot)
    replay_seconds = statistics.median(load["seconds"] for load in by_replay)
    return [
        Row(
            "B5",
            f"build one account of {events:,} events in batches of {MAX_BATCH_SIZE:,} "
            f"deposits, SQLite, snapshots every {SNAPSHOT_INTERVAL}",
            f"{build_seconds:.1f} s",
        ),
        judged(
            "B5",
            f"fresh process: get_account from its latest snapshot, then "
            f"{after_snapshot} event(s) after it "
            f"(median of {len(from_snapshot)} processes)",
            ms_text(snapshot_seconds),
            f"≤ {ms_text(TARGET_SECONDS)}",
            snapshot_seconds <= TARGET_SECONDS,
        ),
        Row(
            "B5",
            f"fresh process, IS_SNAPSHOTTING_ENABLED=n: get_account replays all "
            f"{replayed:,} events (median of {len(by_replay)})",
            ms_text(replay_seconds),
        ),
    ]


def load_env(url: str, *, snapshots: bool) -> dict[str, str]:
    """The settings of a loading application: defaults, or snapshots off."""
    if snapshots:
        return {"SQLALCHEMY_URL": url}
    return {"SQLALCHEMY_URL": url, "IS_SNAPSHOTTING_ENABLED": "n"}


def build_account(url: str, deposits: int) -> float:
    """Open the account and deposit 1 cent `deposits` times, in big batches."""
    start = perf_counter()
    app = BankApplication(env={"SQLALCHEMY_URL": url})
    try:
        app.open_account("b5@example.com", ACCOUNT_ID)
        for size in batch_sizes(deposits):
            app.execute_batch([Deposit(ACCOUNT_ID, 1)] * size)
    finally:
        app.close()
    return perf_counter() - start


def batch_sizes(total: int) -> Iterator[int]:
    """Sizes of the fewest batches that add up to `total`."""
    while total > 0:
        yield min(total, MAX_BATCH_SIZE)
        total -= MAX_BATCH_SIZE


def cold_load(url: str, *, snapshots: bool) -> dict[str, Any]:
    """Run one fresh process that loads the account; what it reported."""
    return report_of_process(
        "bench.b5_cold_load",
        url,
        ACCOUNT_ID,
        "y" if snapshots else "n",
        what="loading",
    )


def check_loads(loads: list[dict[str, Any]], deposits: int, *, snapshots: bool) -> None:
    """Each load found the right balance, with or without snapshots as asked."""
    for load in loads:
        if load["balance"] != deposits or load["version"] != deposits + 1:
            raise AssertionError(
                f"wrong account loaded after {deposits} deposits: {load}"
            )
        if load["uses_snapshots"] != snapshots:
            raise AssertionError(f"snapshots {'off' if snapshots else 'on'}: {load}")


def load_in_this_process(
    url: str, account_id: str, *, snapshots: bool
) -> dict[str, Any]:
    """Time one get_account on a new application; what it found."""
    app = BankApplication(env=load_env(url, snapshots=snapshots))
    try:
        start = perf_counter()
        account = app.get_account(account_id)
        seconds = perf_counter() - start
        return {
            "seconds": seconds,
            "balance": account.balance_in_cents,
            "version": account.version,
            "uses_snapshots": app.snapshots is not None,
        }
    finally:
        app.close()


def events_replayed(env: dict[str, str], account_id: str) -> int:
    """How many stored events a new application reads to load the account."""
    app = BankApplication(env=env)
    event_store = app.repository.event_store
    read = event_store.get
    count = 0

    def counting_read(*args: Any, **kwargs: Any) -> Iterator[Any]:
        nonlocal count
        for event in read(*args, **kwargs):
            count += 1
            yield event

    event_store.get = counting_read  # type: ignore[method-assign]
    try:
        app.get_account(account_id)
    finally:
        app.close()
    return count


if __name__ == "__main__":
    url_argument, account_argument, snapshots_argument = sys.argv[1:]
    report = load_in_this_process(
        url_argument, account_argument, snapshots=snapshots_argument == "y"
    )
    print(json.dumps(report))
