"""Load over real HTTP: 16 keep-alive clients race on a few accounts of `bank serve`."""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from live_server import Connection, Ledger, Reply, server_fixture

if TYPE_CHECKING:
    from conftest import BankEnv
    from live_server import Server

pytestmark = pytest.mark.slow

CLIENTS = 16
REQUESTS_PER_CLIENT = 60
RUN_SECONDS = 120.0  # a hard bound: a client stops sending after this long
SEED = 20_240_601
# account id -> (funding in cents, overdraft limit in cents)
ACCOUNTS: dict[str, tuple[int, int]] = {
    "load-a": (20_000, 0),
    "load-b": (10_000, 5_000),
    "load-c": (5_000, 0),
    "load-d": (0, 2_000),
}
# Withdrawals and transfers average more than deposits, so balances sink to
# their limits and some debits are refused for insufficient funds.
KINDS = ("account_deposit", "account_withdraw", "account_transfer")
KIND_WEIGHTS = (35, 30, 35)
MAX_AMOUNT = {"account_deposit": 3_000, "account_withdraw": 6_000}
MAX_TRANSFER = 6_000
EVENT_OF_KIND = {
    "account_deposit": "Deposited",
    "account_withdraw": "Withdrawn",
    "account_transfer": "TransferSent",
}

# `bank serve` with two workers (four threads each) on each real database.
server = server_fixture(workers=2)


@dataclass(frozen=True)
class Sent:
    """One request a client sent and what came back (status 0: no answer)."""

    kind: str
    account_id: str
    to_account_id: str | None
    amount: int
    status: int
    body: Any

    @property
    def acknowledged(self) -> bool:
        """Whether the bank answered 2xx."""
        return 200 <= self.status < 300

    def effects(self) -> dict[str, int]:
        """What the command does to each account's balance if it was applied."""
        if self.kind == "account_deposit":
            return {self.account_id: self.amount}
        if self.kind == "account_withdraw":
            return {self.account_id: -self.amount}
        assert self.to_account_id is not None
        return {self.account_id: -self.amount, self.to_account_id: self.amount}

    def reported_balances(self) -> list[dict[str, Any]]:
        """The account states the 2xx answer reported (both sides of a transfer)."""
        if self.kind == "account_transfer":
            return [self.body["from_account"], self.body["to_account"]]
        return [self.body]


def random_command(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A deposit, withdrawal or transfer on the shared accounts."""
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    account_id, other = rng.sample(sorted(ACCOUNTS), 2)
    if kind == "account_transfer":
        amount = rng.randint(1, MAX_TRANSFER)
        return kind, {
            "from_account_id": account_id,
            "to_account_id": other,
            "amount_in_cents": amount,
        }
    amount = rng.randint(1, MAX_AMOUNT[kind])
    return kind, {"account_id": account_id, "amount_in_cents": amount}


def send(connection: Connection, kind: str, data: dict[str, Any]) -> Sent:
    """Send one command; a transport failure is recorded with status 0."""
    try:
        reply = connection.command(kind, data)
    except (OSError, http.client.HTTPException) as problem:
        reply = Reply(0, {}, repr(problem))
    return Sent(
        kind,
        data.get("account_id") or data["from_account_id"],
        data.get("to_account_id"),
        data["amount_in_cents"],
        reply.status,
        reply.body,
    )


def client(
    server: Server, index: int, start: threading.Barrier, sent: list[Sent]
) -> None:
    """One client thread: its own keep-alive connection, a bounded run."""
    rng = random.Random(SEED + index)
    with server.connect(timeout=30.0) as connection:
        start.wait(timeout=30.0)
        deadline = time.monotonic() + RUN_SECONDS
        for _ in range(REQUESTS_PER_CLIENT):
            if time.monotonic() > deadline:
                break
            sent.append(send(connection, *random_command(rng)))


def open_funded_accounts(server: Server) -> None:
    """Open the shared accounts, set their limits and fund them."""
    for account_id, (funding, limit) in ACCOUNTS.items():
        assert (
            server.command(
                "account_open",
                account_owner_email="load@example.com",
                account_id=account_id,
            )[0]
            == 201
        )
        if limit:
            assert (
                server.command(
                    "account_set_overdraft_limit",
                    account_id=account_id,
                    overdraft_limit_in_cents=limit,
                )[0]
                == 200
            )
        if funding:
            assert (
                server.command(
                    "account_deposit", account_id=account_id, amount_in_cents=funding
                )[0]
                == 200
            )


def run_clients(server: Server) -> tuple[list[Sent], float]:
    """Run every client thread to the end; return what was sent and how long."""
    sent_by_client: list[list[Sent]] = [[] for _ in range(CLIENTS)]
    start = threading.Barrier(CLIENTS + 1)
    threads = [
        threading.Thread(target=client, args=(server, index, start, sent), daemon=True)
        for index, sent in enumerate(sent_by_client)
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=30.0)
    began = time.monotonic()
    for thread in threads:
        thread.join(timeout=RUN_SECONDS + 60.0)
        assert not thread.is_alive(), "a client thread is stuck"
    elapsed = time.monotonic() - began
    return [each for sent in sent_by_client for each in sent], elapsed


def report(sent: list[Sent], elapsed: float, db_env: BankEnv) -> None:
    """Print the run's figures (shown with -s or -rP)."""
    statuses = Counter(each.status for each in sent)
    acknowledged = sum(each.acknowledged for each in sent)
    print(
        f"\nload on {db_env['SQLALCHEMY_URL'].split(':')[0]}: {len(sent)} requests, "
        f"{acknowledged} acknowledged, {len(sent) - acknowledged} refused, "
        f"{sum(n for status, n in statuses.items() if status >= 500)} 5xx, "
        f"{statuses[0]} without an answer, in {elapsed:.1f} s "
        f"({len(sent) / elapsed:.0f} requests/s); statuses {dict(statuses)}"
    )


def assert_only_refusals_for_insufficient_funds(sent: list[Sent]) -> None:
    """Every request got an answer; each non-2xx is a 409 insufficient_funds."""
    assert len(sent) == CLIENTS * REQUESTS_PER_CLIENT
    assert not [each for each in sent if each.status == 0 or each.status >= 500]
    refused = [each for each in sent if not each.acknowledged]
    for each in refused:
        assert each.status == 409, each
        assert set(each.body) == {"error"}, each
        assert set(each.body["error"]) == {"code", "message", "details"}, each
        assert each.body["error"]["code"] == "insufficient_funds", each
        assert isinstance(each.body["error"]["message"], str), each
        assert isinstance(each.body["error"]["details"], dict), each
    assert refused, "the run should have refused some debits"
    assert {each.kind for each in sent if each.acknowledged} == set(KINDS)


def assert_never_below_the_limit(ledger: Ledger) -> None:
    """Replayed, no account's balance is below -limit at any version."""
    for account_id in ACCOUNTS:
        for version, (balance, limit) in ledger.balances(account_id).items():
            assert balance >= -limit, (account_id, version, balance, limit)


def assert_the_ledger_holds_exactly_the_acknowledged(
    server: Server, ledger: Ledger, acknowledged: list[Sent]
) -> None:
    """Balances, event counts, transfers and answered versions all agree."""
    for account_id, (funding, _) in ACCOUNTS.items():
        expected = funding + sum(
            each.effects().get(account_id, 0) for each in acknowledged
        )
        assert ledger.balance(account_id) == expected, account_id
        status, shown = server.request("GET", f"/api/accounts/{account_id}")
        assert (status, shown["balance_in_cents"]) == (200, expected)
        for kind, event_type in EVENT_OF_KIND.items():
            setup = int(kind == "account_deposit" and funding > 0)
            answered = sum(
                each.kind == kind and each.account_id == account_id
                for each in acknowledged
            )
            assert ledger.count(account_id, event_type) == setup + answered, (
                account_id,
                event_type,
            )
    assert ledger.transfers() == {  # and no half-applied transfer
        each.body["transfer_id"]: (each.account_id, each.to_account_id, each.amount)
        for each in acknowledged
        if each.kind == "account_transfer"
    }
    balances = {account_id: ledger.balances(account_id) for account_id in ACCOUNTS}
    for each in acknowledged:
        for state in each.reported_balances():
            balance, _ = balances[state["account_id"]][state["version"]]
            assert balance == state["balance_in_cents"], each


def test_racing_clients_never_overdraw_and_every_acknowledged_command_is_recorded(
    server: Server, db_env: BankEnv
) -> None:
    open_funded_accounts(server)

    sent, elapsed = run_clients(server)

    report(sent, elapsed, db_env)
    assert_only_refusals_for_insufficient_funds(sent)
    ledger = Ledger.read(server, ACCOUNTS)
    assert_never_below_the_limit(ledger)
    acknowledged = [each for each in sent if each.acknowledged]
    assert_the_ledger_holds_exactly_the_acknowledged(server, ledger, acknowledged)
