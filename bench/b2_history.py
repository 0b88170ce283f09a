"""B2: a command costs the same however long the account's history already is."""

from __future__ import annotations

import tempfile
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

from bank import BankApplication
from bench.measure import per_second, rate_text, ratio_text
from bench.report import Row, judged
from bench.stores import sqlite_url

if TYPE_CHECKING:
    from bench.sizes import Sizes

TARGET_RATIO = 0.9
# No cache, no snapshots: every command replays the account's whole history.
NAIVE_SETTINGS = {
    "AGGREGATE_CACHE_MAXSIZE": "",
    "SNAPSHOT_INTERVAL": "0",
    "IS_SNAPSHOTTING_ENABLED": "n",
}


def run(sizes: Sizes) -> list[Row]:
    """Deposit rate late in a long history against early, default and naive."""
    with tempfile.TemporaryDirectory(prefix="bench-b2-") as directory:
        default_app = BankApplication(
            env={"SQLALCHEMY_URL": sqlite_url(Path(directory) / "default.db")}
        )
        try:
            durations = deposit_durations(default_app, sizes.b2_deposits)
        finally:
            default_app.close()
        naive_app = BankApplication(
            env=dict(
                SQLALCHEMY_URL=sqlite_url(Path(directory) / "naive.db"),
                **NAIVE_SETTINGS,
            )
        )
        try:
            check_naive(naive_app)
            naive_durations = deposit_durations(naive_app, sizes.b2_naive_deposits)
        finally:
            naive_app.close()

    window = sizes.b2_window
    first, last = window_rates(durations, window)
    naive_window = max(1, sizes.b2_naive_deposits // 10)
    naive_first, naive_last = window_rates(naive_durations, naive_window)
    total = f"{sizes.b2_deposits:,}"
    return [
        Row(
            "B2",
            f"deposits/s, first {window:,} of {total} (defaults)",
            rate_text(first),
        ),
        Row(
            "B2", f"deposits/s, last {window:,} of {total} (defaults)", rate_text(last)
        ),
        judged(
            "B2",
            "last ÷ first (defaults: cache + snapshots)",
            ratio_text(last / first),
            f"≥ {TARGET_RATIO}",
            last / first >= TARGET_RATIO,
        ),
        Row(
            "B2",
            f"naive: replay every event on every command (checked: no cache, "
            f"no snapshot store): "
            f"last {naive_window:,} ÷ first {naive_window:,} of "
            f"{sizes.b2_naive_deposits:,} deposits "
            f"({rate_text(naive_last)} vs {rate_text(naive_first)})",
            ratio_text(naive_last / naive_first),
            "baseline, falls",
        ),
    ]


def check_naive(app: BankApplication) -> None:
    """Refuse to call it naive unless the cache and snapshots really are off."""
    if app.repository.cache is not None or app.snapshots is not None:
        raise AssertionError(
            f"naive settings did not take effect: cache={app.repository.cache!r}, "
            f"snapshots={app.snapshots!r}"
        )


def deposit_durations(app: BankApplication, count: int) -> list[float]:
    """Open one account, deposit 1 cent `count` times; the seconds each took."""
    account_id = app.open_account("b2@example.com")
    durations = []
    for _ in range(count):
        start = perf_counter()
        app.deposit(account_id, 1)
        durations.append(perf_counter() - start)
    balance = app.get_balance(account_id)
    if balance != count:
        raise AssertionError(f"balance {balance} after {count} deposits of 1 cent")
    return durations


def window_rates(durations: list[float], window: int) -> tuple[float, float]:
    """Commands per second over the first and over the last `window` commands."""
    return (
        per_second(window, sum(durations[:window])),
        per_second(window, sum(durations[-window:])),
    )
