"""Many writers on one account: lost races are retried, no account is overdrawn."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from bank import BankApplication, BankError, InsufficientFundsError

if TYPE_CHECKING:
    import threading

    from conftest import BankEnv

WITHDRAWAL_IN_CENTS = 10
AFFORDABLE_WITHDRAWALS = 60
FUNDS_IN_CENTS = WITHDRAWAL_IN_CENTS * AFFORDABLE_WITHDRAWALS


def withdraw_repeatedly(
    env: BankEnv, account_id: str, attempts: int, start: threading.Barrier
) -> Counter[str]:
    """Once every process is ready, try `attempts` withdrawals; count outcomes."""
    outcomes: Counter[str] = Counter()
    with BankApplication(env=env) as app:
        app.get_balance(account_id)  # connect and warm the cache before the race
        start.wait(timeout=60)
        for _ in range(attempts):
            try:
                app.withdraw(account_id, WITHDRAWAL_IN_CENTS)
            except InsufficientFundsError:
                outcomes["insufficient_funds"] += 1
            except BankError as error:
                outcomes[error.code] += 1
            else:
                outcomes["withdrawn"] += 1
    return outcomes


def _open_funded_account(env: BankEnv) -> str:
    with BankApplication(env=env) as app:
        account_id = app.open_account("shared@example.com")
        app.deposit(account_id, FUNDS_IN_CENTS)
    return account_id


def _assert_exactly_the_affordable_withdrawals_succeeded(
    env: BankEnv, account_id: str, outcomes: Counter[str], attempts: int
) -> None:
    assert outcomes == {
        "withdrawn": AFFORDABLE_WITHDRAWALS,
        "insufficient_funds": attempts - AFFORDABLE_WITHDRAWALS,
    }
    with BankApplication(env=env) as app:
        assert app.get_balance(account_id) == 0
        history = app.get_history(account_id)
    assert len(history) == 2 + AFFORDABLE_WITHDRAWALS


@pytest.mark.slow
def test_sixteen_threads_withdrawing_get_exactly_the_affordable_withdrawals(
    db_env: BankEnv,
) -> None:
    account_id = _open_funded_account(db_env)
    threads, per_thread = 16, 6

    outcomes: Counter[str] = Counter()
    with BankApplication(env=db_env) as app, ThreadPoolExecutor(threads) as pool:

        def withdraw_in_shared_app(_: int) -> Counter[str]:
            thread_outcomes: Counter[str] = Counter()
            for _ in range(per_thread):
                try:
                    app.withdraw(account_id, WITHDRAWAL_IN_CENTS)
                except BankError as error:
                    thread_outcomes[error.code] += 1
                else:
                    thread_outcomes["withdrawn"] += 1
            return thread_outcomes

        for thread_outcomes in pool.map(withdraw_in_shared_app, range(threads)):
            outcomes += thread_outcomes

    _assert_exactly_the_affordable_withdrawals_succeeded(
        db_env, account_id, outcomes, threads * per_thread
    )


@pytest.mark.slow
def test_four_processes_withdrawing_get_exactly_the_affordable_withdrawals(
    db_env: BankEnv,
) -> None:
    account_id = _open_funded_account(db_env)
    processes, per_process = 4, 20

    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(processes, mp_context=context) as pool,
    ):
        start = manager.Barrier(processes)
        futures = [
            pool.submit(withdraw_repeatedly, db_env, account_id, per_process, start)
            for _ in range(processes)
        ]
        outcomes = sum((future.result() for future in futures), Counter[str]())

    _assert_exactly_the_affordable_withdrawals_succeeded(
        db_env, account_id, outcomes, processes * per_process
    )
