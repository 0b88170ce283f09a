"""The bank's JSON API: a Flask application factory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask

from bank import BankApplication
from web import events as _feed_routes  # noqa: F401  # registers /api/events
from web.api import api, metrics_page
from web.auth import load_tokens, require_bearer_token
from web.console import console
from web.errors import register_error_handlers
from web.logs import configure_logging, log_requests
from web.metrics import count_http_requests, observe_bank

if TYPE_CHECKING:
    from collections.abc import Mapping

# A single command is held to 64 KiB in web.api; only a batch may be larger.
MAX_BODY_BYTES = 1024 * 1024


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app and its one BankApplication.

    Settings (SQLALCHEMY_URL and every other eventsourcing key) come from
    `config` first, then from the process environment.
    """
    flask_app = Flask(__name__)
    # "/api/accounts//events" must not be redirected to another account's path.
    flask_app.url_map.merge_slashes = False
    flask_app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    flask_app.config.from_mapping(config or {})
    configure_logging(config or {})
    flask_app.extensions["bank"] = BankApplication(env=bank_env(config or {}))
    observe_bank(flask_app.extensions["bank"])
    # Before the token check, so that a refused request has its id and count.
    log_requests(flask_app)
    count_http_requests(flask_app)
    flask_app.register_blueprint(api)
    flask_app.register_blueprint(console)  # HTML pages at / and /api/docs
    flask_app.register_blueprint(metrics_page)
    require_bearer_token(flask_app, load_tokens(config or {}))
    register_error_handlers(flask_app)
    return flask_app


def bank_env(config: Mapping[str, Any]) -> dict[str, str]:
    """The BankApplication settings in `config` (strings and numbers)."""
    return {
        key: str(value)
        for key, value in config.items()
        if isinstance(value, str | int) and not isinstance(value, bool)
    }
