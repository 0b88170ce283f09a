"""An outside consumer of the bank's event feed: Server-Sent Events into a file.

Run by path, as a process of its own::

    python tests/feed_consumer.py --port PORT --output FILE

It follows GET /api/events/stream and appends one JSON line per event to FILE,
``{"id": ..., "event": ..., "data": {...}}``, each written whole (one write)
once the event's blank line has arrived. The file is its checkpoint: on start
it drops a torn last line, if any, and resumes with ``Last-Event-ID`` set to
the id of the last complete line (from the log's start when there is none).
When the server ends a stream, or the connection breaks or stays silent past
the read timeout, it reconnects the same way, as a browser's EventSource does.
It runs until it is killed, or for --max-seconds at most (so that an orphan
cannot linger); a refusal of the stream itself (not 200, not an event stream)
ends it with status 2. What it did goes to stderr, one line per fact.

Standard library only, like any client of the API.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

HOST = "127.0.0.1"
STREAM_PATH = "/api/events/stream"
READ_CHUNK_BYTES = 64 * 1024
DEFAULT_READ_TIMEOUT_SECONDS = 45.0  # three of the server's default heartbeats
DEFAULT_MAX_SECONDS = 300.0
RECONNECT_SECONDS = 0.05
DESCRIPTION = "Follow the bank's event feed into a file, resuming where it left off."


class StreamRefusedError(RuntimeError):
    """The server answered the stream request with something other than a stream."""


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: its id (the last one set), type and data."""

    id: str | None
    type: str
    data: str


class EventStreamParser:
    """Bytes of a text/event-stream in, dispatched events out (the WHATWG rules).

    Lines end in CRLF, LF or CR; a line starting with a colon is a comment; a
    field's value loses one leading space; ``data`` lines are joined with LF;
    a blank line dispatches the event (none if it has no data); an ``id``
    holding NUL is ignored; ``retry`` and unknown fields are ignored.
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.comments = 0
        self._pending = b""
        self._started = False
        self._type = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events that the bytes received so far complete."""
        self._pending += chunk
        events: list[ServerSentEvent] = []
        for line in self._lines():
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _lines(self) -> Iterator[str]:
        while True:
            cr, lf = self._pending.find(b"\r"), self._pending.find(b"\n")
            if cr == -1 and lf == -1:
                return
            if lf != -1 and (cr == -1 or lf < cr):
                end, after = lf, lf + 1
            elif cr + 1 == len(self._pending):
                return  # a CR last: wait to see whether an LF follows
            else:
                end = cr
                after = cr + 2 if self._pending[cr + 1 : cr + 2] == b"\n" else cr + 1
            raw, self._pending = self._pending[:end], self._pending[after:]
            line = raw.decode("utf-8", errors="replace")
            if not self._started:
                self._started = True
                line = line.removeprefix("\ufeff")
            yield line

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self.last_event_id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, kind = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        return ServerSentEvent(self.last_event_id, kind, "\n".join(data))


def resume_point(path: Path) -> str | None:
    """The id of the file's last complete line, once a torn last line is dropped."""
    if not path.exists():
        return None
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if len(complete) < len(raw):
        with path.open("r+b") as file:
            file.truncate(len(complete))
    lines = complete.splitlines()
    if not lines:
        return None
    last_id: str = json.loads(lines[-1])["id"]
    return last_id


def record(event: ServerSentEvent) -> bytes:
    """An event as one line of the consumer's file."""
    data: Any = json.loads(event.data)
    line = {"id": event.id, "event": event.type, "data": data}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def write_whole(sink: IO[bytes], line: bytes) -> None:
    """Write the line with as few writes as the OS allows (one, in practice)."""
    view = memoryview(line)
    while view:
        written = sink.write(view)
        view = view[written or 0 :]
    sink.flush()


def log(message: str) -> None:
    """One fact about the consumer's run, to stderr."""
    sys.stderr.write(f"{time.monotonic():.3f} feed_consumer: {message}\n")
    sys.stderr.flush()


def follow(
    port: int, last_id: str | None, sink: IO[bytes], read_timeout: float
) -> str | None:
    """Read one stream until it ends; return the id of the last event recorded."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    connection = http.client.HTTPConnection(HOST, port, timeout=read_timeout)
    try:
        connection.request("GET", STREAM_PATH, headers=headers)
        response = connection.getresponse()
        content_type = response.getheader("Content-Type", "")
        if response.status != 200 or not content_type.startswith("text/event-stream"):
            body = response.read(2000)
            msg = f"GET {STREAM_PATH} answered {response.status} {content_type}"
            raise StreamRefusedError(f"{msg}: {body!r}")
        log(f"connected after {last_id}")
        parser = EventStreamParser()
        recorded = 0
        while chunk := response.read1(READ_CHUNK_BYTES):
            for event in parser.feed(chunk):
                write_whole(sink, record(event))
                last_id = event.id
                recorded += 1
        log(
            f"stream ended by the server: {recorded} events, {parser.comments} comments"
        )
        return last_id
    finally:
        connection.close()


def consume(port: int, output: Path, read_timeout: float, max_seconds: float) -> int:
    """Follow the feed into the file until killed or out of time; the exit status."""
    deadline = time.monotonic() + max_seconds
    last_id = resume_point(output)
    log(f"started, resuming after {last_id}")
    with output.open("ab", buffering=0) as sink:
        while time.monotonic() < deadline:
            try:
                last_id = follow(port, last_id, sink, read_timeout)
            except StreamRefusedError as refusal:
                log(f"refused: {refusal}")
                return 2
            except (OSError, http.client.HTTPException) as problem:
                # Recorded lines stand; the last one is where to resume.
                last_id = resume_point(output)
                log(f"reconnecting after {type(problem).__name__}: {problem}")
            time.sleep(RECONNECT_SECONDS)
    log(f"out of time after {max_seconds} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and consume the feed."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT_SECONDS
    )
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    arguments = parser.parse_args(argv)
    return consume(
        arguments.port,
        arguments.output,
        arguments.read_timeout,
        arguments.max_seconds,
    )


if __name__ == "__main__":
    sys.exit(main())
