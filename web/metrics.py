"""Prometheus metrics: what the API and the bank did, for `GET /metrics`.

Served alone (`create_app()` in a test) the series live in this process's
default registry. Under `bank serve` every worker is a process of its own:
`PROMETHEUS_MULTIPROC_DIR` (a fresh directory `bank serve` makes) is set
before any worker imports prometheus_client, so every worker writes its
values to files there, and a scrape, whichever worker answers it, adds up the
files of all of them, dead workers' included (counters never go back).

Label values are never user input: a command is a registry name or
"unknown", a route is a Flask rule or "unmatched", a code is from the error
table.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventsourcing.persistence import InterfaceError, OperationalError
from flask import request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from web.errors import STATUS_BY_CODE

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

    from flask import Flask, Response

    from bank import BankApplication

MULTIPROCESS_DIR_SETTING = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_COMMAND = "unknown"
UNMATCHED_ROUTE = "unmatched"
ACCEPTED, REPLAYED, REFUSED, ERROR = "accepted", "replayed", "refused", "error"
# No `_created` series: they are per process, and multiprocess mode has none.
disable_created_metrics()  # type: ignore[no-untyped-call]

COMMANDS = Counter(
    "bank_commands",
    "Commands by name and what became of them: accepted (stored), replayed "
    "(answered from an idempotency record), refused (a 4xx: nothing stored) or "
    "error (a 5xx: nothing stored); a batch counts each of its commands, all "
    "with the batch's outcome.",
    ["command", "outcome", "code"],
)
COMMAND_SECONDS = Histogram(
    "bank_command_seconds",
    "Time to validate, run and commit one command request (a batch is one).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WRITE_CONFLICTS = Counter(
    "bank_write_conflicts",
    "Lost write races (another writer saved an account first) that were retried.",
)
GROUP_COMMIT_SIZE = Histogram(
    "bank_group_commit_size",
    "Commands per committed group (see GROUP_COMMIT_MAX_SIZE).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
PROJECTION_LAG = Gauge(
    "bank_projection_lag_events",
    "Events the read models are behind the log's head, as of the last scrape "
    "(NaN without read models).",
    multiprocess_mode="mostrecent",
)
HTTP_REQUESTS = Counter(
    "bank_http_requests",
    "HTTP requests the app answered, by route pattern and status.",
    ["route", "status"],
)


def observe_bank(bank: BankApplication) -> None:
    """Count the bank's lost write races and the sizes of its group commits."""
    bank.on_write_conflict = WRITE_CONFLICTS.inc
    if bank.group_commit is not None:
        bank.group_commit.on_commit = GROUP_COMMIT_SIZE.observe


def command_label(name: object, known: Collection[str]) -> str:
    """A command's label: its registry name, else "unknown" (never user input)."""
    return name if isinstance(name, str) and name in known else UNKNOWN_COMMAND


@dataclass
class CommandRequest:
    """One request's commands (by label), and whether a replay answered it."""

    labels: list[str]
    replayed: bool = False


@contextmanager
def observed(labels: list[str]) -> Iterator[CommandRequest]:
    """Time a command request and count each of its commands by its outcome."""
    observation = CommandRequest(labels)
    started = time.perf_counter()
    try:
        yield observation
    except Exception as error:
        outcome, code = failure(error)
        _count(labels, outcome, code)
        raise
    else:
        _count(labels, REPLAYED if observation.replayed else ACCEPTED, "")
    finally:
        COMMAND_SECONDS.observe(time.perf_counter() - started)


def failure(error: Exception) -> tuple[str, str]:
    """A failed command's outcome (refused for a 4xx, error for a 5xx) and code."""
    code = getattr(error, "code", None)
    if not isinstance(code, str) or code not in STATUS_BY_CODE:
        database = isinstance(error, OperationalError | InterfaceError)
        code = "database_unavailable" if database else "internal_error"
    return (REFUSED if STATUS_BY_CODE[code] < 500 else ERROR), code


def _count(labels: Sequence[str], outcome: str, code: str) -> None:
    for label in set(labels):
        COMMANDS.labels(label, outcome, code).inc(labels.count(label))


def route_label() -> str:
    """The request's route pattern (`/api/accounts/<account_id>`), or "unmatched"."""
    rule = request.url_rule
    return UNMATCHED_ROUTE if rule is None else rule.rule


def count_http_requests(flask_app: Flask) -> None:
    """Count every answer the app gives, by route pattern and status."""

    @flask_app.after_request
    def count(response: Response) -> Response:
        HTTP_REQUESTS.labels(route_label(), str(response.status_code)).inc()
        return response


def exposition(projection_lag_events: int | None) -> bytes:
    """Every series in the text format: this process's, or all workers' added up."""
    lag = math.nan if projection_lag_events is None else projection_lag_events
    PROJECTION_LAG.set(lag)
    if not os.environ.get(MULTIPROCESS_DIR_SETTING):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
