"""SIGKILL `bank serve` mid-run: nothing acknowledged is lost, nothing half-applied."""

from __future__ import annotations

import http.client
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from conftest import POSITION, assert_replays, no_holds
from live_server import Ledger, Reply, server_fixture

if TYPE_CHECKING:
    from conftest import BankEnv
    from live_server import Server

pytestmark = pytest.mark.slow

CLIENTS = 8
MAX_REQUESTS_PER_CLIENT = 1_000  # a bound the kill cuts short
KILL_AFTER_SECONDS = 1.5
SEED = 20_240_602
FUNDING_IN_CENTS = 10**9  # ample: no debit here is ever refused
ACCOUNTS = ("crash-a", "crash-b", "crash-c", "crash-d")
RESENT = 25  # about how many acknowledged requests are re-sent as well

# `bank serve` with two workers on each real database.
server = server_fixture(workers=2)


@dataclass
class Request:
    """One command sent with its own Idempotency-Key, and what became of it."""

    key: str
    kind: str
    data: dict[str, Any]
    reply: Reply | None = None  # None: no answer, the outcome is unknown
    problem: str = ""  # why there was no answer

    @property
    def acknowledged(self) -> bool:
        """Whether the bank answered 2xx."""
        return self.reply is not None and self.reply.ok

    @property
    def headers(self) -> dict[str, str]:
        """The request's headers."""
        return {"Idempotency-Key": self.key}

    def effects(self) -> dict[str, int]:
        """What the command does to each account's balance once applied."""
        amount: int = self.data["amount_in_cents"]
        if self.kind == "account_deposit":
            return {self.data["account_id"]: amount}
        return {
            self.data["from_account_id"]: -amount,
            self.data["to_account_id"]: amount,
        }


def random_request(rng: random.Random) -> Request:
    """A deposit or a transfer between two of the accounts, with a unique key."""
    key = f"crash-{uuid.uuid4()}"
    amount = rng.randint(1, 1_000)
    source, target = rng.sample(ACCOUNTS, 2)
    if rng.random() < 0.4:
        return Request(
            key, "account_deposit", {"account_id": source, "amount_in_cents": amount}
        )
    return Request(
        key,
        "account_transfer",
        {"from_account_id": source, "to_account_id": target, "amount_in_cents": amount},
    )


def client(
    server: Server, index: int, stopping: threading.Event, sent: list[Request]
) -> None:
    """Send requests until the server dies (or the bound is reached)."""
    rng = random.Random(SEED + index)
    with server.connect(timeout=10.0) as connection:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if stopping.is_set():
                return
            request = random_request(rng)
            sent.append(request)
            try:
                request.reply = connection.command(
                    request.kind, request.data, request.headers
                )
            except (OSError, http.client.HTTPException) as problem:
                request.problem = type(problem).__name__
                return  # killed mid-request: the outcome is unknown


def run_until_killed(server: Server) -> list[Request]:
    """Run the clients, SIGKILL the server under them, and collect every request."""
    sent_by_client: list[list[Request]] = [[] for _ in range(CLIENTS)]
    stopping = threading.Event()
    threads = [
        threading.Thread(
            target=client, args=(server, index, stopping, sent), daemon=True
        )
        for index, sent in enumerate(sent_by_client)
    ]
    for thread in threads:
        thread.start()
    time.sleep(KILL_AFTER_SECONDS)
    server.kill()
    stopping.set()
    for thread in threads:
        thread.join(timeout=30.0)
        assert not thread.is_alive(), "a client thread is stuck"
    return [request for sent in sent_by_client for request in sent]


def resend(server: Server, request: Request) -> Reply:
    """Send a request again, with the same Idempotency-Key and data."""
    with server.connect() as connection:
        return connection.command(request.kind, request.data, request.headers)


def recorded(ledger: Ledger, request: Request, reply: Reply) -> bool:
    """Whether a command's 2xx answer is borne out by the ledger."""
    if request.kind == "account_transfer":
        expected = (
            request.data["from_account_id"],
            request.data["to_account_id"],
            request.data["amount_in_cents"],
        )
        return ledger.transfers().get(reply.body["transfer_id"]) == expected
    account_id, version = reply.body["account_id"], reply.body["version"]
    events = [
        event for event in ledger.events[account_id] if event["version"] == version
    ]
    return (
        len(events) == 1
        and events[0]["type"] == "Deposited"
        and events[0]["data"]["amount_in_cents"] == request.data["amount_in_cents"]
        and ledger.balances(account_id)[version][0] == reply.body["balance_in_cents"]
    )


def replayed(reply: Reply) -> bool:
    """Whether the bank answered from the key's first execution."""
    return reply.headers.get("idempotent-replayed") == "true"


def open_funded_accounts(server: Server) -> None:
    """Open the accounts and fund them generously."""
    for account_id in ACCOUNTS:
        opened = server.command(
            "account_open",
            account_owner_email="crash@example.com",
            account_id=account_id,
        )
        funded = server.command(
            "account_deposit", account_id=account_id, amount_in_cents=FUNDING_IN_CENTS
        )
        assert (opened[0], funded[0]) == (201, 200)


def report(
    db_env: BankEnv,
    sent: list[Request],
    retried: dict[str, Reply],
    lost: list[Request],
) -> None:
    """Print the run's figures (shown with -s or -rP)."""
    acknowledged = sum(request.acknowledged for request in sent)
    already = sum(replayed(reply) for reply in retried.values())
    problems = Counter(request.problem for request in sent if request.reply is None)
    print(
        f"\ncrash on {db_env['SQLALCHEMY_URL'].split(':')[0]}: {len(sent)} requests "
        f"sent, {acknowledged} acknowledged, {len(retried)} unknown outcome "
        f"({already} had been applied: replayed; {len(retried) - already} "
        f"applied on retry; {dict(problems)}), {len(lost)} lost"
    )


def assert_exactly_once(
    ledger: Ledger, applied: dict[str, tuple[Request, Reply]]
) -> None:
    """Balances, deposits and transfers are those of each command applied once."""
    for account_id in ACCOUNTS:
        expected = FUNDING_IN_CENTS + sum(
            request.effects().get(account_id, 0) for request, _ in applied.values()
        )
        assert ledger.balance(account_id) == expected, account_id
        deposits = sum(
            request.kind == "account_deposit"
            and request.data["account_id"] == account_id
            for request, _ in applied.values()
        )
        assert ledger.count(account_id, "Deposited") == 1 + deposits, account_id
    assert ledger.transfers() == {
        reply.body["transfer_id"]: (
            request.data["from_account_id"],
            request.data["to_account_id"],
            request.data["amount_in_cents"],
        )
        for request, reply in applied.values()
        if request.kind == "account_transfer"
    }
    for request, reply in applied.values():
        assert recorded(ledger, request, reply), request


def test_a_server_killed_mid_run_loses_no_acknowledged_command_and_applies_each_once(
    server: Server, db_env: BankEnv
) -> None:
    open_funded_accounts(server)
    sent = run_until_killed(server)
    acknowledged = {
        request.key: (request, request.reply)
        for request in sent
        if request.reply is not None and request.reply.ok
    }
    unknown = {request.key: request for request in sent if request.reply is None}

    server.restart()
    after_restart = Ledger.read(server, ACCOUNTS)
    retried = {key: resend(server, request) for key, request in unknown.items()}
    sample = list(acknowledged.values())[:: max(1, len(acknowledged) // RESENT)]
    resent = {request.key: resend(server, request) for request, _ in sample}
    final = Ledger.read(server, ACCOUNTS)

    lost = [
        request
        for request, reply in acknowledged.values()
        if not recorded(after_restart, request, reply)
    ]
    report(db_env, sent, retried, lost)
    assert acknowledged, "the server was killed before it acknowledged anything"
    assert unknown, "the kill caught no request in flight"
    assert len(acknowledged) + len(unknown) == len(sent), "a request was refused"
    assert lost == []
    after_restart.transfers()  # fails on a transfer the kill left half-applied
    for key, reply in retried.items():
        assert reply.ok, reply
        if replayed(reply):  # it had committed before the kill
            assert recorded(after_restart, unknown[key], reply), reply
    for request, reply in sample:
        assert replayed(resent[request.key]), resent[request.key]
        assert_replays(reply.body, resent[request.key].body)
    assert_exactly_once(
        final,
        {
            **acknowledged,
            **{key: (unknown[key], reply) for key, reply in retried.items()},
        },
    )


def test_the_restarted_bank_keeps_working_after_a_kill(server: Server) -> None:
    open_funded_accounts(server)
    run_until_killed(server)

    server.restart()
    opened = server.command("account_open", account_owner_email="after@example.com")
    account_id = opened[1]["account_id"]
    deposited = server.command(
        "account_deposit", account_id=account_id, amount_in_cents=500
    )
    withdrawn = server.command(
        "account_withdraw", account_id=account_id, amount_in_cents=200
    )
    transferred = server.command(
        "account_transfer",
        from_account_id="crash-a",
        to_account_id=account_id,
        amount_in_cents=100,
    )

    assert opened[0] == 201
    assert deposited == (
        200,
        {**no_holds(account_id, 500, version=2), "position": POSITION},
    )
    assert withdrawn == (
        200,
        {**no_holds(account_id, 300, version=3), "position": POSITION},
    )
    assert transferred[0] == 200
    assert transferred[1]["to_account"]["balance_in_cents"] == 400
