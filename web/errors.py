"""One place that turns every failure into the JSON error contract."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import InterfaceError, OperationalError
from flask import current_app, jsonify
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from bank import BankError

if TYPE_CHECKING:
    from flask import Flask, Response

logger = logging.getLogger(__name__)

# The web layer decides no business meaning: it maps stable codes to statuses.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "unknown_command": 400,
    "unauthorized": 401,
    "not_found": 404,
    "account_not_found": 404,
    "transfer_not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "account_already_exists": 409,
    "insufficient_funds": 409,
    "account_closed": 409,
    "account_not_empty": 409,
    "account_has_pending_transfers": 409,
    "currency_mismatch": 409,
    "transfer_not_pending": 409,
    "transfer_not_posted": 409,
    "amount_exceeds_transfer": 409,
    "payload_too_large": 413,
    "uri_too_long": 414,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "idempotency_key_reused": 422,
    "headers_too_large": 431,
    "internal_error": 500,
    "read_models_unavailable": 501,
    "concurrency_conflict": 503,
    "database_unavailable": 503,
    "read_model_behind": 503,
    "read_model_rebuilding": 503,
    "too_many_streams": 503,
}
RETRY_AFTER_SECONDS = {
    "concurrency_conflict": "1",
    "database_unavailable": "5",
    "read_model_behind": "1",
    "read_model_rebuilding": "5",
    "too_many_streams": "5",
}
# Any other status under 500 is a bad_request; from 500 up, an internal_error.
CODE_BY_HTTP_STATUS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a sentence, and optional specifics."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: ErrorDetail


class ApiError(Exception):
    """A request the API refuses before the bank sees it."""

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


def error_document(
    code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The body of every error, whoever answers it (the app or the HTTP server)."""
    body = ErrorBody(
        error=ErrorDetail(code=code, message=message, details=details or None)
    )
    return body.model_dump(exclude_none=True)


def error_response(
    code: str, message: str, details: dict[str, Any] | None = None
) -> tuple[Response, int]:
    """A JSON error body with the status its code maps to."""
    response = jsonify(error_document(code, message, details))
    if code in RETRY_AFTER_SECONDS:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS[code]
    if code == "unauthorized":
        response.headers["WWW-Authenticate"] = 'Bearer realm="bank"'

    return response, STATUS_BY_CODE[code]


def validation_details(error: ValidationError, prefix: str = "data") -> dict[str, Any]:
    """Each failed field as a path (e.g. data.amount_in_cents) and a reason."""
    return {
        "errors": [
            {
                "field": ".".join([prefix, *(str(part) for part in item["loc"])]),
                "reason": item["msg"],
            }
            for item in error.errors()
        ]
    }


def register_error_handlers(flask_app: Flask) -> None:
    """Answer every error, expected or not, with the JSON error contract."""

    @flask_app.errorhandler(ApiError)
    def api_error(error: ApiError) -> tuple[Response, int]:
        return error_response(error.code, error.message, error.details)

    @flask_app.errorhandler(BankError)
    def bank_error(error: BankError) -> tuple[Response, int]:
        details = dict(error.details)
        if error.code == "validation_error" and "field" in details:
            field = details.pop("field")
            details["errors"] = [{"field": f"data.{field}", "reason": error.message}]
        return error_response(error.code, error.message, details)

    @flask_app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        code = CODE_BY_HTTP_STATUS.get(status, "bad_request" if status < 500 else "")
        if not code:
            return internal_error(error)
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        message = {
            "not_found": "No such endpoint.",
            "method_not_allowed": "This endpoint does not accept that method.",
            "payload_too_large": f"The request body is larger than {limit:,} bytes.",
        }.get(code, error.description or "Bad request.")
        response, status = error_response(code, message)
        if "Allow" in (headers := dict(error.get_headers())):
            response.headers["Allow"] = headers["Allow"]
        return response, status

    @flask_app.errorhandler(OperationalError)
    @flask_app.errorhandler(InterfaceError)
    def database_unavailable(error: Exception) -> tuple[Response, int]:
        logger.warning("database unavailable: %s", error)
        return error_response(
            "database_unavailable",
            "The database did not answer. Retry later.",
        )

    @flask_app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[Response, int]:
        error_id = uuid.uuid4().hex
        logger.exception("internal error %s", error_id, exc_info=error)
        return error_response(
            "internal_error",
            "Something went wrong on our side; the error id is logged.",
            {"error_id": error_id},
        )
