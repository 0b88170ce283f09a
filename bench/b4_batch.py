"""B4: a batch of mixed commands in one transaction against the same one by one."""

from __future__ import annotations

import random
import statistics
import tempfile
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

from bank import BankApplication
from bank.commands import Deposit, OpenAccount, Transfer, Withdraw
from bench.measure import per_second, rate_text
from bench.report import Row, judged
from bench.stores import sqlite_url

if TYPE_CHECKING:
    from bank.commands import Command
    from bench.sizes import Sizes

ACCOUNTS = 100
# Enough that no withdrawal or transfer of at most MAX_AMOUNT is ever refused,
# whatever the batches do: each account pays out at most
# MAX_AMOUNT x batch size x (batches + 1) <= 1000 x 1000 x 6 = 6,000,000.
OPENING_BALANCE = 10_000_000
MAX_AMOUNT = 1_000
TARGET_RATE = 20_000


def run(sizes: Sizes) -> list[Row]:
    """Median rate of fresh batches; the same commands one by one; the speed-up."""
    size = sizes.b4_batch_size
    rng = random.Random(4)
    with tempfile.TemporaryDirectory(prefix="bench-b4-") as directory:
        app = BankApplication(
            env={"SQLALCHEMY_URL": sqlite_url(Path(directory) / "bank.db")}
        )
        try:
            account_ids = open_funded_accounts(app)
            batches = [
                mixed_commands(rng, account_ids, size) for _ in range(sizes.b4_batches)
            ]
            batch_seconds = [time_batch(app, batch) for batch in batches]
            one_by_one_seconds = time_one_by_one(app, batches[-1])
            check_money_is_conserved(app, account_ids, [*batches, batches[-1]])
        finally:
            app.close()
    batch_rate = per_second(size, statistics.median(batch_seconds))
    one_by_one_rate = per_second(size, one_by_one_seconds)
    return [
        judged(
            "B4",
            f"execute_batch: {size:,} mixed deposits/withdrawals/transfers on "
            f"{ACCOUNTS} accounts, SQLite (median of {len(batches)} batches)",
            rate_text(batch_rate, " commands/s"),
            f"≥ {TARGET_RATE:,} commands/s",
            batch_rate >= TARGET_RATE,
        ),
        Row(
            "B4",
            "the same commands one by one via execute()",
            rate_text(one_by_one_rate, " commands/s"),
        ),
        Row(
            "B4", "speed-up: batch ÷ one by one", f"{batch_rate / one_by_one_rate:.1f}x"
        ),
    ]


def open_funded_accounts(app: BankApplication) -> list[str]:
    """Open the accounts and fund each, in one batch."""
    account_ids = [f"b4-{n}" for n in range(ACCOUNTS)]
    app.execute_batch(
        [OpenAccount("b4@example.com", a) for a in account_ids]
        + [Deposit(a, OPENING_BALANCE) for a in account_ids]
    )
    return account_ids


def mixed_commands(
    rng: random.Random, account_ids: list[str], size: int
) -> list[Command]:
    """Deposits, withdrawals and transfers in equal parts, on random accounts."""
    commands: list[Command] = []
    for _ in range(size):
        amount = rng.randint(1, MAX_AMOUNT)
        kind = rng.randrange(3)
        if kind == 0:
            commands.append(Deposit(rng.choice(account_ids), amount))
        elif kind == 1:
            commands.append(Withdraw(rng.choice(account_ids), amount))
        else:
            source, target = rng.sample(account_ids, 2)
            commands.append(Transfer(source, target, amount))
    return commands


def time_batch(app: BankApplication, commands: list[Command]) -> float:
    """Seconds to run the commands as one batch."""
    start = perf_counter()
    app.execute_batch(commands)
    return perf_counter() - start


def time_one_by_one(app: BankApplication, commands: list[Command]) -> float:
    """Seconds to run the commands one transaction each."""
    start = perf_counter()
    for command in commands:
        app.execute(command)
    return perf_counter() - start


def check_money_is_conserved(
    app: BankApplication, account_ids: list[str], runs: list[list[Command]]
) -> None:
    """The stored balances add up to the funding plus deposits less withdrawals."""
    expected = OPENING_BALANCE * len(account_ids)
    for command in (command for commands in runs for command in commands):
        if isinstance(command, Deposit):
            expected += command.amount_in_cents
        elif isinstance(command, Withdraw):
            expected -= command.amount_in_cents
    total = sum(app.get_balance(a) for a in account_ids)
    if total != expected:
        raise AssertionError(f"balances add up to {total}, expected {expected}")
