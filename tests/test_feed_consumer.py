"""An outside consumer of the event feed, SIGKILLed and resumed, sees each event once.

Four writer processes send commands to a live `bank serve` while a consumer
subprocess (tests/feed_consumer.py) follows GET /api/events/stream into a
file. The consumer is SIGKILLed twice mid-write and restarted; it resumes with
Last-Event-ID from its file's last complete line. Its file must end up listing
exactly the events that paging GET /api/events lists: same positions, same
order, same objects, each once. The server ends each stream after a few
seconds, so resuming after the server's own end is exercised too.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import multiprocessing
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from feed_consumer import EventStreamParser, resume_point
from live_server import REPO_ROOT, Connection, Ledger, Reply, running_server

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Barrier

    from conftest import BankEnv
    from live_server import Server

WRITERS = 4
COMMANDS_PER_WRITER = 150
COMMANDS = WRITERS * COMMANDS_PER_WRITER
SEED = 20_240_610
# account id -> funding in cents; modest, so that some debits are refused.
ACCOUNTS: dict[str, int] = {
    "feed-a": 40_000,
    "feed-b": 20_000,
    "feed-c": 10_000,
    "feed-d": 5_000,
}
KINDS = ("account_deposit", "account_withdraw", "account_transfer")
KIND_WEIGHTS = (35, 25, 40)
MAX_AMOUNT_IN_CENTS = 3_000
EVENT_OF_KIND = {"account_deposit": "Deposited", "account_withdraw": "Withdrawn"}
# Each kill comes once the writers have sent this share of their commands
# (a random point in each window), so both land in the middle of the writing.
KILL_WINDOWS = ((0.15, 0.40), (0.55, 0.80))
TORN_LINE = b'{"id":"torn-by-a-kill","event":"Depos'  # appended after the last kill

# The feed, quick: a heartbeat each second, each stream ended after three.
FEED_SETTINGS = {"BANK_FEED_HEARTBEAT_SECONDS": "1", "BANK_FEED_STREAM_SECONDS": "3"}
CONSUMER_READ_TIMEOUT_SECONDS = 5.0  # silence this long (no heartbeat): reconnect
CONSUMER_MAX_SECONDS = 150.0  # the consumer ends itself by then, orphaned or not
CONSUMER_SCRIPT = Path(__file__).with_name("feed_consumer.py")
REQUEST_SECONDS = 10.0
STARTUP_SECONDS = 20.0
WRITING_SECONDS = 40.0
CATCH_UP_SECONDS = 20.0
SHUTDOWN_SECONDS = 10.0
PAGE_LIMIT = 1000
MAX_PAGES = 100
POLL_SECONDS = 0.01


@pytest.fixture(name="server")
def feed_server(db_env: BankEnv, tmp_path: Path) -> Iterator[Server]:
    """`bank serve` with two workers on each real database, with a quick feed."""
    with running_server({**db_env, **FEED_SETTINGS}, tmp_path) as server:
        yield server


def random_command(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A deposit, withdrawal or transfer on the shared accounts."""
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    account_id, other = rng.sample(sorted(ACCOUNTS), 2)
    amount = rng.randint(1, MAX_AMOUNT_IN_CENTS)
    if kind == "account_transfer":
        return kind, {
            "from_account_id": account_id,
            "to_account_id": other,
            "amount_in_cents": amount,
        }
    return kind, {"account_id": account_id, "amount_in_cents": amount}


def write_commands(
    port: int, index: int, start: Barrier, progress: Synchronized[int], results: str
) -> None:
    """One writer process: its own connection, a bounded run, its answers saved."""
    rng = random.Random(SEED + index)
    sent: list[dict[str, Any]] = []
    try:
        with Connection(port, timeout=REQUEST_SECONDS) as connection:
            start.wait(timeout=STARTUP_SECONDS)
            deadline = time.monotonic() + WRITING_SECONDS
            for _ in range(COMMANDS_PER_WRITER):
                if time.monotonic() > deadline:
                    break
                kind, data = random_command(rng)
                try:
                    reply = connection.command(kind, data)
                except (OSError, http.client.HTTPException) as problem:
                    reply = Reply(0, {}, repr(problem))
                sent.append(
                    {
                        "kind": kind,
                        "data": data,
                        "status": reply.status,
                        "body": reply.body,
                    }
                )
                with progress.get_lock():
                    progress.value += 1
    finally:
        Path(results).write_text(json.dumps(sent))


@dataclass(frozen=True)
class Sent:
    """One command a writer sent and the answer (status 0: none)."""

    kind: str
    data: dict[str, Any]
    status: int
    body: Any

    @property
    def accepted(self) -> bool:
        """Whether the bank answered 2xx."""
        return 200 <= self.status < 300


class Consumer:
    """tests/feed_consumer.py as a subprocess: start, SIGKILL, stop, its file."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.output = directory / "feed.jsonl"
        self.log_path = directory / "consumer.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.expected_resumes: list[str | None] = []

    @property
    def running(self) -> bool:
        """Whether the consumer process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start it; note where it should resume (its file's last whole line)."""
        assert not self.running, "the consumer is already running"
        self.expected_resumes.append(last_complete_id(self.output))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(CONSUMER_SCRIPT),
                    "--port",
                    str(self.port),
                    "--output",
                    str(self.output),
                    "--read-timeout",
                    str(CONSUMER_READ_TIMEOUT_SECONDS),
                    "--max-seconds",
                    str(CONSUMER_MAX_SECONDS),
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> int:
        """SIGKILL it, wherever it is; return how many lines its file has."""
        assert self.process is not None, "the consumer was never started"
        self.process.kill()
        self.process.wait(SHUTDOWN_SECONDS)
        return len(self.lines())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; a no-op once it has exited."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(SHUTDOWN_SECONDS)

    def lines(self) -> list[bytes]:
        """The file's complete lines (a torn last one left out)."""
        if not self.output.exists():
            return []
        return self.output.read_bytes().split(b"\n")[:-1]

    def records(self) -> list[dict[str, Any]]:
        """The file's complete lines, decoded."""
        return [json.loads(line) for line in self.lines()]

    def log(self) -> str:
        """What the consumer wrote to stderr, over all its runs."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Fail the test, with the consumer's log, if it has exited."""
        if not self.running:
            code = None if self.process is None else self.process.returncode
            pytest.fail(f"the consumer exited with {code}; its log:\n{self.log()}")

    def wait_until_connected(self, timeout: float) -> None:
        """Wait until its latest run has a stream open."""
        deadline = time.monotonic() + timeout
        while self.log().count(" connected after ") < len(self.expected_resumes):
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"the consumer did not connect; its log:\n{self.log()}")
            time.sleep(POLL_SECONDS)

    def wait_until_seen(self, position: str, timeout: float) -> float:
        """Wait until its file's last line is the event at `position`; how long."""
        began = time.monotonic()
        while (last_complete_id(self.output)) != position:
            self.check_alive()
            if time.monotonic() - began > timeout:
                pytest.fail(
                    f"the consumer did not reach {position} within {timeout} s: "
                    f"{len(self.lines())} lines, the last "
                    f"{last_complete_id(self.output)}; its log:\n{self.log()}"
                )
            time.sleep(POLL_SECONDS)
        return time.monotonic() - began


def last_complete_id(path: Path) -> str | None:
    """The id on the file's last newline-terminated line (None: no such line)."""
    if not path.exists():
        return None
    complete = path.read_bytes().split(b"\n")[:-1]
    if not complete:
        return None
    last_id: str | None = json.loads(complete[-1])["id"]
    return last_id


@dataclass(frozen=True)
class Run:
    """What the writers sent, and the consumer's file when each kill struck."""

    sent: list[Sent]
    lines_at_kills: list[int]
    commands_at_kills: list[int]
    seconds: float


def run_writers(
    server: Server, consumer: Consumer, directory: Path, rng: random.Random
) -> Run:
    """Run the writer processes to the end, killing and restarting the consumer."""
    kill_points = [round(rng.uniform(*window) * COMMANDS) for window in KILL_WINDOWS]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS + 1)
    progress = context.Value(ctypes.c_int, 0)
    files = [directory / f"writer-{index}.json" for index in range(WRITERS)]
    writers = [
        context.Process(
            target=write_commands,
            args=(server.port, index, start, progress, str(path)),
            name=f"writer-{index}",
            daemon=True,
        )
        for index, path in enumerate(files)
    ]
    lines_at_kills: list[int] = []
    commands_at_kills: list[int] = []
    try:
        for writer in writers:
            writer.start()
        try:
            start.wait(timeout=STARTUP_SECONDS)
        except threading.BrokenBarrierError:
            codes = {writer.name: writer.exitcode for writer in writers}
            pytest.fail(f"the writers did not all start (exit codes {codes})")
        began = time.monotonic()
        deadline = began + WRITING_SECONDS + REQUEST_SECONDS
        while any(writer.is_alive() for writer in writers):
            if time.monotonic() > deadline:
                pytest.fail(f"writers still running after {WRITING_SECONDS} s")
            if kill_points and progress.value >= kill_points[0]:
                consumer.check_alive()  # it did not die on its own before
                lines_at_kills.append(consumer.kill())
                commands_at_kills.append(progress.value)
                kill_points.pop(0)
                if not kill_points:
                    # As if the kill had cut a write short: the restart drops it.
                    with consumer.output.open("ab") as file:
                        file.write(TORN_LINE)
                consumer.start()
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - began
    finally:
        for writer in writers:
            if writer.pid is None:
                continue  # never started
            if writer.is_alive():
                writer.kill()
            writer.join(timeout=SHUTDOWN_SECONDS)
    failed = {writer.name: writer.exitcode for writer in writers}
    assert all(code == 0 for code in failed.values()), f"exit codes {failed}"
    sent = [Sent(**each) for path in files for each in json.loads(path.read_text())]
    return Run(sent, lines_at_kills, commands_at_kills, seconds)


def read_feed(server: Server) -> list[dict[str, Any]]:
    """Every event of the log, paging GET /api/events with next_after."""
    events: list[dict[str, Any]] = []
    query = f"limit={PAGE_LIMIT}"
    with server.connect() as connection:
        for _ in range(MAX_PAGES):
            reply = connection.request("GET", f"/api/events?{query}")
            assert reply.status == 200, reply
            assert set(reply.body) >= {"events", "next_after"}, reply.body
            page: list[dict[str, Any]] = reply.body["events"]
            events += page
            if len(page) < PAGE_LIMIT:
                return events
            query = f"after={reply.body['next_after']}&limit={PAGE_LIMIT}"
    pytest.fail(f"the feed has more than {MAX_PAGES} pages of {PAGE_LIMIT}")


def open_funded_accounts(server: Server) -> None:
    """Open the shared accounts and fund them."""
    for account_id, funding in ACCOUNTS.items():
        opened = server.command(
            "account_open",
            account_owner_email="feed@example.com",
            account_id=account_id,
        )
        funded = server.command(
            "account_deposit", account_id=account_id, amount_in_cents=funding
        )
        assert (opened[0], funded[0]) == (201, 200), (opened, funded)


def difference(seen: Sequence[str], expected: Sequence[str]) -> str:
    """How the consumer's positions differ from the log's, for a failure message."""
    counts = Counter(seen)
    duplicated = sorted(position for position, n in counts.items() if n > 1)
    missing = [position for position in expected if position not in counts]
    extra = sorted(set(seen) - set(expected))
    first = next(
        (
            index
            for index, (a, b) in enumerate(zip(seen, expected, strict=False))
            if a != b
        ),
        min(len(seen), len(expected)),
    )
    return (
        f"{len(seen)} seen, {len(expected)} in the log; duplicated "
        f"{duplicated[:10]}; missing {missing[:10]}; not in the log {extra[:10]}; "
        f"first difference at index {first}: seen "
        f"{list(seen[first : first + 3])}, log {list(expected[first : first + 3])}"
    )


def resumes_logged(log: str) -> list[str | None]:
    """Where each run of the consumer said it resumed (None: the log's start)."""
    return [
        None if found == "None" else found
        for found in re.findall(r"started, resuming after (\S+)", log)
    ]


def same_instant(a: str, b: str) -> bool:
    """Whether two ISO 8601 timestamps name the same instant."""
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


def assert_the_writers_were_answered(sent: list[Sent]) -> None:
    """Every command got an answer; refusals are for insufficient funds only."""
    assert len(sent) == COMMANDS, "a writer stopped early"
    assert not [each for each in sent if each.status == 0 or each.status >= 500]
    for each in sent:
        if not each.accepted:
            assert each.status == 409, each
            assert each.body["error"]["code"] == "insufficient_funds", each
        else:
            assert isinstance(each.body.get("position"), str), each


def assert_the_file_is_the_log(
    records: list[dict[str, Any]], log: list[dict[str, Any]]
) -> None:
    """The consumer's lines are the log's events: same order, same objects, once."""
    positions = [event["position"] for event in log]
    assert len(set(positions)) == len(positions), "the paged log repeats a position"
    seen = [record["id"] for record in records]
    assert seen == positions, difference(seen, positions)
    for record, event in zip(records, log, strict=True):
        assert record["data"] == event, (record, event)
        assert record["event"] == event["type"], record


def assert_the_log_holds_what_was_accepted(
    log: list[dict[str, Any]], ledger: Ledger, accepted: list[Sent]
) -> None:
    """The log's events are the accounts' own and the transfers', as accepted."""
    by_account: dict[str | None, list[dict[str, Any]]] = {}
    for event in log:
        by_account.setdefault(event["account_id"], []).append(event)
    for account_id in ACCOUNTS:
        listed = ledger.events[account_id]
        logged = by_account.pop(account_id, [])
        assert [(e["type"], e["version"], e["data"]) for e in logged] == [
            (e["type"], e["version"], e["data"]) for e in listed
        ], account_id
        for a, b in zip(logged, listed, strict=True):
            assert same_instant(a["timestamp"], b["timestamp"]), (a, b)
    kinds = Counter(each.kind for each in accepted)
    account_events = sum(len(ledger.events[account_id]) for account_id in ACCOUNTS)
    assert account_events == (
        2 * len(ACCOUNTS)  # opened and funded
        + kinds["account_deposit"]
        + kinds["account_withdraw"]
        + 2 * kinds["account_transfer"]  # TransferSent and TransferReceived
    )
    # What is left is the transfers' own events: one as each is made.
    transfers = [event for events in by_account.values() for event in events]
    assert len(transfers) == kinds["account_transfer"], Counter(
        (event["account_id"], event["type"]) for event in transfers
    )
    assert {event["data"].get("transfer_id") for event in transfers} == {
        each.body["transfer_id"] for each in accepted if each.kind == "account_transfer"
    }
    at_position = {event["position"]: event for event in log}
    for each in accepted:
        at = at_position[each.body["position"]]
        if each.kind == "account_transfer":
            assert at["data"].get("transfer_id") == each.body["transfer_id"], (each, at)
        else:
            assert (at["account_id"], at["type"], at["version"]) == (
                each.data["account_id"],
                EVENT_OF_KIND[each.kind],
                each.body["version"],
            ), (each, at)


def report(
    db_env: BankEnv,
    run: Run,
    log: list[dict[str, Any]],
    consumer_log: str,
    catch_up: float,
) -> None:
    """Print the run's figures (shown with -s or -rP)."""
    accepted = sum(each.accepted for each in run.sent)
    types = Counter(event["type"] for event in log)
    print(
        f"\nfeed on {db_env['SQLALCHEMY_URL'].split(':')[0]}: {len(run.sent)} "
        f"commands from {WRITERS} writer processes in {run.seconds:.1f} s, "
        f"{accepted} accepted, {len(run.sent) - accepted} refused; {len(log)} "
        f"events {dict(types)}; consumer killed after {run.commands_at_kills} "
        f"commands with {run.lines_at_kills} lines in its file, "
        f"{consumer_log.count(' connected after ')} streams opened, "
        f"{consumer_log.count('stream ended by the server')} ended by the server, "
        f"{consumer_log.count('reconnecting after')} broken; caught up "
        f"{catch_up:.2f} s after the writers"
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_feed_consumer_killed_and_resumed_twice_sees_every_event_once_in_order(
    server: Server, db_env: BankEnv, tmp_path: Path
) -> None:
    # Given a live bank with funded shared accounts, and a consumer following
    # its event stream from the start of the log.
    rng = random.Random(SEED)
    open_funded_accounts(server)
    consumer = Consumer(server.port, tmp_path)
    try:
        consumer.start()
        consumer.wait_until_connected(STARTUP_SECONDS)

        # When four writer processes send their commands, while the consumer
        # is SIGKILLed twice and each time restarted from its own file.
        run = run_writers(server, consumer, tmp_path, rng)

        # And, once the writers are done, the consumer reaches the log's last
        # event and is stopped.
        log = read_feed(server)
        assert log, "the log is empty"
        catch_up = consumer.wait_until_seen(log[-1]["position"], CATCH_UP_SECONDS)
        consumer.check_alive()
    finally:
        consumer.stop()
    consumer_log = consumer.log()
    report(db_env, run, log, consumer_log, catch_up)

    # Then its file lists exactly the log's events: none missing, none twice,
    # in the server's order, each the object the paged log shows.
    assert_the_file_is_the_log(consumer.records(), log)
    assert consumer.output.read_bytes().endswith(b"\n"), "the torn line stayed"
    # And each run resumed after the last complete line its file held, the
    # torn one left by the second kill dropped.
    assert len(run.lines_at_kills) == len(KILL_WINDOWS), "a kill did not happen"
    assert resumes_logged(consumer_log) == consumer.expected_resumes
    assert consumer.expected_resumes[0] is None
    assert "refused:" not in consumer_log, consumer_log
    # And the log holds exactly the events the accepted commands imply, as
    # the accounts' own event listings show them.
    assert_the_writers_were_answered(run.sent)
    accepted = [each for each in run.sent if each.accepted]
    ledger = Ledger.read(server, ACCOUNTS)
    assert_the_log_holds_what_was_accepted(log, ledger, accepted)


def test_the_consumer_parses_server_sent_events_by_the_standard() -> None:
    # Given the consumer's parser.
    parser = EventStreamParser()
    stream = (
        b"\xef\xbb\xbf: heartbeat\r\n"
        b'id: p1\r\nevent: Deposited\r\ndata: {"a":\r\ndata:1}\r\n\r\n'
        b"retry: 10\n: heartbeat\n\n"  # no data: nothing dispatched
        b"id:p2\revent:Withdrawn\rdata: {}\r\r"
        b'data: {"b": 2}\n\n'  # no id of its own: keeps the last one
    )

    # When it is fed the stream a byte at a time (every split a network might make).
    events = [event for byte in stream for event in parser.feed(bytes([byte]))]

    # Then it dispatches each event whole, comments and empty events skipped.
    assert [(event.id, event.type, event.data) for event in events] == [
        ("p1", "Deposited", '{"a":\n1}'),
        ("p2", "Withdrawn", "{}"),
        ("p2", "message", '{"b": 2}'),
    ]
    assert parser.comments == 2


def test_a_consumer_resumes_after_its_last_complete_line(tmp_path: Path) -> None:
    # Given a consumer's file whose last line a kill tore.
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b'{"id": "p1"}\n{"id": "p2"}\n{"id": "p')

    # When it resumes.
    resumed = resume_point(path)

    # Then it resumes after the last whole line, the torn one dropped.
    assert resumed == "p2"
    assert path.read_bytes() == b'{"id": "p1"}\n{"id": "p2"}\n'
    assert resume_point(tmp_path / "none.jsonl") is None
