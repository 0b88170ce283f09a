"""The /api blueprint: parse, look up, validate, call one bank method, serialise."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, jsonify, request, url_for

from bank.commands import AccountState
from bank.idempotency import IDEMPOTENCY_KEY_PATTERN
from bank.projections import Ledger
from web.errors import ApiError
from web.openapi import openapi_document
from web.reads import (
    MAX_PAGE_SIZE,
    MAX_QUERY_INT,
    AccountListItem,
    AccountsPage,
    AccountView,
    EventView,
    StatementLine,
    StatementPage,
)
from web.registry import Answer, run_batch, run_command

if TYPE_CHECKING:
    from flask import Response

    from bank import BankApplication

api = Blueprint("api", __name__, url_prefix="/api")

MAX_COMMAND_BODY_BYTES = 64 * 1024
DEFAULT_PAGE_SIZE = 100


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
    page = ledger().accounts_by_owner(
        owner_email, limit=page_size(), cursor=request.args.get("cursor")
    )
    accounts = [AccountListItem.of_row(row) for row in page.items]
    body = AccountsPage(accounts=accounts, next_cursor=page.next_cursor)
    return jsonify(body.model_dump(mode="json"))


@api.get("/accounts/<account_id>")
def get_account(account_id: str) -> Response:
    """An account now, at `?version=N`, or at `?as_of=<ISO 8601>`."""
    version = query_int("version", minimum=1)
    as_of = query_time("as_of")
    if version is not None and as_of is not None:
        raise _bad_query("as_of", "cannot be combined with version")
    account = bank().get_account(account_id, version=version, as_of=as_of)
    return jsonify(AccountView.of(AccountState.of(account)).model_dump())


@api.get("/accounts/<account_id>/statement")
def get_statement(account_id: str) -> Response:
    """Statement lines in order: `?from=&to=` (ISO 8601), `&limit=&cursor=`."""
    cursor = request.args.get("cursor")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise _bad_query("cursor", "must be a cursor from a previous page")
    account_id = bank().require_account(account_id)
    page = ledger().statement(
        account_id,
        since=query_time("from"),
        until=query_time("to"),
        limit=page_size(),
        cursor=cursor,
    )
    lines = [StatementLine.model_validate(row) for row in page.items]
    body = StatementPage(
        account_id=account_id, lines=lines, next_cursor=page.next_cursor
    )
    return jsonify(body.model_dump(mode="json"))


@api.get("/accounts/<account_id>/events")
def get_account_events(account_id: str) -> Response:
    """An account's events in order, a page at a time."""
    after_version = query_int("after_version", minimum=0)
    limit = page_size()
    events = bank().get_history(account_id, after_version=after_version, limit=limit)
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
    """Whether the service and its database answer."""
    bank().event_log.head()
    return jsonify({"status": "ok", "database": "reachable"})


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
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ApiError("bad_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "The body must be a JSON object.")
    return raw, body


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def ledger() -> Ledger:
    """The read models, built on first use."""
    extensions = current_app.extensions
    if "ledger" not in extensions:
        extensions["ledger"] = Ledger(bank())
    found: Ledger = extensions["ledger"]
    return found


def page_size() -> int:
    """The `limit` query parameter: 1 to 1000, 100 by default."""
    return query_int("limit", minimum=1, maximum=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def query_time(name: str) -> datetime | None:
    """An optional ISO 8601 time with a zone, e.g. 2026-11-27T18:00:00Z."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad_query(name, "must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise _bad_query(name, "must include a time zone, e.g. Z or +01:00")
    return moment


def query_int(name: str, minimum: int, maximum: int | None = None) -> int | None:
    """An optional whole-number query parameter, checked against its bounds."""
    raw = request.args.get(name)
    if raw is None:
        return None
    # At most 18 digits (MAX_QUERY_INT), checked before int() ever sees it.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_QUERY_INT)):
        raise _bad_query(name, "must be a whole number")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum}" + (f" to {maximum}" if maximum else "")
        raise _bad_query(name, f"must be {bounds}")
    return value


def _bad_query(name: str, reason: str) -> ApiError:
    return ApiError(
        "validation_error",
        f"Query parameter '{name}' {reason}.",
        {"errors": [{"field": f"query.{name}", "reason": reason}]},
    )
