"""The OpenAPI 3.1 description, generated from the same pydantic models."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from bank.commands import MAX_BATCH_SIZE
from bank.domain import ACCOUNT_ID_PATTERN
from web.errors import STATUS_BY_CODE, ErrorBody
from web.reads import (
    MAX_PAGE_SIZE,
    MAX_QUERY_INT,
    AccountsPage,
    AccountView,
    EventView,
    StatementPage,
)
from web.registry import COMMANDS

if TYPE_CHECKING:
    from pydantic import BaseModel

Schema = dict[str, Any]
_REF = "#/components/schemas/{model}"
COMMAND_ERRORS = sorted(set(STATUS_BY_CODE) - {"not_found", "method_not_allowed"})
READ_ERRORS = [
    "account_not_found",
    "read_models_unavailable",
    "validation_error",
    "unauthorized",
    "internal_error",
    "database_unavailable",
]


def _ref(name: str) -> Schema:
    return {"$ref": _REF.format(model=name)}


def _json(schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _errors(codes: list[str]) -> Schema:
    """Error responses for these codes, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    return {
        str(status): _json(_ref("ErrorBody"), "Error: " + ", ".join(sorted(names)))
        for status, names in sorted(by_status.items())
    }


def _schemas() -> dict[str, Schema]:
    """Every model's schema, plus one request schema per command and the batch."""
    models: list[type[BaseModel]] = [
        ErrorBody,
        AccountView,
        EventView,
        AccountsPage,
        StatementPage,
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
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {"oneOf": _response_refs(range(200, 300))},
            }
        },
    }
    return schemas


def _response_refs(statuses: range | list[int]) -> list[Schema]:
    names = [
        spec.response_model.__name__
        for spec in COMMANDS.values()
        if spec.success_status in statuses
    ]
    return [_ref(name) for name in dict.fromkeys(names)]


def _post_command() -> Schema:
    replayed = {
        "Idempotent-Replayed": {
            "description": "true when answered from the key's first execution.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
    return {
        "operationId": "runCommand",
        "summary": "Run one command, or a batch of them in one transaction.",
        "description": "\n".join(
            f"- `{spec.name}`: {spec.summary}" for spec in COMMANDS.values()
        ),
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
                {"oneOf": [*_response_refs([200]), _ref("batch_results")]},
                "Accepted (a batch answers every command's result in order).",
                headers=replayed,
            ),
            "201": _json(
                {"oneOf": _response_refs([201])}, "Account opened.", headers=replayed
            ),
            **_errors(COMMAND_ERRORS),
        },
    }


def _get(
    operation_id: str, summary: str, parameters: list[Schema], ok: Schema
) -> Schema:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": ok, **_errors(READ_ERRORS)},
        }
    }


def _query(
    name: str, minimum: int, description: str, maximum: int = MAX_QUERY_INT
) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum},
    }


def _param(name: str, description: str, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def _time(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{description} ISO 8601 with a zone.",
        "schema": {"type": "string", "format": "date-time"},
    }


@cache
def openapi_document() -> Schema:
    """The whole API description as a JSON-ready dict."""
    account_id = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{ACCOUNT_ID_PATTERN.pattern}$"},
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
                    _param("owner_email", "The owner's email (required).", True),
                    _query("limit", 1, "Page size (default 100).", MAX_PAGE_SIZE),
                    _param("cursor", "next_cursor of the previous page."),
                ],
                _json(_ref("AccountsPage"), "The accounts (from the read model)."),
            ),
            "/api/accounts/{account_id}": _get(
                "getAccount",
                "An account now, or as it was at a past version or moment.",
                [
                    account_id,
                    _query("version", 1, "The account as of this version."),
                    _time("as_of", "The account as it was at this moment."),
                ],
                _json(_ref("AccountView"), "The account."),
            ),
            "/api/accounts/{account_id}/statement": _get(
                "getStatement",
                "An account's statement lines in order, a page at a time.",
                [
                    account_id,
                    _time("from", "Lines at or after this moment."),
                    _time("to", "Lines before this moment."),
                    _query("limit", 1, "Page size (default 100).", MAX_PAGE_SIZE),
                    _param("cursor", "next_cursor of the previous page."),
                ],
                _json(_ref("StatementPage"), "Statement lines (from the read model)."),
            ),
            "/api/accounts/{account_id}/events": _get(
                "getAccountEvents",
                "An account's events in order, a page at a time.",
                [
                    account_id,
                    _query("after_version", 0, "Only events after this version."),
                    _query("limit", 1, "Page size (default 100).", MAX_PAGE_SIZE),
                ],
                _json(
                    {"type": "array", "items": _ref("EventView")},
                    "Events, oldest first; a Link rel=next header while more "
                    "may follow.",
                ),
            ),
            "/api/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the service and its database answer.",
                    "responses": {
                        "200": _json({"type": "object"}, "Healthy."),
                        **_errors(["database_unavailable"]),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
                }
            },
        },
        "components": {"schemas": _schemas()},
    }
