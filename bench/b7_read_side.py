"""B7: the read models catch up with a backlog as fast at 100k accounts as at 1k.

Each database gets two banks, one of few accounts and one of many, their
read models caught up with their opening. Then, in alternating rounds, the
same number of commands' events is written to each with no projection
running; a fresh process (as `bank projector` would be, without the
writer's heap) reads and decodes them alone (the baseline), then applies
them with `LedgerProjection.catch_up(settle=False)`, timing both.

Run as `python -m bench.b7_read_side ENV_JSON`, this module is that process:
it prints its timings as JSON.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from bank import BankApplication
from bank.commands import (
    MAX_BATCH_SIZE,
    Deposit,
    OpenAccount,
    PostTransfer,
    Transfer,
    Withdraw,
)
from bank.projections import BATCH_SIZE, Ledger
from bench.measure import per_second, rate_text, ratio_text
from bench.report import Row, judged, report_of_process
from bench.stores import POSTGRES_URL, postgres_schema, sqlite_url
from web.testing import postgres_unreachable_reason

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bank.commands import Command
    from bank.eventlog import EventLog
    from bank.persistence.base import LogPosition
    from bench.sizes import Sizes

TARGET_RATE = 30_000
TARGET_RATIO = 0.9
# Enough that no withdrawal or transfer is ever refused: an account pays out at
# most MAX_AMOUNT per event of the backlog.
OPENING_BALANCE = 100_000_000
MAX_AMOUNT = 1_000
# The events each command records: a transfer's two halves and its Transfer's
# Created; a held one's two HoldPlaced and Created; a posting's two HoldPosted
# and Posted.
EVENTS_PER_COMMAND: dict[type[Command], int] = {
    Deposit: 1,
    Withdraw: 1,
    Transfer: 3,
    PostTransfer: 3,
}


def run(sizes: Sizes) -> list[Row]:
    """Catch-up on SQLite and PostgreSQL at both sizes; then the projection lag."""
    return [*sqlite_rows(sizes), *postgres_rows(sizes)]


def sqlite_rows(sizes: Sizes) -> list[Row]:
    """B7a: catch-up on SQLite, a file per bank."""
    with tempfile.TemporaryDirectory(prefix="bench-b7-") as directory:
        envs = (
            {"SQLALCHEMY_URL": sqlite_url(Path(directory) / f"bank-{accounts}.db")}
            for accounts in (sizes.b7_small_accounts, sizes.b7_large_accounts)
        )
        race = Race.run(*envs, sizes=sizes)
    return race.rows("B7a", "SQLite", sizes)


def postgres_rows(sizes: Sizes) -> list[Row]:
    """B7b: catch-up on PostgreSQL, a schema per bank; skipped if it is down."""
    reason = postgres_unreachable_reason(POSTGRES_URL)
    if reason is not None:
        return [
            Row(
                "B7b",
                f"PostgreSQL: catch-up, {ratio_name(sizes)}; skipped: {reason}",
                "-",
                f"≥ {TARGET_RATIO}",
                "SKIP",
            )
        ]
    with postgres_schema() as small, postgres_schema() as large:
        envs = (
            {"SQLALCHEMY_URL": POSTGRES_URL, "SQLALCHEMY_SCHEMA": schema}
            for schema in (small, large)
        )
        race = Race.run(*envs, sizes=sizes)
    return race.rows("B7b", "PostgreSQL", sizes)


@dataclass
class Timings:
    """Events handled and seconds taken, round by round."""

    events: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, events: int, seconds: float) -> None:
        """Record a round."""
        self.events.append(events)
        self.seconds.append(seconds)

    def rate(self) -> float:
        """Events per second over all rounds."""
        return per_second(sum(self.events), sum(self.seconds))

    def rates(self) -> list[float]:
        """Events per second in each round."""
        pairs = zip(self.events, self.seconds, strict=True)
        return [per_second(events, seconds) for events, seconds in pairs]


@dataclass
class Measured:
    """One bank's catch-ups and, of the same events, its reads alone."""

    accounts: int
    catch_up: Timings = field(default_factory=Timings)
    read_alone: Timings = field(default_factory=Timings)


@dataclass
class Race:
    """The small and the large bank of one database, timed in alternating rounds."""

    small: Measured
    large: Measured

    @classmethod
    def run(
        cls, small_env: dict[str, str], large_env: dict[str, str], *, sizes: Sizes
    ) -> Race:
        """Open both banks, then write, read alone and catch up each, round by round."""
        race = cls(Measured(sizes.b7_small_accounts), Measured(sizes.b7_large_accounts))
        per_round = max(1, sizes.b7_events // sizes.b7_rounds)
        with contextlib.ExitStack() as stack:
            banks = [
                (stack.enter_context(Backlog.opened(env, measured.accounts)), measured)
                for env, measured in ((small_env, race.small), (large_env, race.large))
            ]
            for _ in range(sizes.b7_rounds):
                # Both written before either is timed: no writer shares the
                # machine with a timed catch-up.
                for backlog, _measured in banks:
                    backlog.write(per_round)
                for backlog, measured in banks:
                    report = measure(backlog.env)
                    measured.read_alone.add(report["read"], report["read_seconds"])
                    measured.catch_up.add(report["applied"], report["seconds"])
                    check_counts(measured)
        return race

    def rows(self, row_id: str, database: str, sizes: Sizes) -> list[Row]:
        """Each size's rate and its ratio to reading alone; then large ÷ small."""
        rows: list[Row] = []
        for measured in (self.small, self.large):
            catch_up, read_alone = measured.catch_up, measured.read_alone
            where = f"{database}, {accounts_text(measured.accounts)} accounts"
            rows += [
                judged(
                    row_id,
                    f"catch-up, {where}: {sum(catch_up.events):,} events "
                    f"(deposits, withdrawals, transfers, held transfers posted), "
                    f"catch_up(settle=False) in batches of {BATCH_SIZE:,}, "
                    f"{len(catch_up.events)} round(s)",
                    rate_text(catch_up.rate(), " events/s"),
                    f"≥ {TARGET_RATE:,} events/s",
                    catch_up.rate() >= TARGET_RATE,
                ),
                Row(
                    row_id,
                    f"read + decode alone, {where}: the same events, "
                    f"event_log.page(after, {BATCH_SIZE:,}) in a loop",
                    rate_text(read_alone.rate(), " events/s"),
                ),
                Row(
                    row_id,
                    f"catch-up ÷ read + decode alone, {where}",
                    ratio_text(catch_up.rate() / read_alone.rate()),
                ),
            ]
        ratios = [
            large / small
            for small, large in zip(
                self.small.catch_up.rates(), self.large.catch_up.rates(), strict=True
            )
        ]
        ratio = statistics.median(ratios)
        rows.append(
            judged(
                row_id,
                f"catch-up, {database}: {ratio_name(sizes)} "
                f"(median of {len(ratios)} alternating round(s))",
                ratio_text(ratio),
                f"≥ {TARGET_RATIO}",
                ratio >= TARGET_RATIO,
            )
        )
        return rows


def check_counts(measured: Measured) -> None:
    """The catch-up applied exactly the events that were read alone."""
    applied, read = measured.catch_up.events[-1], measured.read_alone.events[-1]
    if applied != read:
        raise AssertionError(f"caught up with {applied:,} events, read {read:,}")


class Backlog:
    """A bank of funded accounts whose read models lag its log when written to."""

    def __init__(
        self, app: BankApplication, env: dict[str, str], accounts: int
    ) -> None:
        self.app = app
        self.env = env
        self.rng = random.Random(accounts)
        self.account_ids = [f"b7-{n}" for n in range(accounts)]
        self.unposted: list[str] = []
        half = MAX_BATCH_SIZE // 2
        for start in range(0, accounts, half):
            chunk = self.account_ids[start : start + half]
            app.execute_batch(
                [OpenAccount("b7@example.com", a) for a in chunk]
                + [Deposit(a, OPENING_BALANCE) for a in chunk]
            )
        # Untimed: every account has its row before the backlog.
        Ledger(app).projection.catch_up(settle=False)

    @classmethod
    @contextlib.contextmanager
    def opened(cls, env: dict[str, str], accounts: int) -> Iterator[Backlog]:
        """A bank of that many accounts on the database of `env`, closed after."""
        # The writer keeps every account cached: reloading them would make
        # writing the backlog take longer than all else.
        cached = {**env, "AGGREGATE_CACHE_MAXSIZE": str(max(accounts, 10_000))}
        with BankApplication(env=cached) as app:
            yield cls(app, env, accounts)

    def write(self, events: int) -> None:
        """Record about that many events, in batches, the projection idle."""
        while events > 0:
            commands = self.commands(events)
            results = self.app.execute_batch(commands)
            events -= sum(EVENTS_PER_COMMAND[type(command)] for command in commands)
            self.unposted = [
                result.transfer_id
                for command, result in zip(commands, results, strict=True)
                if isinstance(command, Transfer) and command.pending
                if result.transfer_id is not None
            ]

    def commands(self, events: int) -> list[Command]:
        """The last batch's held transfers posted, then random commands.

        A batch at most, and of about that many events.
        """
        rng, account_ids = self.rng, self.account_ids
        commands: list[Command] = [PostTransfer(t) for t in self.unposted]
        events -= len(commands) * EVENTS_PER_COMMAND[PostTransfer]
        while len(commands) < MAX_BATCH_SIZE and events > 0:
            amount = rng.randint(1, MAX_AMOUNT)
            kind = rng.randrange(10)
            if kind < 4:
                commands.append(Deposit(rng.choice(account_ids), amount))
            elif kind < 5:
                commands.append(Withdraw(rng.choice(account_ids), amount))
            else:
                source, target = rng.sample(account_ids, 2)
                commands.append(Transfer(source, target, amount, pending=kind == 9))
            events -= EVENTS_PER_COMMAND[type(commands[-1])]
        return commands


def measure(env: dict[str, str]) -> dict[str, Any]:
    """Run a fresh process that reads the backlog alone, then catches up with it."""
    return report_of_process("bench.b7_read_side", json.dumps(env), what="catching-up")


def measure_in_this_process(env: dict[str, str]) -> dict[str, Any]:
    """Time reading the backlog alone, then catching up with it, on a new app."""
    with BankApplication(env=env) as app:
        projection = Ledger(app).projection
        # First, so that the catch-up finds the log's pages as warm as it did.
        read, read_seconds = read_alone(app.event_log, projection.position())
        start = perf_counter()
        applied = projection.catch_up(settle=False)
        seconds = perf_counter() - start
    return {
        "read": read,
        "read_seconds": read_seconds,
        "applied": applied,
        "seconds": seconds,
    }


def read_alone(log: EventLog, after: LogPosition) -> tuple[int, float]:
    """Read and decode the log after a position, page by page: events, seconds."""
    events = 0
    start = perf_counter()
    while page := log.page(after, BATCH_SIZE):
        events += len(page)
        after = page[-1].position
    return events, perf_counter() - start


def ratio_name(sizes: Sizes) -> str:
    """The ratio's name, such as 100k ÷ 1k accounts."""
    large = accounts_text(sizes.b7_large_accounts)
    return f"{large} ÷ {accounts_text(sizes.b7_small_accounts)} accounts"


def accounts_text(accounts: int) -> str:
    """A count of accounts such as 1k or 100k."""
    if accounts >= 1000 and accounts % 1000 == 0:
        return f"{accounts // 1000:,}k"
    return f"{accounts:,}"


if __name__ == "__main__":
    print(json.dumps(measure_in_this_process(json.loads(sys.argv[1]))))
