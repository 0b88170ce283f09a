"""The OpenAPI 3.1 description, generated from the same pydantic models."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from bank.audit import CHECKS
from bank.commands import MAX_BATCH_SIZE
from bank.domain import ACCOUNT_ID_PATTERN, TRANSFER_ID_PATTERN
from bank.feed import FEED_TYPES
from bank.projections import MAX_POSITION, MAX_VERSION
from bank.transfers import STATUSES
from web.errors import STATUS_BY_CODE, ErrorBody
from web.reads import (
    MAX_PAGE_SIZE,
    POSITION_PATTERN,
    TIME_PATTERN,
    AccountsPage,
    AccountView,
    EventView,
    FeedPageView,
    StatementPage,
    TransfersPage,
    TransferView,
)
from web.registry import COMMANDS, email_json_schema

if TYPE_CHECKING:
    from pydantic import BaseModel

Schema = dict[str, Any]
_REF = "#/components/schemas/{model}"
# What the HTTP front end (web.server) answers on any route, before the app:
# malformed HTTP, a request too slow to arrive, or one too large.
SERVER_ERRORS = [
    "bad_request",
    "request_timeout",
    "payload_too_large",
    "uri_too_long",
    "headers_too_large",
]
COMMAND_ERRORS = [
    *SERVER_ERRORS,
    "unknown_command",
    "unauthorized",
    "account_not_found",
    "account_already_exists",
    "insufficient_funds",
    "account_closed",
    "account_not_empty",
    "account_has_pending_transfers",
    "currency_mismatch",
    "transfer_not_found",
    "transfer_not_pending",
    "transfer_not_posted",
    "amount_exceeds_transfer",
    "unsupported_media_type",
    "validation_error",
    "idempotency_key_reused",
    "internal_error",
    "concurrency_conflict",
    "database_unavailable",
]
READ_ERRORS = [
    *SERVER_ERRORS,
    "unauthorized",
    "validation_error",
    "internal_error",
    "database_unavailable",
]
# Reading an account or a transfer as it is now first records the expiry of
# lapsed holds: a write, which can keep losing races.
EXPIRING_READ_ERRORS = [*READ_ERRORS, "concurrency_conflict"]
# Reads wait for a position; past BANK_READ_WAIT_SECONDS they are refused.
WAITING_READ_ERRORS = [*READ_ERRORS, "read_model_behind"]
# Statement and listing come from the read models, which some stores lack.
READ_MODEL_ERRORS = [
    *WAITING_READ_ERRORS,
    "read_models_unavailable",
    "read_model_rebuilding",
]
# GET /api/audit lists at most this many violations of each check.
MAX_AUDIT_VIOLATIONS_LISTED = 20
POSITION_SCHEMA: Schema = {"type": "string", "pattern": POSITION_PATTERN}
TEXT: Schema = {"type": "string"}
ACCOUNT_ID_SCHEMA: Schema = {
    "type": "string",
    "pattern": f"^{ACCOUNT_ID_PATTERN.pattern}$",
}
TRANSFER_ID_SCHEMA: Schema = {
    "type": "string",
    "pattern": f"^{TRANSFER_ID_PATTERN.pattern}$",
}


def _ref(name: str) -> Schema:
    return {"$ref": _REF.format(model=name)}


def _json(schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _header(description: str, schema: Schema, required: bool = False) -> Schema:
    return {"description": description, "required": required, "schema": schema}


def _errors(codes: list[str]) -> Schema:
    """Error responses for these codes, grouped by status, each naming its codes."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    return {
        str(status): _error(status, sorted(names))
        for status, names in sorted(by_status.items())
    }


def _error(status: int, codes: list[str]) -> Schema:
    schema = {
        "allOf": [
            _ref("ErrorBody"),
            {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
        ]
    }
    headers: Schema = {}
    if status == 503:
        headers["Retry-After"] = _header(
            "Seconds to wait before a retry.",
            {"type": "string", "pattern": "^[0-9]+$"},
            required=True,
        )
    if status == 401:
        headers["WWW-Authenticate"] = _header(
            "The scheme to authenticate with.",
            {"type": "string", "pattern": "^Bearer "},
            required=True,
        )
    extra = {"headers": headers} if headers else {}
    return _json(schema, "Error: " + ", ".join(codes), **extra)


def _schemas() -> dict[str, Schema]:
    """Every model's schema, plus one request schema per command and the batch."""
    models: list[type[BaseModel]] = [
        ErrorBody,
        AccountView,
        EventView,
        AccountsPage,
        StatementPage,
        TransferView,
        TransfersPage,
        FeedPageView,
    ]
    models += [spec.response_model for spec in COMMANDS.values()]
    _, definitions = models_json_schema(
        [(model, "serialization") for model in dict.fromkeys(models)],
        ref_template=_REF,
    )
    schemas: dict[str, Schema] = definitions["$defs"]
    for spec in COMMANDS.values():
        # Request data is described as it is validated, not as it is dumped.
        schemas[spec.data_model.__name__] = spec.data_model.model_json_schema(
            ref_template=_REF, mode="validation"
        )
        schemas[f"{spec.name}_request"] = {
            "type": "object",
            "required": ["command", "data"],
            "additionalProperties": False,
            "properties": {
                "command": {"const": spec.name},
                "data": _ref(spec.data_model.__name__),
            },
        }
    schemas["batch_request"] = {
        "type": "object",
        "required": ["batch"],
        "additionalProperties": False,
        "properties": {
            "batch": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_SIZE,
                "items": {"oneOf": [_ref(f"{name}_request") for name in COMMANDS]},
            }
        },
    }
    schemas["batch_results"] = {
        "type": "object",
        "required": ["results", "position"],
        "additionalProperties": False,
        "properties": {
            "position": {
                "type": "string",
                "pattern": POSITION_PATTERN,
                "description": "The log's position just after the batch's events.",
            },
            "results": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_SIZE,
                # Answer schemas admit no field but their own, so exactly one fits.
                "items": {"oneOf": _answer_refs(range(200, 300))},
            },
        },
    }
    return schemas


def _answer_refs(statuses: range | list[int]) -> list[Schema]:
    names = [
        spec.response_model.__name__
        for spec in COMMANDS.values()
        if spec.success_status in statuses
    ]
    return [_ref(name) for name in dict.fromkeys(names)]


def _account_links() -> Schema:
    """Where a newly opened account can be read."""
    account_id = {"account_id": "$response.body#/account_id"}
    return {
        name: {"operationId": operation, "parameters": account_id}
        for name, operation in [
            ("GetAccount", "getAccount"),
            ("GetAccountEvents", "getAccountEvents"),
            ("GetStatement", "getStatement"),
            ("ListAccountTransfers", "listAccountTransfers"),
        ]
    }


def _transfer_links() -> Schema:
    """Where a transfer a command made or changed can be read."""
    return {
        "GetTransfer": {
            "operationId": "getTransfer",
            "parameters": {"transfer_id": "$response.body#/transfer_id"},
        }
    }


def _post_command() -> Schema:
    replayed = {
        "Idempotent-Replayed": _header(
            "true when answered from the key's first execution.",
            {"type": "string", "enum": ["true"]},
        )
    }
    return {
        "operationId": "runCommand",
        "summary": "Run one command, or a batch of them in one transaction.",
        "description": "\n".join(
            f"- `{spec.name}`: {spec.summary}" for spec in COMMANDS.values()
        )
        + "\n\nA body is at most 64 KiB, a batch's at most 1 MiB (413). A transfer "
        "to the same account, or an Idempotency-Key already used for a different "
        "request, is refused with 422; a transfer between accounts of different "
        "currencies with 409 currency_mismatch; an unknown transfer id with 404 "
        "transfer_not_found.",
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retry safely: the first accepted execution's "
                "answer is replayed for the same key and request.",
                "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            *(_ref(f"{name}_request") for name in COMMANDS),
                            _ref("batch_request"),
                        ]
                    }
                }
            },
        },
        "responses": {
            "200": _json(
                {"oneOf": [*_answer_refs([200]), _ref("batch_results")]},
                "Accepted (a batch answers every command's result in order).",
                headers=replayed,
                links=_transfer_links(),
            ),
            "201": _json(
                {"oneOf": _answer_refs([201])},
                "Account opened.",
                headers=replayed,
                links=_account_links(),
            ),
            **_errors(COMMAND_ERRORS),
        },
    }


def _get(
    operation_id: str,
    summary: str,
    parameters: list[Schema],
    ok: Schema,
    errors: list[str],
) -> Schema:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": ok, **_errors(errors)},
        }
    }


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _whole(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _time() -> Schema:
    return {
        "type": "string",
        "format": "date-time",
        "pattern": TIME_PATTERN,
        "description": "RFC 3339 with a zone, e.g. 2026-11-27T18:00:00Z or "
        "2026-11-27T19:00:00.5+01:00 (refused when it falls outside the years "
        "1-9999 in UTC).",
    }


def _min_position() -> Schema:
    return _query(
        "min_position",
        "Answer only once the read side has reached this position (a command "
        "answer's `position`); without it, the log's head at arrival. Waits at "
        "most BANK_READ_WAIT_SECONDS, then 503 read_model_behind.",
        POSITION_SCHEMA,
    )


def _feed_filters() -> list[Schema]:
    return [
        _query("account_id", "Only this account's events.", ACCOUNT_ID_SCHEMA),
        _query(
            "type",
            "Only events of this type.",
            {"type": "string", "enum": list(FEED_TYPES)},
        ),
    ]


def _limit() -> Schema:
    return _query("limit", "Page size (default 100).", _whole(1, MAX_PAGE_SIZE))


def _version_or_moment() -> Schema:
    """`version` and `as_of`, as one form-exploded object: they exclude each other."""
    return {
        "name": "at",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": "At most one of ?version=N (the account as of its N-th "
        "event; past the latest, the latest) and ?as_of=<time> (the account at "
        "that moment; 404 before it was opened).",
        "schema": {
            "type": "object",
            "properties": {
                "version": _whole(1, MAX_VERSION),
                "as_of": _time(),
            },
            "not": {"required": ["version", "as_of"]},
        },
    }


def _audit_answer() -> Schema:
    """What GET /api/audit answers: the figures, then every check."""
    count: Schema = {"type": "integer", "minimum": 0}
    nullable_text: Schema = {"type": ["string", "null"]}

    def closed(properties: Schema) -> Schema:
        return {
            "type": "object",
            "required": list(properties),
            "additionalProperties": False,
            "properties": properties,
        }

    violation = closed(
        {
            "message": TEXT,
            "account_id": nullable_text,
            "version": {"type": ["integer", "null"]},
            "transfer_id": nullable_text,
        }
    )
    check = closed(
        {
            "name": {"type": "string", "enum": list(CHECKS)},
            "description": TEXT,
            "ran": {
                "type": "boolean",
                "description": "false when the check could not run (the read "
                "models of an in-memory store).",
            },
            "passed": {"type": "boolean", "description": "Ran and found nothing."},
            "examined": {"type": "string", "description": "What it looked at."},
            "violation_count": count,
            "violations": {
                "type": "array",
                "maxItems": MAX_AUDIT_VIOLATIONS_LISTED,
                "items": violation,
                "description": f"The first {MAX_AUDIT_VIOLATIONS_LISTED} "
                "violations found.",
            },
        }
    )
    currency = closed(
        {
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "balance_in_cents": {"type": "integer"},
            "deposits_in_cents": {"type": "integer"},
            "withdrawals_in_cents": {"type": "integer"},
        }
    )
    return closed(
        {
            "passed": {"type": "boolean", "description": "No violation found."},
            "accounts": count,
            "account_events": count,
            "transfers": count,
            "transfer_events": count,
            "currencies": {"type": "array", "items": currency},
            "checks": {
                "type": "array",
                "minItems": len(CHECKS),
                "maxItems": len(CHECKS),
                "items": check,
            },
        }
    )


@cache
def openapi_document() -> Schema:
    """The whole API description as a JSON-ready dict."""
    account_id = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": ACCOUNT_ID_SCHEMA,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Event-sourced bank",
            "version": "1.0.0",
            "description": "One command endpoint and a few reads. Amounts are "
            'integer cents; every error is {"error": {code, message, details}}.',
        },
        "paths": {
            "/api": {"post": _post_command()},
            "/api/accounts": _get(
                "listAccounts",
                "An owner's accounts, by account id, a page at a time.",
                [
                    {
                        "name": "owner_email",
                        "in": "query",
                        "required": True,
                        "description": "The owner's email.",
                        "schema": email_json_schema(),
                    },
                    _limit(),
                    _query(
                        "cursor",
                        "next_cursor of the previous page (an account id).",
                        ACCOUNT_ID_SCHEMA,
                    ),
                    _min_position(),
                ],
                _json(_ref("AccountsPage"), "The accounts (from the read model)."),
                READ_MODEL_ERRORS,
            ),
            "/api/accounts/{account_id}": _get(
                "getAccount",
                "An account now, or as it was at a past version or moment.",
                [account_id, _version_or_moment()],
                _json(_ref("AccountView"), "The account."),
                [*EXPIRING_READ_ERRORS, "account_not_found"],
            ),
            "/api/accounts/{account_id}/statement": _get(
                "getStatement",
                "An account's statement lines in order, a page at a time.",
                [
                    account_id,
                    _query("from", "Lines at or after this moment.", _time()),
                    _query("to", "Lines before this moment.", _time()),
                    _limit(),
                    _query(
                        "cursor",
                        "next_cursor of the previous page (a version).",
                        _whole(0, MAX_VERSION),
                    ),
                    _min_position(),
                ],
                _json(_ref("StatementPage"), "Statement lines (from the read model)."),
                [*READ_MODEL_ERRORS, "account_not_found"],
            ),
            "/api/accounts/{account_id}/transfers": _get(
                "listAccountTransfers",
                "An account's transfers, either way, oldest first, a page at a time.",
                [
                    account_id,
                    _query(
                        "status",
                        "Only transfers with this status.",
                        {"type": "string", "enum": list(STATUSES)},
                    ),
                    _limit(),
                    _query(
                        "cursor",
                        "next_cursor of the previous page (a log position).",
                        _whole(0, MAX_POSITION),
                    ),
                    _min_position(),
                ],
                _json(_ref("TransfersPage"), "Transfers (from the read model)."),
                [*READ_MODEL_ERRORS, "account_not_found"],
            ),
            "/api/transfers/{transfer_id}": _get(
                "getTransfer",
                "A transfer now: a hold past its timeout reads (and is recorded) "
                "expired.",
                [
                    {
                        "name": "transfer_id",
                        "in": "path",
                        "required": True,
                        "schema": TRANSFER_ID_SCHEMA,
                    }
                ],
                _json(_ref("TransferView"), "The transfer."),
                # One made before transfers were aggregates is read from the
                # read models, which may be behind or rebuilding.
                [
                    *EXPIRING_READ_ERRORS,
                    "transfer_not_found",
                    "read_model_behind",
                    "read_model_rebuilding",
                ],
            ),
            "/api/accounts/{account_id}/events": _get(
                "getAccountEvents",
                "An account's events in order, a page at a time.",
                [
                    account_id,
                    _query(
                        "after_version",
                        "Only events after this version (default 0).",
                        _whole(0, MAX_VERSION),
                    ),
                    _limit(),
                    _min_position(),
                ],
                _json(
                    {"type": "array", "items": _ref("EventView")},
                    "Events, oldest first.",
                    headers={
                        "Link": _header(
                            'rel="next": the next page, while a page came back full.',
                            {"type": "string"},
                        )
                    },
                ),
                [*WAITING_READ_ERRORS, "account_not_found"],
            ),
            "/api/events": _get(
                "listEvents",
                "Every event of the bank in log order, exactly once to a client "
                "that pages with next_after.",
                [
                    _query(
                        "after",
                        "Only events after this position (a next_after, or an "
                        "event's position); default: the start of the log.",
                        POSITION_SCHEMA,
                    ),
                    _limit(),
                    *_feed_filters(),
                    _min_position(),
                ],
                _json(_ref("FeedPageView"), "Events, in log order."),
                WAITING_READ_ERRORS,
            ),
            "/api/events/stream": {
                "get": {
                    "operationId": "streamEvents",
                    "summary": "The feed as Server-Sent Events: each event's id is "
                    "its position, Last-Event-ID resumes, a heartbeat comment "
                    "every 15 s.",
                    "parameters": [
                        _query(
                            "after",
                            "Only events after this position; default: the start.",
                            POSITION_SCHEMA,
                        ),
                        *_feed_filters(),
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "description": "Resume after this position (wins "
                            "over `after`).",
                            "schema": POSITION_SCHEMA,
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "`id: <position>`, `event: <type>`, "
                            "`data: <the event as in /api/events>` per event.",
                            # No schema: the body is a stream of events, not a value.
                            "content": {"text/event-stream": {}},
                        },
                        **_errors([*READ_ERRORS, "too_many_streams"]),
                    },
                }
            },
            "/api/audit": _get(
                "audit",
                "Run the checks of `bank audit`: re-derive every account and "
                "transfer from the whole log and hold what is stored against it.",
                [],
                _json(
                    _audit_answer(),
                    "Each check and what it found (200 whether or not it "
                    "passed). Read-only: like `bank audit`, it may first bring "
                    "the read models up to the log. It reads the whole log.",
                ),
                READ_ERRORS,
            ),
            "/api/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the service and its database answer.",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": [
                                    "status",
                                    "database",
                                    "worker_pid",
                                    "group_commit",
                                    "projection",
                                ],
                                "additionalProperties": False,
                                "properties": {
                                    "status": {"const": "ok"},
                                    "database": {"const": "reachable"},
                                    "worker_pid": {
                                        "type": "integer",
                                        "description": "The worker that answered.",
                                    },
                                    "group_commit": {
                                        "description": (
                                            "That worker's commits since it "
                                            "started, and the commands they held "
                                            "(null without group commit)."
                                        ),
                                        "oneOf": [
                                            {"type": "null"},
                                            {
                                                "type": "object",
                                                "required": [
                                                    "transactions",
                                                    "commands",
                                                ],
                                                "additionalProperties": False,
                                                "properties": {
                                                    "transactions": {
                                                        "type": "integer",
                                                        "minimum": 0,
                                                    },
                                                    "commands": {
                                                        "type": "integer",
                                                        "minimum": 0,
                                                    },
                                                },
                                            },
                                        ],
                                    },
                                    "projection": {
                                        "description": (
                                            "The read models' position, the "
                                            "log's head, how many events lie "
                                            "between (counted to 100,000), and "
                                            "whether a rebuild is on (null "
                                            "without read models)."
                                        ),
                                        "oneOf": [
                                            {"type": "null"},
                                            {
                                                "type": "object",
                                                "required": [
                                                    "position",
                                                    "head",
                                                    "lag_events",
                                                    "rebuilding",
                                                ],
                                                "additionalProperties": False,
                                                "properties": {
                                                    "position": POSITION_SCHEMA,
                                                    "head": POSITION_SCHEMA,
                                                    "lag_events": {
                                                        "type": "integer",
                                                        "minimum": 0,
                                                    },
                                                    "rebuilding": {"type": "boolean"},
                                                },
                                            },
                                        ],
                                    },
                                },
                            },
                            "Healthy.",
                        ),
                        **_errors(
                            [*SERVER_ERRORS, "internal_error", "database_unavailable"]
                        ),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": _json({"type": "object"}, "OpenAPI 3.1."),
                        **_errors([*SERVER_ERRORS, "unauthorized", "internal_error"]),
                    },
                }
            },
        },
        "components": {"schemas": _schemas()},
    }
