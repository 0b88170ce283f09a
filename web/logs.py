"""Structured logs: one JSON object a line, each carrying its request's id.

Every request gets an id: the client's `X-Request-Id` when it is a sane token
(1 to 128 visible ASCII characters), else a fresh one. It is echoed in the
answer's `X-Request-Id`, is in every line logged while the request is
served, and in the request's own line (method, route, status, duration_ms).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from flask import g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

from web.metrics import route_label

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flask import Flask, Response

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")
LOG_LEVEL_SETTING = "BANK_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "INFO"
FIELDS = ("levelname", "name", "message", "request_id")
FIELD_NAMES = {"levelname": "level", "name": "logger"}

request_log = logging.getLogger("web.requests")


def request_id() -> str:
    """This request's id: the client's X-Request-Id if sane, else a new one."""
    found: str | None = g.get("request_id")
    if found is None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        found = offered if REQUEST_ID_PATTERN.fullmatch(offered) else uuid.uuid4().hex
        g.request_id = found
    return found


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request being served (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add `request_id` to the record; never drop it."""
        if not hasattr(record, "request_id"):
            record.request_id = request_id() if has_request_context() else None
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, message, request_id, extras."""
    return JsonFormatter(list(FIELDS), rename_fields=FIELD_NAMES, timestamp="time")


def configure_logging(config: Mapping[str, Any]) -> None:
    """Log JSON to stderr, unless logging is set up already (pytest, an embedder)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    level = config.get(LOG_LEVEL_SETTING) or os.environ.get(LOG_LEVEL_SETTING)
    root.setLevel(str(level or DEFAULT_LOG_LEVEL).upper())


def log_requests(flask_app: Flask) -> None:
    """Give each request its id, echo it, and log one line when it is answered."""

    @flask_app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        request_id()

    @flask_app.after_request
    def finish(response: Response) -> Response:
        identifier = request_id()
        response.headers[REQUEST_ID_HEADER] = identifier
        if not request_log.isEnabledFor(logging.INFO):
            return response
        started: float = g.get("started", time.perf_counter())
        route = route_label()
        request_log.info(
            "%s %s %d",
            request.method,
            route,
            response.status_code,
            extra={
                "request_id": identifier,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        return response
