"""The console: read-only HTML pages at /, and the API docs at /api/docs.

Every page is a shell (HTML, CSS, vanilla JavaScript from web/static) that
loads without a token; its data comes from /api, with the bearer token the
browser keeps in sessionStorage when tokens are configured. So a page tells
nothing that /api would not tell the same caller. The docs page is Swagger UI
from the flask-swagger-ui package's files, served here: nothing comes from
outside at run time.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from flask import (
    Blueprint,
    abort,
    current_app,
    render_template,
    send_from_directory,
)

from bank.feed import FEED_TYPES

if TYPE_CHECKING:
    from flask import Response

console = Blueprint("console", __name__)

# The Swagger UI distribution that the flask-swagger-ui wheel ships, and the
# two of its files the docs page uses (its own index page is not served).
SWAGGER_UI_DIR = Path(str(files("flask_swagger_ui") / "dist"))
SWAGGER_UI_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
# Scripts and styles from this server only, no inline script, no framing.
CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# Swagger UI styles elements inline and draws its icons as data: images.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def page(template: str, title: str, **context: object) -> Response:
    """A console page: the shell, told whether the API wants a token."""
    tokens: tuple[bytes, ...] = current_app.extensions["bank_api_tokens"]
    response = current_app.make_response(
        render_template(
            f"console/{template}",
            title=title,
            token_required=bool(tokens),
            **context,
        )
    )
    response.headers["Content-Security-Policy"] = CONSOLE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@console.get("/")
def search() -> Response:
    """Find accounts by owner email or by id."""
    return page("search.html", "Find accounts")


@console.get("/accounts/<account_id>")
def account(account_id: str) -> Response:
    """One account: now or at a past version or moment, its statement and events."""
    return page("account.html", f"Account {account_id}", account_id=account_id)


@console.get("/transfers/<transfer_id>")
def transfer(transfer_id: str) -> Response:
    """One transfer: its status, and its holds, postings, voids and reversals."""
    return page("transfer.html", f"Transfer {transfer_id}", transfer_id=transfer_id)


@console.get("/feed")
def feed() -> Response:
    """The live feed: every event as it is recorded, from /api/events/stream."""
    return page("feed.html", "Live feed", feed_types=list(FEED_TYPES))


@console.get("/audit")
def audit() -> Response:
    """The audit: every check of `bank audit` and what it found."""
    return page("audit.html", "Audit")


@console.get("/api/docs")
def docs() -> Response:
    """Swagger UI on /api/openapi.json."""
    response = page("docs.html", "API documentation")
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    return response


@console.get("/api/docs/<filename>")
def docs_asset(filename: str) -> Response:
    """One of Swagger UI's own files."""
    if filename not in SWAGGER_UI_FILES:
        abort(404)
    response = send_from_directory(SWAGGER_UI_DIR, filename, max_age=86400)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
