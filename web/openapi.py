"""The OpenAPI 3.1 description, generated from the same pydantic models."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from bank.commands import COMMANDS
from web.errors import STATUS_BY_CODE, ErrorBody
from web.reads import AccountView, EventView

if TYPE_CHECKING:
    from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*codes: str) -> dict[str, Any]:
    """Error responses for these codes, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    return {
        str(status): _json(_ref(ErrorBody), "Error: " + ", ".join(sorted(names)))
        for status, names in sorted(by_status.items())
    }


def _command_request(name: str, data_model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["command", "data"],
        "additionalProperties": False,
        "properties": {"command": {"const": name}, "data": _ref(data_model)},
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The whole API description as a JSON-ready dict."""
    models: list[type[BaseModel]] = [ErrorBody, AccountView, EventView]
    for spec in COMMANDS.values():
        models += [spec.data_model, spec.response_model]
    unique = list(dict.fromkeys(models))
    _, definitions = models_json_schema(
        [(model, "serialization") for model in unique], ref_template=_REF
    )
    schemas: dict[str, Any] = definitions["$defs"]
    # Request data must be described as it is validated, not as it is dumped.
    for spec in COMMANDS.values():
        schemas[spec.data_model.__name__] = spec.data_model.model_json_schema(
            ref_template=_REF, mode="validation"
        )
        schemas[f"{spec.name}_request"] = _command_request(spec.name, spec.data_model)

    success: dict[int, list[dict[str, str]]] = {}
    for spec in COMMANDS.values():
        success.setdefault(spec.success_status, []).append(_ref(spec.response_model))
    command_responses = {
        str(status): _json(
            {"oneOf": list({str(r): r for r in refs}.values())}, "Command accepted."
        )
        for status, refs in sorted(success.items())
    }
    command_responses.update(
        _errors(
            "bad_request",
            "unknown_command",
            "unauthorized",
            "account_not_found",
            "account_already_exists",
            "insufficient_funds",
            "account_closed",
            "account_not_empty",
            "payload_too_large",
            "unsupported_media_type",
            "validation_error",
            "internal_error",
            "concurrency_conflict",
            "database_unavailable",
        )
    )
    account_id_parameter = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]{1,64}$"},
    }

    def query(name: str, minimum: int, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": {"type": "integer", "minimum": minimum},
        }

    read_errors = _errors(
        "account_not_found",
        "validation_error",
        "internal_error",
        "database_unavailable",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Event-sourced bank",
            "version": "1.0.0",
            "description": "One command endpoint and a few reads; amounts are "
            'integer cents; every error is {"error": {code, message, details}}.',
        },
        "paths": {
            "/api": {
                "post": {
                    "operationId": "runCommand",
                    "summary": "Run one command.",
                    "description": "\n".join(
                        f"- `{spec.name}`: {spec.summary}" for spec in COMMANDS.values()
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": _REF.format(model=f"{name}_request")}
                                        for name in COMMANDS
                                    ],
                                    "discriminator": {
                                        "propertyName": "command",
                                        "mapping": {
                                            name: _REF.format(model=f"{name}_request")
                                            for name in COMMANDS
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": command_responses,
                }
            },
            "/api/accounts/{account_id}": {
                "get": {
                    "operationId": "getAccount",
                    "summary": "An account now, or as it was at a past version.",
                    "parameters": [
                        account_id_parameter,
                        query("version", 1, "Rebuild the account as of this version."),
                    ],
                    "responses": {
                        "200": _json(_ref(AccountView), "The account."),
                        **read_errors,
                    },
                }
            },
            "/api/accounts/{account_id}/events": {
                "get": {
                    "operationId": "getAccountEvents",
                    "summary": "An account's events in order, a page at a time.",
                    "parameters": [
                        account_id_parameter,
                        query("after_version", 0, "Only events after this version."),
                        query("limit", 1, "Page size, 1 to 1000 (default 100)."),
                    ],
                    "responses": {
                        "200": _json(
                            {"type": "array", "items": _ref(EventView)},
                            "Events, oldest first; a Link rel=next header when "
                            "more may follow.",
                        ),
                        **read_errors,
                    },
                }
            },
            "/api/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the service and its database answer.",
                    "responses": {
                        "200": _json({"type": "object"}, "Healthy."),
                        **_errors("database_unavailable"),
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
        "components": {"schemas": schemas},
    }
