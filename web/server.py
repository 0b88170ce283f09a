"""The HTTP front end of `bank serve`: evented connections, whole requests to threads.

A gunicorn worker class. Each worker process reads its connections on one
asyncio event loop and parses HTTP/1.1 with h11, so an idle or slow
connection costs a coroutine, never a thread. Only a request that has arrived
whole (its head and its body, within the read timeout and the size limits)
goes to a thread of the pool that runs the WSGI application.

The front end answers the errors it finds itself in the API's error contract
(`web.errors`), as JSON: 400 for malformed HTTP (a missing Host included),
408 when a request does not arrive within the read timeout, 413 for a body
over the limit (chunked or not), 414 for a request line over its limit, 431
for headers over theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import h11
from gunicorn.workers.base import Worker

from web.errors import STATUS_BY_CODE, error_document

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterable, Iterator

    WsgiApp = Callable[..., Iterable[bytes]]
    # Where an answered request is logged: peer, request, status, seconds.
    AccessLog = Callable[[str, h11.Request, int, float], None]

logger = logging.getLogger(__name__)

READ_TIMEOUT_SETTING = "BANK_READ_TIMEOUT_SECONDS"
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
# Past these a request's head is refused before it is parsed any further.
MAX_REQUEST_LINE_BYTES = 8190
MAX_HEAD_BYTES = 32 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
HEARTBEAT_SECONDS = 1.0
LINGER_SECONDS = 1.0
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
# How many chunks a streamed answer's iterator may run ahead of the client.
STREAM_CHUNKS_AHEAD = 16


@dataclass(frozen=True)
class Limits:
    """How long and how large a request may be, and how long a connection may idle."""

    read_timeout: float = DEFAULT_READ_TIMEOUT_SECONDS
    keepalive_timeout: float = 5.0
    max_request_line_bytes: int = MAX_REQUEST_LINE_BYTES
    max_head_bytes: int = MAX_HEAD_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class Refusal(Exception):  # noqa: N818  # an answer, not a failure of ours
    """A request the front end answers itself, with a JSON error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


INTERNAL_ERROR = Refusal(
    "internal_error", "Something went wrong on our side; the error is logged."
)


@dataclass(frozen=True)
class Arrived:
    """A request that arrived whole: its head and its body."""

    request: h11.Request
    body: bytes


@dataclass(frozen=True)
class Answer:
    """What the application answered: status, headers and the whole body.

    Or, for an event stream, the body's iterator, sent as it comes.
    """

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stream: Iterator[bytes] | None = None


class Connection:
    """One client connection: read whole requests, answer each, until it ends."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        run_app: Callable[[dict[str, Any]], Answer],
        executor: ThreadPoolExecutor,
        limits: Limits,
        access: AccessLog | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.run_app = run_app
        self.executor = executor
        self.limits = limits
        self.access = access
        # True from a request's first byte until its answer is sent.
        self.busy = False
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=limits.max_head_bytes
        )
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or ("", 0)
        self.peer = (str(peer[0]), str(peer[1]))
        self.local = (str(local[0]), str(local[1]))
        # The start of the request being read, to tell a long request line
        # (414) from long headers (431) when h11 refuses the head.
        self._head_start = bytearray()
        # When the request being read must have arrived whole (loop time).
        self._deadline: float | None = None

    async def serve(self) -> None:
        """Answer requests until the client closes, idles too long, or errs."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    arrived = await self._read_request()
                except Refusal as refusal:
                    await self._refuse(refusal)
                    return
                if arrived is None:
                    return
                started = loop.time()
                environ = self._environ(arrived)
                try:
                    answer = await loop.run_in_executor(
                        self.executor, self.run_app, environ
                    )
                except Exception:
                    # The app answers its own errors; this is a broken app.
                    logger.exception("the application failed to answer")
                    await self._refuse(INTERNAL_ERROR)
                    return
                if answer.stream is not None:
                    # A stream ends its connection: it has no length to delimit it.
                    if self.access is not None:
                        seconds = loop.time() - started
                        self.access(
                            self.peer[0], arrived.request, answer.status, seconds
                        )
                    await self._stream(answer.stream, answer)
                    return
                await self._send(arrived.request, answer)
                if self.access is not None:
                    seconds = loop.time() - started
                    self.access(self.peer[0], arrived.request, answer.status, seconds)
                if self.h11.our_state is not h11.DONE:
                    return
                self.h11.start_next_cycle()
                self._head_start.clear()
                self._deadline = None
                self.busy = False
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            return
        finally:
            self.writer.close()

    async def _read_request(self) -> Arrived | None:
        """The next whole request, or None when the connection ends quietly."""
        request = await self._read_head()
        if request is None:
            return None
        # h11 bounds only a head still arriving; one read may bring it whole.
        if len(request.target) > self.limits.max_request_line_bytes:
            raise Refusal("uri_too_long", "The request line is too long.")
        head_bytes = sum(len(name) + len(value) + 4 for name, value in request.headers)
        if head_bytes > self.limits.max_head_bytes:
            raise Refusal("headers_too_large", "The request headers are too large.")
        length = _content_length(request)
        if length is not None and length > self.limits.max_body_bytes:
            raise Refusal("payload_too_large", self._too_large())
        if self.h11.they_are_waiting_for_100_continue:
            await self._write(
                self.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        body = await self._read_body()
        return Arrived(request, body)

    async def _read_head(self) -> h11.Request | None:
        # A connection may idle between requests for the keep-alive timeout;
        # from a request's first byte, all of it must arrive within the read
        # timeout.
        loop = asyncio.get_running_loop()
        while True:
            event = self._next_event()
            if self._deadline is None and (
                isinstance(event, h11.Request)
                or self._head_start
                or self.h11.trailing_data[0]
            ):
                self._deadline = loop.time() + self.limits.read_timeout
                self.busy = True
            if isinstance(event, h11.Request):
                return event
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return None
            if self._deadline is None:
                idle_until = loop.time() + self.limits.keepalive_timeout
                data = await self._receive(idle_until, idle=True)
            else:
                data = await self._receive(self._deadline, idle=False)
            if not data:
                return None
            if len(self._head_start) < self.limits.max_head_bytes:
                self._head_start += data[: self.limits.max_head_bytes]
            self.h11.receive_data(data)

    async def _read_body(self) -> bytes:
        assert self._deadline is not None  # set when the head began
        chunks: list[bytes] = []
        size = 0
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body_bytes:
                    raise Refusal("payload_too_large", self._too_large())
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError
            else:
                data = await self._receive(self._deadline, idle=False)
                if not data:
                    raise ConnectionResetError
                self.h11.receive_data(data)

    def _next_event(self) -> Any:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as error:
            raise self._refusal_for(error) from None

    def _refusal_for(self, error: h11.RemoteProtocolError) -> Refusal:
        if error.error_status_hint == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
            line_end = self._head_start.find(b"\n")
            if line_end < 0 or line_end > self.limits.max_request_line_bytes:
                return Refusal("uri_too_long", "The request line is too long.")
            return Refusal("headers_too_large", "The request headers are too large.")
        return Refusal("bad_request", f"Malformed HTTP request: {error}.")

    async def _receive(self, until: float, *, idle: bool) -> bytes:
        """Bytes from the client (b"" when it closed) by `until` (loop time).

        Past it, an idle connection ends quietly (b""); a request still
        arriving is refused with 408.
        """
        try:
            async with asyncio.timeout_at(until):
                return await self.reader.read(READ_CHUNK_BYTES)
        except TimeoutError:
            if idle:
                return b""
            raise Refusal(
                "request_timeout",
                f"The request did not arrive within {self.limits.read_timeout:g} s.",
            ) from None

    def _too_large(self) -> str:
        return f"The request body is larger than {self.limits.max_body_bytes:,} bytes."

    async def _refuse(self, refusal: Refusal) -> None:
        """Answer the refusal as a JSON error, then close the connection politely."""
        body = json.dumps(error_document(refusal.code, refusal.message)).encode()
        status = STATUS_BY_CODE[refusal.code]
        headers = [
            JSON_CONTENT_TYPE,
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            response = b"".join(
                self.h11.send(event) or b""
                for event in (
                    h11.Response(
                        status_code=status,
                        headers=headers,
                        reason=HTTPStatus(status).phrase,
                    ),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                )
            )
        except h11.LocalProtocolError:
            # No request head was parsed (it timed out or broke off): h11
            # has no response to send, so it is written as HTTP/1.1 by hand.
            response = _raw_response(status, headers, body)
        try:
            await self._write(response)
            await self._linger()
        except (ConnectionError, TimeoutError):
            return

    async def _linger(self) -> None:
        # Closing a socket with unread input makes the kernel send a reset,
        # which can destroy the answer before the client reads it: stop
        # writing, then read and drop what the client still sends, briefly.
        if self.writer.can_write_eof():
            self.writer.write_eof()
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while await self.reader.read(READ_CHUNK_BYTES):
                    pass
        except TimeoutError:
            return

    async def _send(self, request: h11.Request, answer: Answer) -> None:
        head = self.h11.send(
            h11.Response(
                status_code=answer.status, headers=answer.headers, reason=answer.reason
            )
        )
        parts = [head or b""]
        if answer.body and request.method != b"HEAD":
            parts.append(self.h11.send(h11.Data(data=answer.body)) or b"")
        parts.append(self.h11.send(h11.EndOfMessage()) or b"")
        await self._write(b"".join(parts))

    async def _stream(self, stream: Iterator[bytes], answer: Answer) -> None:
        """Send a streamed answer as its chunks come, until it ends or the client goes.

        The iterator runs on a thread of its own, not the pool's, so that a
        stream (which may last minutes) never holds a request's thread; it is
        let run at most STREAM_CHUNKS_AHEAD chunks ahead of the client.
        """
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        credit = threading.Semaphore(STREAM_CHUNKS_AHEAD)
        stop = threading.Event()

        def hand_over(chunk: bytes | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        def pump() -> None:
            try:
                for chunk in stream:
                    while not credit.acquire(timeout=1.0):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    hand_over(chunk)
            except Exception:
                logger.exception("an event stream failed")
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                hand_over(None)

        head = self.h11.send(
            h11.Response(
                status_code=answer.status, headers=answer.headers, reason=answer.reason
            )
        )
        # Between chunks the connection is idle: a stopping worker may end it.
        self.busy = False
        threading.Thread(target=pump, name="bank-stream", daemon=True).start()
        try:
            await self._write(head)
            while (chunk := await chunks.get()) is not None:
                credit.release()
                if chunk:
                    await self._write(self.h11.send(h11.Data(data=chunk)))
            await self._write(self.h11.send(h11.EndOfMessage()))
        finally:
            stop.set()

    async def _write(self, data: bytes | None) -> None:
        if not data:
            return
        self.writer.write(data)
        async with asyncio.timeout(self.limits.read_timeout):
            await self.writer.drain()

    def _environ(self, arrived: Arrived) -> dict[str, Any]:
        """The WSGI environ of a request that arrived whole (PEP 3333)."""
        request = arrived.request
        path, _, query = _origin_form(request.target).partition(b"?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": self.local[0],
            "SERVER_PORT": self.local[1],
            "SERVER_PROTOCOL": f"HTTP/{request.http_version.decode('ascii')}",
            "REMOTE_ADDR": self.peer[0],
            "REMOTE_PORT": self.peer[1],
            "CONTENT_LENGTH": str(len(arrived.body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(arrived.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for name, value in request.headers:
            if b"_" in name:
                # "X_User" would pose as "X-User" in the environ: dropped.
                continue
            key = name.decode("latin-1").upper().replace("-", "_")
            if key in {"CONTENT_LENGTH", "TRANSFER_ENCODING"}:
                continue  # the body is whole: its length is known
            if key != "CONTENT_TYPE":
                key = f"HTTP_{key}"
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        return environ


def _origin_form(target: bytes) -> bytes:
    """The path and query of a request target, also when it names the host."""
    if target.startswith(b"/"):
        return target
    # "http://host/path?query" (absolute form) or "*" (asterisk form).
    _, _, rest = target.partition(b"://")
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return None


def _raw_response(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    reason = HTTPStatus(status).phrase.encode()
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def wsgi_runner(app: WsgiApp) -> Callable[[dict[str, Any]], Answer]:
    """Call the WSGI application (in a pool thread) and collect its whole answer."""

    def run(environ: dict[str, Any]) -> Answer:
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return body.append

        body: list[bytes] = []
        result = app(environ, start_response)
        status, headers = started or ("", [])
        if _is_event_stream(headers):
            code, _, reason = status.partition(" ")
            encoded = [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in headers
                if name.lower() != "content-length"
            ]
            iterator = iter(result)
            stream = _closing(iterator, result)
            return Answer(int(code), reason.encode("latin-1"), encoded, b"", stream)
        try:
            body.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        content = b"".join(body)
        encoded = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        if not any(name.lower() == b"content-length" for name, _ in encoded):
            encoded.append((b"content-length", str(len(content)).encode()))
        code, _, reason = status.partition(" ")
        return Answer(int(code), reason.encode("latin-1"), encoded, content)

    return run


def _is_event_stream(headers: list[tuple[str, str]]) -> bool:
    return any(
        name.lower() == "content-type" and value.startswith("text/event-stream")
        for name, value in headers
    )


def _closing(iterator: Iterator[bytes], result: Iterable[bytes]) -> Iterator[bytes]:
    """The body's chunks; closing it closes the WSGI result (PEP 3333)."""
    try:
        yield from iterator
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


class EventedWorker(Worker):  # type: ignore[misc]  # gunicorn is untyped
    """A gunicorn worker: asyncio connections, the WSGI app on `--threads` threads."""

    def run(self) -> None:
        """Serve until told to stop, then finish the requests in progress."""
        asyncio.run(self._serve())

    def limits(self) -> Limits:
        """The limits from the settings: gunicorn's keep-alive, ours, the app's."""
        config = getattr(self.wsgi, "config", {})
        return Limits(
            read_timeout=float(
                os.environ.get(READ_TIMEOUT_SETTING) or DEFAULT_READ_TIMEOUT_SECONDS
            ),
            keepalive_timeout=float(self.cfg.keepalive),
            max_body_bytes=int(
                config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY_BYTES
            ),
        )

    async def _serve(self) -> None:
        limits = self.limits()
        run_app = wsgi_runner(self.wsgi)
        access = self._log_access if self.cfg.accesslog else None
        self._open: dict[asyncio.Task[None], Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        with ThreadPoolExecutor(self.cfg.threads, "bank-app") as executor:

            async def served(client: socket.socket) -> None:
                reader, writer = await asyncio.open_connection(sock=client)
                connection = Connection(
                    reader, writer, run_app, executor, limits, access
                )
                task = asyncio.current_task()
                assert task is not None
                self._open[task] = connection
                try:
                    await connection.serve()
                except Exception:
                    self.log.exception("connection failed")
                finally:
                    del self._open[task]

            loop = asyncio.get_running_loop()

            def start(client: socket.socket) -> None:
                if not self.alive:
                    client.close()
                    return
                task = loop.create_task(served(client))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            for listener in self.sockets:
                threading.Thread(
                    target=self._accept,
                    args=(
                        listener.sock,
                        lambda client: loop.call_soon_threadsafe(start, client),
                    ),
                    name="bank-accept",
                    daemon=True,
                ).start()
            while self.alive and self.ppid == os.getppid():
                self.notify()
                await asyncio.sleep(HEARTBEAT_SECONDS)
            deadline = time.monotonic() + self.cfg.graceful_timeout
            while self._open and time.monotonic() < deadline:
                # Connections between requests are closed; requests being
                # read or answered are finished first.
                for task, connection in list(self._open.items()):
                    if not connection.busy:
                        task.cancel()
                self.notify()
                await asyncio.sleep(0.05)

    @staticmethod
    def _accept(
        listener: socket.socket, hand_over: Callable[[socket.socket], object]
    ) -> None:
        """Take connections from the listening socket that the workers share."""
        # A blocking accept(): the kernel queues the workers that wait in it
        # and gives each connection to the one that has waited longest, so
        # keep-alive connections spread evenly. (Waiting for readability
        # instead would wake every worker, and the quickest would take most.)
        listener.setblocking(True)
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                if listener.fileno() < 0:
                    return
                time.sleep(0.01)  # out of descriptors, say: try again shortly
                continue
            client.setblocking(False)
            hand_over(client)

    def _log_access(
        self, peer: str, request: h11.Request, status: int, seconds: float
    ) -> None:
        self.log.access_log.info(
            '%s - - [%s] "%s %s HTTP/%s" %d %.1fms',
            peer,
            time.strftime("%d/%b/%Y:%H:%M:%S %z"),
            request.method.decode("latin-1"),
            request.target.decode("latin-1"),
            request.http_version.decode("latin-1"),
            status,
            seconds * 1000,
        )
