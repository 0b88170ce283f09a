"""How much work each benchmark does: the full run and the smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """The work sizes of every benchmark, in one place."""

    b1_commands: int
    b2_deposits: int
    b2_window: int
    b2_naive_deposits: int
    b3_seconds: float
    b4_batch_size: int
    b4_batches: int
    b5_deposits: int
    b5_snapshot_loads: int
    b5_replay_loads: int
    b6_seconds: float
    b6_rounds: int
    b7_events: int
    b7_small_accounts: int
    b7_large_accounts: int
    b7_rounds: int


FULL = Sizes(
    b1_commands=2_000,
    b2_deposits=10_000,
    b2_window=1_000,
    b2_naive_deposits=1_000,
    # Six timed loads (bank on SQLite and PostgreSQL, no-op; 8 and 32 clients).
    b3_seconds=4.0,
    b4_batch_size=1_000,
    b4_batches=5,
    b5_deposits=100_000,
    b5_snapshot_loads=5,
    b5_replay_loads=3,
    # Per N and per loop (bank, raw), split into alternating rounds.
    b6_seconds=3.0,
    b6_rounds=2,
    # Per database and size, split into alternating rounds.
    b7_events=100_000,
    b7_small_accounts=1_000,
    b7_large_accounts=100_000,
    b7_rounds=3,
)

SMOKE = Sizes(
    b1_commands=50,
    b2_deposits=400,
    b2_window=40,
    b2_naive_deposits=100,
    b3_seconds=1.0,
    b4_batch_size=100,
    b4_batches=2,
    b5_deposits=1_500,
    b5_snapshot_loads=2,
    b5_replay_loads=1,
    b6_seconds=0.5,
    b6_rounds=1,
    b7_events=2_000,
    b7_small_accounts=20,
    b7_large_accounts=1_000,
    b7_rounds=1,
)
