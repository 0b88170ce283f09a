"""The /api blueprint: parse, look up, validate, call one bank method, serialise."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from bank.audit import audit
from bank.commands import AccountState
from bank.domain import (
    TRANSFER_ID_PATTERN,
    InvalidCommandError,
    check_email,
    in_utc,
    normalise_account_id,
)
from bank.idempotency import IDEMPOTENCY_KEY_PATTERN
from bank.persistence import LogPosition
from bank.projections import (
    MAX_POSITION,
    MAX_VERSION,
    Ledger,
    ReadModelsUnavailableError,
)
from bank.readside import ReadSide
from bank.transfers import STATUSES, TransferNotFoundError
from web.errors import ApiError
from web.metrics import CONTENT_TYPE, exposition
from web.openapi import MAX_AUDIT_VIOLATIONS_LISTED, openapi_document
from web.reads import (
    MAX_PAGE_SIZE,
    MAX_QUERY_INT,
    TIME_PATTERN,
    AccountListItem,
    AccountsPage,
    AccountView,
    EventView,
    StatementLine,
    StatementPage,
    TransfersPage,
    TransferView,
)
from web.registry import Answer, run_batch, run_command

if TYPE_CHECKING:
    from collections.abc import Callable

    from bank import BankApplication
    from bank.audit import AuditReport, Violation
    from bank.commands import TransferState

api = Blueprint("api", __name__, url_prefix="/api")
# GET /metrics, beside the API: where a Prometheus scraper looks.
metrics_page = Blueprint("metrics", __name__)

MAX_COMMAND_BODY_BYTES = 64 * 1024
DEFAULT_PAGE_SIZE = 100
TIME_FORMAT = re.compile(TIME_PATTERN)


def bank() -> BankApplication:
    """The BankApplication this Flask app was built with."""
    application: BankApplication = current_app.extensions["bank"]
    return application


@api.post("")
def post_command() -> tuple[Response, int]:
    """Run one command, {"command": name, "data": {...}}, or a batch of them."""
    raw, body = json_object_body()
    if set(body) == {"batch"}:
        return answer(run_batch(bank(), body["batch"], idempotency_key()))
    if len(raw) > MAX_COMMAND_BODY_BYTES:
        raise ApiError("payload_too_large", "A command body is at most 64 KiB.")
    return answer(run_command(bank(), body, idempotency_key()))


def answer(accepted: Answer) -> tuple[Response, int]:
    """A command's JSON answer; a replay of a first execution says so."""
    response = jsonify(accepted.body)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, accepted.status


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header, if any, checked."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        reason = "must be 1 to 255 visible ASCII characters"
        raise ApiError(
            "validation_error",
            f"The Idempotency-Key header {reason}.",
            {"errors": [{"field": "headers.Idempotency-Key", "reason": reason}]},
        )
    return key


@api.get("/accounts")
def list_accounts() -> Response:
    """An owner's accounts: `?owner_email=...&limit=&cursor=`."""
    owner_email = request.args.get("owner_email")
    if not owner_email:
        raise _bad_query("owner_email", "is required")
    checked(check_email, owner_email, "owner_email", "must be an email address")
    cursor = request.args.get("cursor")
    if cursor is not None:
        reason = "must be a cursor from a previous page"
        checked(normalise_account_id, cursor, "cursor", reason)
    page = ledger().accounts_by_owner(
        owner_email,
        limit=page_size(),
        cursor=cursor,
        min_position=query_position("min_position"),
    )
    accounts = [AccountListItem.of_row(row) for row in page.items]
    body = AccountsPage(accounts=accounts, next_cursor=page.next_cursor)
    return jsonify(body.model_dump(mode="json"))


@api.get("/accounts/<account_id>")
def get_account(account_id: str) -> Response:
    """An account now, at `?version=N`, or at `?as_of=<ISO 8601>`."""
    account_id = path_account_id(account_id)
    version = query_int("version", minimum=1, maximum=MAX_VERSION)
    as_of = query_time("as_of")
    if version is not None and as_of is not None:
        raise _bad_query("as_of", "cannot be combined with version")
    account = bank().get_account(account_id, version=version, as_of=as_of)
    return jsonify(AccountView.of(AccountState.of(account)).model_dump())


@api.get("/accounts/<account_id>/statement")
def get_statement(account_id: str) -> Response:
    """Statement lines in order: `?from=&to=` (ISO 8601), `&limit=&cursor=`."""
    account_id = path_account_id(account_id)
    cursor = query_int("cursor", minimum=0, maximum=MAX_VERSION)
    since, until, limit = query_time("from"), query_time("to"), page_size()
    min_position = query_position("min_position")
    account_id = bank().require_account(account_id)
    page = ledger().statement(
        account_id,
        since=since,
        until=until,
        limit=limit,
        cursor=None if cursor is None else str(cursor),
        min_position=min_position,
    )
    lines = [StatementLine.model_validate(row) for row in page.items]
    body = StatementPage(
        account_id=account_id, lines=lines, next_cursor=page.next_cursor
    )
    return jsonify(body.model_dump(mode="json"))


@api.get("/accounts/<account_id>/transfers")
def list_account_transfers(account_id: str) -> Response:
    """An account's transfers, either way: `?status=&limit=&cursor=`."""
    account_id = path_account_id(account_id)
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise _bad_query("status", "must be one of " + ", ".join(STATUSES))
    cursor = query_int("cursor", minimum=0, maximum=MAX_POSITION)
    limit = page_size()
    min_position = query_position("min_position")
    account_id = bank().require_account(account_id)
    page = ledger().transfers(
        account_id,
        status=status,
        limit=limit,
        cursor=None if cursor is None else str(cursor),
        min_position=min_position,
    )
    transfers = [TransferView.of(row) for row in page.items]
    body = TransfersPage(
        account_id=account_id, transfers=transfers, next_cursor=page.next_cursor
    )
    return jsonify(body.model_dump(mode="json"))


@api.get("/transfers/<transfer_id>")
def get_transfer(transfer_id: str) -> Response:
    """A transfer now (a hold that has lapsed reads, and is recorded, expired)."""
    if not TRANSFER_ID_PATTERN.fullmatch(transfer_id):
        raise _bad_query("transfer_id", "must be a transfer id (a UUID)", "path")
    found: TransferState | dict[str, Any] | None
    try:
        found = bank().get_transfer(transfer_id)
    except TransferNotFoundError:
        found = older_transfer(transfer_id)
        if found is None:
            raise
    return jsonify(TransferView.of(found).model_dump(mode="json"))


def older_transfer(transfer_id: str) -> dict[str, Any] | None:
    """A transfer made before transfers were aggregates, from the read models."""
    try:
        return ledger().transfer_view(transfer_id)
    except ReadModelsUnavailableError:
        # Such transfers are in a SQL store: in any other, there are none.
        return None


@api.get("/accounts/<account_id>/events")
def get_account_events(account_id: str) -> Response:
    """An account's events in order, a page at a time."""
    account_id = path_account_id(account_id)
    after_version = query_int("after_version", minimum=0, maximum=MAX_VERSION)
    limit = page_size()
    min_position = query_position("min_position")
    events = read_side().history(account_id, after_version, limit, min_position)
    response = jsonify(
        [EventView.of(event).model_dump(mode="json") for event in events]
    )
    if len(events) == limit:
        next_page = url_for(
            ".get_account_events",
            account_id=account_id,
            after_version=events[-1].originator_version,
            limit=limit,
        )
        response.headers["Link"] = f'<{next_page}>; rel="next"'
    return response


@api.get("/health")
def health() -> Response:
    """Whether the service and its database answer; the read side; group commits."""
    app = bank()
    head = app.event_log.head()
    group = app.group_commit
    return jsonify(
        {
            "status": "ok",
            "database": "reachable",
            "worker_pid": os.getpid(),
            "group_commit": None
            if group is None
            else {"transactions": group.transactions, "commands": group.commands},
            "projection": projection_health(head),
        }
    )


def projection_health(head: LogPosition) -> dict[str, Any] | None:
    """Where the read models are against the log's head, and how far behind."""
    try:
        projection = ledger().projection
    except ReadModelsUnavailableError:
        return None
    position, rebuilding = projection.state()
    return {
        "position": position.token(),
        "head": head.token(),
        "lag_events": projection.lag(head, position),
        "rebuilding": rebuilding,
    }


@metrics_page.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics (all workers'), and the read models' lag right now."""
    return Response(exposition(projection_lag()), content_type=CONTENT_TYPE)


def projection_lag() -> int | None:
    """Events the read models are behind the log's head; None without them."""
    head = bank().event_log.head()
    try:
        projection = ledger().projection
    except ReadModelsUnavailableError:
        return None
    return projection.lag(head)


@api.get("/audit")
def get_audit() -> Response:
    """Run `bank audit`'s checks on the whole log; each check's result and findings."""
    try:
        read_models: Ledger | None = ledger()
    except ReadModelsUnavailableError:
        read_models = None  # an in-memory store has none: that check is skipped
    return jsonify(audit_answer(audit(bank(), read_models)))


def audit_answer(report: AuditReport) -> dict[str, Any]:
    """The audit's figures and checks, each with its first violations."""
    found: dict[str, list[Violation]] = {}
    for violation in report.violations:
        found.setdefault(violation.check, []).append(violation)
    return {
        "passed": report.clean,
        "accounts": report.accounts,
        "account_events": report.events,
        "transfers": report.transfers,
        "transfer_events": report.transfer_events,
        "currencies": [
            {
                "currency": currency,
                "balance_in_cents": totals.balance_in_cents,
                "deposits_in_cents": totals.deposits_in_cents,
                "withdrawals_in_cents": totals.withdrawals_in_cents,
            }
            for currency, totals in sorted(report.currencies.items())
        ],
        "checks": [
            {
                "name": check.name,
                "description": check.description,
                "ran": check.ran,
                "passed": check.passed,
                "examined": check.examined,
                "violation_count": check.violations,
                "violations": [
                    {
                        "message": violation.message,
                        "account_id": violation.account_id,
                        "version": violation.version,
                        "transfer_id": violation.transfer_id,
                    }
                    for violation in found.get(check.name, [])[
                        :MAX_AUDIT_VIOLATIONS_LISTED
                    ]
                ],
            }
            for check in report.checks
        ],
    }


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document())


def json_object_body() -> tuple[bytes, dict[str, Any]]:
    """The raw request body and its JSON object, or a 400/413/415 ApiError."""
    if request.mimetype != "application/json":
        raise ApiError(
            "unsupported_media_type", "Send the body as Content-Type: application/json."
        )
    raw = request.get_data(cache=False)
    text = utf8_text(raw)
    try:
        body = json.loads(
            text,
            parse_constant=_refuse_constant,
            object_pairs_hook=_refuse_duplicate_keys,
        )
    except (ValueError, RecursionError):
        raise ApiError("bad_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "The body must be a JSON object.")
    return raw, body


def utf8_text(raw: bytes) -> str:
    """The body as strict UTF-8 text, or a 400 ApiError."""
    # json.loads(bytes) would guess UTF-16 or UTF-32 and skip a byte-order mark;
    # JSON between systems is UTF-8 (RFC 8259), and a NUL byte can only be
    # another encoding's padding, since JSON text never holds a raw one.
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or text.startswith("\ufeff") or "\0" in text:
        message = "The body must be UTF-8 JSON, without a byte-order mark."
        raise ApiError("bad_request", message)
    return text


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Otherwise the last of two "command" keys would silently win.
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            shown = key if len(key) <= 100 else f"{key[:100]}..."
            message = f"The body repeats the key {shown!r}; each key may appear once."
            raise ApiError("bad_request", message, {"key": shown})
        found[key] = value
    return found


def read_side() -> ReadSide:
    """Where reads are served (the primary, or BANK_READ_URL's standby)."""
    extensions = current_app.extensions
    if "read_side" not in extensions:
        extensions["read_side"] = ReadSide(bank())
    found: ReadSide = extensions["read_side"]
    return found


def ledger() -> Ledger:
    """The read models, built on first use."""
    extensions = current_app.extensions
    if "ledger" not in extensions:
        extensions["ledger"] = Ledger(bank(), read_side())
    found: Ledger = extensions["ledger"]
    return found


def query_position(name: str) -> LogPosition | None:
    """An optional position query parameter: a command's `position`, or a feed's."""
    raw = request.args.get(name)
    return None if raw is None else parse_position(raw, name)


def parse_position(raw: str, name: str, location: str = "query") -> LogPosition:
    """The position a token names, else a 422 naming the parameter."""
    try:
        return LogPosition.from_token(raw)
    except ValueError:
        reason = "must be a position from a command's answer or the event feed"
        raise _bad_query(name, reason, location) from None


def page_size() -> int:
    """The `limit` query parameter: 1 to 1000, 100 by default."""
    return query_int("limit", minimum=1, maximum=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def query_time(name: str) -> datetime | None:
    """An optional RFC 3339 time with a zone (e.g. 2026-11-27T18:00:00Z), in UTC."""
    raw = request.args.get(name)
    if raw is None:
        return None
    # The documented format exactly: fromisoformat alone would take more
    # ("2026-11-27 18:00Z", week dates) than the description promises.
    if not TIME_FORMAT.fullmatch(raw):
        raise _bad_query(
            name, "must be an RFC 3339 time with a zone, e.g. 2026-11-27T18:00:00Z"
        )
    return in_utc(datetime.fromisoformat(raw))


def query_int(name: str, minimum: int, maximum: int = MAX_QUERY_INT) -> int | None:
    """An optional whole-number query parameter, checked against its bounds."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise _bad_query(name, "must be a whole number")
    # Digits are counted first: int() of a long string is slow, or even refused.
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or not minimum <= int(digits) <= maximum:
        raise _bad_query(name, f"must be from {minimum} to {maximum}")
    return int(digits)


def path_account_id(account_id: str) -> str:
    """The account id in the URL path, checked like any other account id."""
    reason = "must be 1 to 64 letters, digits or any of '-_.:'"
    return checked(normalise_account_id, account_id, "account_id", reason, "path")


def checked(
    check: Callable[[str], object],
    value: str,
    name: str,
    reason: str,
    location: str = "query",
) -> str:
    """The parameter's value if the domain's check accepts it, else a 422."""
    try:
        check(value)
    except InvalidCommandError:
        raise _bad_query(name, reason, location) from None
    return value


def _bad_query(name: str, reason: str, location: str = "query") -> ApiError:
    return ApiError(
        "validation_error",
        f"{location.capitalize()} parameter '{name}' {reason}.",
        {"errors": [{"field": f"{location}.{name}", "reason": reason}]},
    )
