"""Bearer-token authentication, on when API tokens are configured."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import current_app, request

from web.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flask import Flask

TOKENS = "BANK_API_TOKENS"
TOKENS_FILE = "BANK_API_TOKENS_FILE"
OPEN_ENDPOINTS = frozenset({"api.health"})
# The console's pages (web/console.py) and its files (Flask's "static" route,
# web/static) hold no data: each page fetches its data from /api, with a token.
OPEN_PAGES = frozenset({"static"})
OPEN_BLUEPRINTS = frozenset({"console"})


def load_tokens(config: Mapping[str, Any]) -> tuple[bytes, ...]:
    """The API tokens from config or the environment (a list, or a file of lines)."""
    listed = str(config.get(TOKENS) or os.environ.get(TOKENS) or "")
    tokens = [token.strip() for token in listed.split(",")]
    path = config.get(TOKENS_FILE) or os.environ.get(TOKENS_FILE)
    if path:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        tokens += [line.strip() for line in lines if not line.startswith("#")]
    return tuple(token.encode() for token in tokens if token)


def require_bearer_token(flask_app: Flask, tokens: tuple[bytes, ...]) -> None:
    """Refuse every request but the health check without a configured token."""
    flask_app.extensions["bank_api_tokens"] = tokens
    if tokens:
        flask_app.before_request(_check_bearer_token)


def _check_bearer_token() -> None:
    if request.endpoint in OPEN_ENDPOINTS | OPEN_PAGES:
        return
    if request.blueprint in OPEN_BLUEPRINTS:
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    tokens: tuple[bytes, ...] = current_app.extensions["bank_api_tokens"]
    # Compare against every token, each in constant time, so neither timing
    # nor the position of a match tells an attacker anything.
    matches = [hmac.compare_digest(presented.encode(), token) for token in tokens]
    if scheme.lower() != "bearer" or not any(matches):
        raise ApiError(
            "unauthorized", "A valid 'Authorization: Bearer' token is required."
        )
