"""Hostile clients against a real `bank serve`: no stalls, every error JSON.

Idle sockets, slow bodies, malformed and oversized requests, sent over raw
sockets to loopback, each bounded in count and time.
"""

from __future__ import annotations

import json
import select
import socket
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from live_server import running_server

from bank import BankApplication
from web.testing import HOST

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import BankEnv
    from live_server import Server

pytestmark = pytest.mark.slow

READ_TIMEOUT_SECONDS = 2.0
IDLE_SOCKETS = 200
SLOW_BODY_CLIENTS = 16
MEASURING_CLIENTS = 4
MEASURE_SECONDS = 4.0
MAX_BODY_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def server(
    module_db_env: BankEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`bank serve` with its defaults but a short read timeout, on each database."""
    serve_args = ["--read-timeout", str(READ_TIMEOUT_SECONDS)]
    log_dir = tmp_path_factory.mktemp("server")
    with running_server(module_db_env, log_dir, serve_args=serve_args) as server:
        yield server


def event_count(server: Server) -> int:
    """How many events the server's database holds."""
    with BankApplication(env=server.db_env) as app:
        return app.event_log.head().notification_id


def exchange(port: int, data: bytes, seconds: float = 10.0) -> bytes:
    """Send raw bytes on a new connection; read until the server closes it."""
    with socket.create_connection((HOST, port), timeout=seconds) as client:
        client.sendall(data)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


def parsed(response: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-cased names) and JSON body of one HTTP answer."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, json.loads(body)


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as bytes."""
    head = "\r\n".join([f"{method} {target} HTTP/1.1", *headers, "", ""])
    return head.encode("latin-1") + body


JSON_HEADERS = ("Host: bank", "Content-Type: application/json")
OPEN_BODY = json.dumps(
    {"command": "account_open", "data": {"account_owner_email": "a@example.com"}}
).encode()
MALFORMED = {
    "HTTP/1.1 without Host": (request("GET", "/api/health"), 400, "bad_request"),
    "a header line without a colon": (
        request("GET", "/api/health", "Host: bank", "Bad Header"),
        400,
        "bad_request",
    ),
    "not HTTP at all": (b"\x16\x03\x01\x02\x00\x01\r\n\r\n", 400, "bad_request"),
    "a request line over 8 KiB": (
        request("GET", "/api/" + "a" * 70_000, "Host: bank"),
        414,
        "uri_too_long",
    ),
    "headers over 32 KiB": (
        request("GET", "/api/health", "Host: bank", "X-Pad: " + "a" * 40_000),
        431,
        "headers_too_large",
    ),
    "a declared body over 1 MiB": (
        request("POST", "/api", *JSON_HEADERS, f"Content-Length: {MAX_BODY_BYTES + 1}"),
        413,
        "payload_too_large",
    ),
    "a declared body over 1 MiB, expecting 100-continue": (
        request(
            "POST",
            "/api",
            *JSON_HEADERS,
            "Expect: 100-continue",
            f"Content-Length: {MAX_BODY_BYTES + 1}",
        ),
        413,
        "payload_too_large",
    ),
    "a chunked body over 1 MiB": (
        request("POST", "/api", *JSON_HEADERS, "Transfer-Encoding: chunked")
        + b"".join(b"10000\r\n" + b"x" * 0x10000 + b"\r\n" for _ in range(17))
        + b"0\r\n\r\n",
        413,
        "payload_too_large",
    ),
    "a head that never ends": (
        b"GET /api/health HTTP/1.1\r\nHost: bank\r\n",
        408,
        "request_timeout",
    ),
    "a body shorter than declared": (
        request("POST", "/api", *JSON_HEADERS, "Content-Length: 1000", body=b"{"),
        408,
        "request_timeout",
    ),
}


@pytest.mark.parametrize(
    ("data", "status", "code"), MALFORMED.values(), ids=MALFORMED.keys()
)
def test_a_request_the_http_server_refuses_gets_a_json_error_and_changes_nothing(
    server: Server, data: bytes, status: int, code: str
) -> None:
    before = event_count(server)

    answer = exchange(server.port, data)

    answer_status, headers, body = parsed(answer)
    assert (answer_status, body["error"]["code"]) == (status, code)
    assert set(body) == {"error"}
    assert body["error"]["message"]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert event_count(server) == before


def test_a_chunked_command_within_the_limit_is_run(server: Server) -> None:
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(OPEN_BODY), OPEN_BODY)
    headers = (*JSON_HEADERS, "Transfer-Encoding: chunked", "Connection: close")

    answer = exchange(server.port, request("POST", "/api", *headers) + chunked)

    status, _, body = parsed(answer)
    assert status == 201
    assert body["balance_in_cents"] == 0


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    server: Server,
) -> None:
    first = request("GET", "/api/accounts/nobody", "Host: bank")
    last = request("GET", "/api/health", "Host: bank", "Connection: close")

    answer = exchange(server.port, first + last)

    not_found, _, rest = answer.partition(b"\r\n\r\n")
    assert not_found.startswith(b"HTTP/1.1 404 ")
    assert b"HTTP/1.1 200 OK" in rest


class SlowBodyClient(threading.Thread):
    """Sends a request head, then its body a byte at a time, again and again."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.answers: list[bytes] = []

    def run(self) -> None:
        """Trickle bodies until told to stop; keep each answer."""
        head = request("POST", "/api", *JSON_HEADERS, "Content-Length: 1000")
        while not self.stop.is_set():
            with socket.create_connection((HOST, self.port), timeout=10) as client:
                client.sendall(head)
                while not self.stop.is_set():
                    # Read the answer as soon as there is one: writing on
                    # after the server has closed would end in a reset.
                    readable, _, _ = select.select([client], [], [], 0.25)
                    if readable:
                        self.answers.append(client.recv(65536))
                        break
                    client.sendall(b" ")


def test_idle_and_slow_clients_do_not_delay_anyone_else(server: Server) -> None:
    [status, _] = server.command("account_open", account_owner_email="a@example.com")
    assert status == 201
    accounts = []
    for index in range(MEASURING_CLIENTS):
        status, body = server.command(
            "account_open", account_owner_email=f"m{index}@example.com"
        )
        accounts.append(body["account_id"])
    idle = [socket.create_connection((HOST, server.port)) for _ in range(IDLE_SOCKETS)]
    stop = threading.Event()
    slow = [SlowBodyClient(server.port, stop) for _ in range(SLOW_BODY_CLIENTS)]
    for client in slow:
        client.start()
    time.sleep(0.5)  # every idle and slow connection is open and waiting
    latencies: list[float] = []

    def deposit_repeatedly(account_id: str) -> None:
        with server.connect() as connection:
            deadline = time.monotonic() + MEASURE_SECONDS
            while time.monotonic() < deadline:
                started = time.perf_counter()
                reply = connection.command(
                    "account_deposit", {"account_id": account_id, "amount_in_cents": 1}
                )
                latencies.append(time.perf_counter() - started)
                assert reply.status == 200, reply

    try:
        measuring = [
            threading.Thread(target=deposit_repeatedly, args=(account_id,))
            for account_id in accounts
        ]
        for thread in measuring:
            thread.start()
        for thread in measuring:
            thread.join(MEASURE_SECONDS + 10)
    finally:
        stop.set()
        for client in slow:
            client.join(10)
        for connection in idle:
            connection.close()

    p99 = statistics.quantiles(latencies, n=100)[98]
    timed_out = [answer for client in slow for answer in client.answers if answer]
    assert len(latencies) > 100, latencies
    assert p99 < 0.100, f"p99 {p99 * 1000:.1f} ms over {len(latencies)} requests"
    assert timed_out, "no slow client was answered"
    for answer in timed_out:
        status, _, body = parsed(answer)
        assert (status, body["error"]["code"]) == (408, "request_timeout")
