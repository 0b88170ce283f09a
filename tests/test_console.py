"""The console at / and the API docs at /api/docs, and the audit they show.

Pages are shells that load without a token; every piece of data comes from
/api, with the token when tokens are configured. The browser tests drive
Debian's headless Chromium (tests/browser.py) against a real `bank serve`,
and keep a screenshot of each page they visit in their tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import pytest
from browser import (
    axe_violations,
    launched_chromium,
    low_contrast,
    text_contrasts,
    unlabelled_controls,
)
from conftest import sqlite_file_env
from live_server import REPO_ROOT, running_server
from sqlalchemy import update

from bank.audit import CHECKS
from web import create_app
from web.api import ledger
from web.openapi import MAX_AUDIT_VIOLATIONS_LISTED, openapi_document
from web.testing import HOST

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import BankEnv
    from flask import Flask
    from flask.testing import FlaskClient
    from live_server import Server
    from playwright.sync_api import Browser, Page

TOKEN = "console-token-5b1e0c"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CONSOLE_FILES = REPO_ROOT / "web" / "static" / "console"
CONSOLE_TEMPLATES = REPO_ROOT / "web" / "templates" / "console"
SCREENSHOT = REPO_ROOT / "docs" / "console-account.png"
# Set to rewrite docs/console-account.png from the time-travel test (on SQLite).
UPDATE_SCREENSHOT = "BANK_UPDATE_SCREENSHOTS"
# How long the token server's event streams last before the page resumes one.
STREAM_SECONDS = 2
PAGES = [
    "/",
    "/accounts/123",
    "/transfers/00000000-0000-4000-8000-000000000000",
    "/feed",
    "/audit",
    "/api/docs",
]


def unique(prefix: str) -> str:
    """An id or name no other test of the module uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def secured(sqlite_env: BankEnv) -> Iterator[Flask]:
    """The app on SQLite with a configured token."""
    flask_app = create_app({**sqlite_env, "BANK_API_TOKENS": TOKEN, "TESTING": True})
    yield flask_app
    flask_app.extensions["bank"].close()


# The shells load without a token; the data never does.


@pytest.mark.parametrize("path", PAGES)
def test_a_console_page_loads_without_a_token_and_says_one_is_needed(
    secured: Flask, path: str
) -> None:
    response = secured.test_client().get(path)

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert 'data-token-required="true"' in response.text


def test_without_tokens_the_console_asks_for_none(memory_env: BankEnv) -> None:
    response = create_app(memory_env).test_client().get("/")

    assert 'data-token-required="false"' in response.text


def test_a_page_holds_no_data_and_the_api_gives_none_without_a_token(
    secured: Flask,
) -> None:
    client = secured.test_client()
    opened = client.post(
        "/api",
        json={
            "command": "account_open",
            "data": {"account_owner_email": "hidden@example.com", "account_id": "7"},
        },
        headers=BEARER,
    )

    page = client.get("/accounts/7")
    reads = [
        client.get(path)
        for path in [
            "/api/accounts/7",
            "/api/accounts?owner_email=hidden@example.com",
            "/api/accounts/7/statement",
            "/api/accounts/7/events",
            "/api/events",
            "/api/events/stream",
            "/api/audit",
            "/api/openapi.json",
        ]
    ]

    assert opened.status_code == 201
    assert page.status_code == 200
    assert "hidden@example.com" not in page.text
    assert [read.status_code for read in reads] == [401] * len(reads)


def test_the_console_files_and_swagger_ui_load_without_a_token(
    secured: Flask,
) -> None:
    client = secured.test_client()
    names = sorted(path.name for path in CONSOLE_FILES.iterdir())

    files = [client.get(f"/static/console/{name}") for name in names]
    swagger = [
        client.get(f"/api/docs/{name}")
        for name in ["swagger-ui.css", "swagger-ui-bundle.js"]
    ]

    assert "console.js" not in names  # one module per page, no bundle
    assert {"api.js", "account.js", "console.css", "feed.js"} <= set(names)
    assert [(r.status_code, bool(r.data)) for r in files + swagger] == [(200, True)] * (
        len(files) + len(swagger)
    )
    assert swagger[1].mimetype in {"text/javascript", "application/javascript"}


def test_the_docs_serve_only_swagger_uis_own_files(memory_env: BankEnv) -> None:
    client = create_app(memory_env).test_client()

    answers = [
        client.get(path).status_code
        for path in [
            "/api/docs/index.html",
            "/api/docs/swagger-initializer.js",
            "/api/docs/..%2F..%2Fconsole.py",
            "/static/console/../../console.py",
        ]
    ]

    assert answers == [404, 404, 404, 404]


@pytest.mark.parametrize("path", PAGES)
def test_a_page_runs_only_this_servers_scripts_and_cannot_be_framed(
    secured: Flask, path: str
) -> None:
    policy = secured.test_client().get(path).headers["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"


def test_the_console_refers_to_no_other_host() -> None:
    sources = [*CONSOLE_FILES.iterdir(), *CONSOLE_TEMPLATES.iterdir()]
    texts = {path.name: path.read_text(encoding="utf-8") for path in sources}

    # The one absolute URL allowed is SVG's namespace name, which is never fetched.
    outside = {
        name: found
        for name, text in texts.items()
        if (found := re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text))
        and set(found) != {"http://www.w3.org"}
    }

    assert outside == {}


def test_the_docs_page_points_swagger_ui_at_the_local_description(
    memory_env: BankEnv,
) -> None:
    page = create_app(memory_env).test_client().get("/api/docs").text

    assert 'data-spec-url="/api/openapi.json"' in page
    assert 'src="/api/docs/swagger-ui-bundle.js"' in page


# GET /api/audit: `bank audit`'s checks, each with its first violations.


def audit_validator() -> jsonschema_rs.Validator:
    """The audit answer's schema, as the OpenAPI description gives it."""
    answer = openapi_document()["paths"]["/api/audit"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator(schema)


def run(client: FlaskClient, name: str, **data: Any) -> dict[str, Any]:
    """POST one command and return its answer, which must be accepted."""
    response = client.post("/api", json={"command": name, "data": data})
    assert response.status_code in {200, 201}, response.json
    answer: dict[str, Any] = response.json or {}
    return answer


def test_the_audit_of_a_sound_bank_passes_every_check(client: FlaskClient) -> None:
    run(client, "account_open", account_owner_email="a@example.com", account_id="a")
    run(client, "account_open", account_owner_email="b@example.com", account_id="b")
    run(client, "account_deposit", account_id="a", amount_in_cents=1000)
    hold = run(
        client,
        "account_transfer",
        from_account_id="a",
        to_account_id="b",
        amount_in_cents=600,
        pending=True,
    )
    run(client, "transfer_post", transfer_id=hold["transfer_id"], amount_in_cents=500)
    run(
        client, "transfer_reverse", transfer_id=hold["transfer_id"], amount_in_cents=100
    )

    response = client.get("/api/audit")

    report = response.json or {}
    assert response.status_code == 200
    assert audit_validator().is_valid(report), report
    assert report["passed"] is True
    assert [check["name"] for check in report["checks"]] == list(CHECKS)
    assert all(check["ran"] and check["passed"] for check in report["checks"])
    assert (report["accounts"], report["transfers"]) == (2, 2)
    assert report["currencies"] == [
        {
            "currency": "USD",
            "balance_in_cents": 1000,
            "deposits_in_cents": 1000,
            "withdrawals_in_cents": 0,
        }
    ]


def test_the_audit_lists_the_first_twenty_violations_of_a_failing_check(
    flask_app: Flask,
) -> None:
    client = flask_app.test_client()
    batch = [
        {
            "command": "account_open",
            "data": {"account_owner_email": "c@example.com", "account_id": f"c{n}"},
        }
        for n in range(25)
    ]
    assert client.post("/api", json={"batch": batch}).status_code == 200
    with flask_app.app_context():
        projection = ledger().projection
        projection.catch_up()
        with projection.engine.begin() as db:
            db.execute(update(projection.accounts).values(balance_in_cents=999))

    report = client.get("/api/audit").json or {}

    checks = {check["name"]: check for check in report["checks"]}
    read_models = checks.pop("read models")
    assert audit_validator().is_valid(report), report
    assert report["passed"] is False
    assert read_models["passed"] is False
    assert read_models["violation_count"] == 25
    assert len(read_models["violations"]) == MAX_AUDIT_VIOLATIONS_LISTED == 20
    assert read_models["violations"][0]["message"] == (
        "Account c0: the accounts view row differs from the events: "
        "balance_in_cents is 999, the events give 0."
    )
    assert all(check["passed"] for check in checks.values())


def test_on_the_memory_store_the_audit_skips_the_read_models(
    memory_env: BankEnv,
) -> None:
    client = create_app(memory_env).test_client()
    run(client, "account_open", account_owner_email="a@example.com")

    report = client.get("/api/audit").json or {}

    [read_models] = [c for c in report["checks"] if c["name"] == "read models"]
    assert audit_validator().is_valid(report), report
    assert (read_models["ran"], read_models["passed"]) == (False, False)
    assert report["passed"] is True


# In a real browser, against `bank serve`.


@dataclass
class Visit:
    """One browser tab on a running server, and what went wrong in it."""

    page: Page
    server: Server
    screenshots: Path
    errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        """Load a console path (its data comes after: wait for what it shows)."""
        self.page.goto(f"http://{HOST}:{self.server.port}{path}")

    def shot(self, name: str) -> Path:
        """Save a screenshot of the whole page as a test artefact."""
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def run(self, name: str, **data: Any) -> dict[str, Any]:
        """Send one command to the server (with the token), which must accept it."""
        with self.server.connect() as connection:
            reply = connection.command(name, data, BEARER)
        assert reply.ok, reply
        answer: dict[str, Any] = reply.body
        return answer


@pytest.fixture(scope="module")
def console_server(
    module_db_env: BankEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`bank serve` on each real database, shared by the module's browser tests."""
    with running_server(module_db_env, tmp_path_factory.mktemp("console")) as server:
        yield server


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`bank serve` on SQLite with a configured token, and event streams of 2 s."""
    directory = tmp_path_factory.mktemp("secured")
    env = {
        **sqlite_file_env(directory),
        "BANK_API_TOKENS": TOKEN,
        "BANK_FEED_STREAM_SECONDS": str(STREAM_SECONDS),
    }
    with running_server(env, directory) as server:
        yield server


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Browser]:
    """Headless Chromium, shared by the module's browser tests."""
    with launched_chromium() as browser:
        yield browser


def new_visit(
    browser: Browser, server: Server, tmp_path: Path, token: str | None = None
) -> Iterator[Visit]:
    """A fresh tab (en-US, UTC, 1280 wide) whose script errors are kept.

    With a token, the tab has it in sessionStorage, as after the token form.
    """
    context = browser.new_context(
        locale="en-US", timezone_id="UTC", viewport={"width": 1280, "height": 900}
    )
    if token is not None:
        context.add_init_script(
            f"sessionStorage.setItem('bank.apiToken', {json.dumps(token)})"
        )
    page = context.new_page()
    page.set_default_timeout(10_000)
    visit = Visit(page, server, tmp_path)
    page.on("pageerror", lambda error: visit.errors.append(str(error)))
    # A refused fetch (a 404 the page expects) is logged too, and is no error.
    page.on(
        "console",
        lambda message: (
            visit.errors.append(message.text)
            if message.type == "error"
            and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    try:
        yield visit
    finally:
        context.close()


@pytest.fixture
def visit(
    chromium_browser: Browser, console_server: Server, tmp_path: Path
) -> Iterator[Visit]:
    """A fresh tab on the open server."""
    yield from new_visit(chromium_browser, console_server, tmp_path)


@pytest.fixture
def secured_visit(
    chromium_browser: Browser, secured_server: Server, tmp_path: Path
) -> Iterator[Visit]:
    """A fresh tab on the server that wants a token."""
    yield from new_visit(chromium_browser, secured_server, tmp_path)


@pytest.fixture
def authorised_visit(
    chromium_browser: Browser, secured_server: Server, tmp_path: Path
) -> Iterator[Visit]:
    """A fresh tab on the server that wants a token, with the token."""
    yield from new_visit(chromium_browser, secured_server, tmp_path, TOKEN)


def open_with_history(visit: Visit) -> tuple[str, str]:
    """An account with every kind of line: salary, withdrawal, transfer, hold."""
    owner, payee = unique("ada"), unique("bob")
    email = f"{owner}@example.com"
    visit.run("account_open", account_owner_email=email, account_id=owner)
    visit.run("account_open", account_owner_email="bob@example.com", account_id=payee)
    visit.run(
        "account_deposit", account_id=owner, amount_in_cents=120_000, reference="salary"
    )
    visit.run("account_withdraw", account_id=owner, amount_in_cents=25_050)
    visit.run(
        "account_transfer",
        from_account_id=owner,
        to_account_id=payee,
        amount_in_cents=30_000,
    )
    visit.run(
        "account_transfer",
        from_account_id=owner,
        to_account_id=payee,
        amount_in_cents=15_000,
        pending=True,
        timeout_seconds=3600,
        metadata={"order": "A-7"},
    )
    visit.run("account_deposit", account_id=owner, amount_in_cents=4_200)
    return owner, email


def text(page: Page, selector: str) -> str:
    """The visible text of the element."""
    return page.locator(selector).inner_text().strip()


@pytest.mark.slow
def test_a_person_tabs_to_the_search_finds_an_account_and_sees_its_balance(
    visit: Visit,
) -> None:
    owner, email = open_with_history(visit)
    page = visit.page
    visit.open("/")

    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    page.keyboard.type(email)
    page.keyboard.press("Enter")
    row = page.locator("#results tbody tr", has_text=owner)
    row.wait_for()
    found = row.inner_text()
    visit.shot("search")
    page.keyboard.press("Tab")  # the Search button
    page.keyboard.press("Tab")  # the account's link
    focused = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/accounts/{owner}")
    page.locator("#f-balance", has_text="$691.50").wait_for()

    assert found.split("\t")[3:5] == ["$691.50", "$541.50"]
    assert focused == owner
    assert text(page, "#f-available") == "$541.50"
    assert text(page, "#f-pending-debits") == "$150.00"
    assert visit.errors == []


@pytest.mark.slow
def test_moving_the_time_travel_control_back_shows_the_old_balance(
    visit: Visit, module_db_env: BankEnv
) -> None:
    owner, _ = open_with_history(visit)
    page = visit.page
    visit.open(f"/accounts/{owner}")
    page.locator("#f-balance", has_text="$691.50").wait_for()
    page.locator("#chart svg").wait_for()

    page.focus("#tt-version")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    page.locator("#f-balance", has_text="$949.50").wait_for()
    status = text(page, "#tt-status")
    shot = visit.shot("account-version-3")
    if "postgres" not in module_db_env.get("SQLALCHEMY_URL", "") and (
        os.environ.get(UPDATE_SCREENSHOT) or not SCREENSHOT.exists()
    ):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    page.keyboard.press("Home")
    page.locator("#f-balance", has_text="$0.00").wait_for()
    page.fill("#tt-version-number", "2")
    page.keyboard.press("Enter")
    page.locator("#f-balance", has_text="$1,200.00").wait_for()
    page.fill("#tt-moment", "2001-01-01T00:00:00")
    page.click("#tt-moment-go")
    page.locator("#tt-status", has_text="did not exist yet").wait_for()
    page.click("#tt-now")
    page.locator("#f-balance", has_text="$691.50").wait_for()

    assert status.startswith("Showing version 3 of 6, after its withdrawal of ")
    assert page.url.endswith(f"/accounts/{owner}")
    assert page.locator("#statement tbody tr").count() == 6
    assert page.locator("#events tbody tr").count() == 6
    assert page.locator("#holds tbody tr").count() == 1
    assert (page.locator("#chart svg desc").text_content() or "").startswith(
        "6 statement lines"
    )
    assert visit.errors == []


@pytest.mark.slow
def test_a_link_to_a_past_version_opens_the_account_as_it_was(visit: Visit) -> None:
    owner, _ = open_with_history(visit)

    visit.open(f"/accounts/{owner}?version=2")
    visit.page.locator("#f-version", has_text="2 of 6").wait_for()

    assert text(visit.page, "#f-balance") == "$1,200.00"
    assert (
        visit.page.locator("#events tr.selected").get_attribute("data-version") == "2"
    )
    assert visit.errors == []


@pytest.mark.slow
def test_the_statement_and_the_history_page_forward_and_back(visit: Visit) -> None:
    account = unique("busy")
    visit.run(
        "account_open", account_owner_email="busy@example.com", account_id=account
    )
    deposits = [
        {
            "command": "account_deposit",
            "data": {"account_id": account, "amount_in_cents": n},
        }
        for n in range(1, 25)
    ]
    with visit.server.connect() as connection:
        assert connection.request("POST", "/api", {"batch": deposits}).ok
    page = visit.page
    visit.open(f"/accounts/{account}")
    page.locator("#f-version", has_text="25").wait_for()
    page.locator("#statement-page", has_text="Page 1").wait_for()
    page.locator("#events-page", has_text="Page 1").wait_for()

    first = [
        page.locator(f"#{table} tbody tr").count() for table in ("statement", "events")
    ]
    page.click("#statement-next")
    page.click("#events-next")
    page.locator("#statement-page", has_text="Page 2").wait_for()
    page.locator("#events-page", has_text="Page 2").wait_for()
    second = [
        page.locator(f"#{table} tbody tr").count() for table in ("statement", "events")
    ]
    last_line = text(page, "#statement tbody tr:last-child td:nth-child(5)")
    page.click("#events-prev")
    page.locator("#events-page", has_text="Page 1").wait_for()

    assert first == [20, 20]
    assert second == [5, 5]
    assert last_line == "$3.00"  # 1 + 2 + ... + 24 cents
    assert page.locator("#events tbody tr").count() == 20
    assert page.is_disabled("#statement-next")
    assert visit.errors == []


@pytest.mark.slow
def test_a_new_deposit_appears_on_the_live_feed(visit: Visit) -> None:
    account = unique("live")
    visit.run(
        "account_open", account_owner_email="live@example.com", account_id=account
    )
    page = visit.page
    visit.open("/feed")
    page.locator("#feed-status", has_text="Following").wait_for()

    visit.run("account_deposit", account_id=account, amount_in_cents=777)
    row = page.locator("#feed-events tbody tr", has_text=account)
    row.wait_for()
    visit.shot("feed")

    assert "Deposited" in row.inner_text()
    assert "amount_in_cents: 777" in row.inner_text()  # a feed event has no currency
    # It started at the log's head: the account's opening is not shown.
    assert page.locator("#feed-events tbody tr").count() == 1
    assert visit.errors == []


@pytest.mark.slow
def test_a_transfer_page_shows_its_hold_posting_and_reversal(visit: Visit) -> None:
    payer, payee = unique("payer"), unique("payee")
    visit.run("account_open", account_owner_email="p@example.com", account_id=payer)
    visit.run("account_open", account_owner_email="q@example.com", account_id=payee)
    visit.run("account_deposit", account_id=payer, amount_in_cents=1_000)
    hold = visit.run(
        "account_transfer",
        from_account_id=payer,
        to_account_id=payee,
        amount_in_cents=700,
        pending=True,
        metadata={"order": "B-2"},
    )["transfer_id"]
    visit.run("transfer_post", transfer_id=hold, amount_in_cents=500)
    refund = visit.run("transfer_reverse", transfer_id=hold, amount_in_cents=200)
    page = visit.page

    visit.open(f"/transfers/{hold}")
    page.locator("#history li", has_text="Reversed").wait_for()
    history = [item.inner_text() for item in page.locator("#history li").all()]
    visit.shot("transfer")
    page.click(f"#reversals a[href='/transfers/{refund['transfer_id']}']")
    page.locator("#transfer-reverses", has_text=hold).wait_for()

    assert text(visit.page, "#transfer-status") == "posted"
    assert [line.splitlines()[-1] for line in history] == [
        "Hold placed: $7.00 reserved",
        "Posted: $5.00 moved",
        f"Reversed: $2.00 moved back by transfer {refund['transfer_id'][:8]}…",
    ]
    assert visit.errors == []


@pytest.mark.slow
def test_the_audit_page_shows_every_check_passing(visit: Visit) -> None:
    open_with_history(visit)
    page = visit.page

    visit.open("/audit")
    page.locator("#audit-status", has_text="Audit finished").wait_for()
    rows = [
        row.inner_text().split("\t")
        for row in page.locator("#audit-checks tbody tr").all()
    ]
    visit.shot("audit")

    assert [row[0] for row in rows] == list(CHECKS)
    assert {row[1] for row in rows} == {"passed"}
    assert visit.errors == []


@pytest.mark.slow
def test_the_api_docs_render_the_description_with_nothing_from_outside(
    authorised_visit: Visit,
) -> None:
    visit = authorised_visit
    requested: list[str] = []
    visit.page.on("request", lambda request: requested.append(request.url))

    visit.open("/api/docs")
    visit.page.get_by_text("/api/audit", exact=True).wait_for()
    visit.shot("docs")

    local = f"http://{HOST}:{visit.server.port}/"
    assert [url for url in requested if not url.startswith((local, "data:"))] == []
    assert f"{local}api/openapi.json" in requested
    assert visit.errors == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "page_name", ["search", "account", "transfer", "feed", "audit"]
)
def test_every_page_is_labelled_readable_and_passes_axe(
    authorised_visit: Visit, page_name: str
) -> None:
    visit = authorised_visit
    owner, email = open_with_history(visit)
    with visit.server.connect() as connection:
        path = f"/api/accounts/{owner}/transfers"
        transfers = connection.request("GET", path, headers=BEARER).body
    paths = {
        "search": (f"/?q={email}", "#results tbody tr"),
        "account": (f"/accounts/{owner}?version=3", "#chart svg"),
        "transfer": (
            f"/transfers/{transfers['transfers'][0]['transfer_id']}",
            "#history li",
        ),
        "feed": ("/feed", "#feed-status:has-text('Following')"),
        "audit": ("/audit", "#audit-checks tbody tr"),
    }
    path, loaded = paths[page_name]

    visit.open(path)
    visit.page.locator(loaded).first.wait_for()
    contrasts = text_contrasts(visit.page)

    assert axe_violations(visit.page) == []
    assert low_contrast(visit.page) == []
    assert len(contrasts) > 10  # the measure saw the page's text
    assert unlabelled_controls(visit.page) == []
    assert visit.errors == []


@pytest.mark.slow
def test_with_tokens_the_console_asks_for_one_and_keeps_it_in_this_tab_only(
    secured_visit: Visit,
) -> None:
    visit = secured_visit
    account = unique("sec")
    visit.run("account_open", account_owner_email="sec@example.com", account_id=account)
    visit.run("account_deposit", account_id=account, amount_in_cents=4_321)
    answers: list[tuple[int, str]] = []
    visit.page.on(
        "response",
        lambda response: (
            answers.append((response.status, response.url))
            if "/api/" in response.url
            else None
        ),
    )
    page = visit.page

    visit.open(f"/accounts/{account}")
    gate_shown = page.is_visible("#token-gate") and page.is_hidden("#page")
    before = list(answers)
    gate_problems = [
        axe_violations(page),
        low_contrast(page),
        unlabelled_controls(page),
    ]
    visit.shot("token-gate")
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")
    page.locator("#f-balance", has_text="$43.21").wait_for()
    stored = page.evaluate(
        "[sessionStorage.getItem('bank.apiToken'), localStorage.length,"
        " document.cookie]"
    )
    page.goto(page.url.replace(f"/accounts/{account}", "/feed"))
    page.locator("#feed-status", has_text="Following").wait_for()
    visit.run("account_deposit", account_id=account, amount_in_cents=1)
    page.locator("#feed-events tbody tr", has_text=account).wait_for()
    page.wait_for_timeout(STREAM_SECONDS * 1000 + 500)  # the stream ended: resumed
    visit.run("account_deposit", account_id=account, amount_in_cents=2)
    page.locator("#feed-events tbody tr", has_text="amount_in_cents: 2").wait_for()
    followed = [row.inner_text() for row in page.locator("#feed-events tbody tr").all()]
    page.evaluate("sessionStorage.setItem('bank.apiToken', 'wrong')")
    page.reload()
    page.locator("#token-error", has_text="That token was refused.").wait_for()

    assert gate_shown
    assert gate_problems == [[], [], []]
    assert all(status == 401 for status, _ in before), before
    assert stored == [TOKEN, 0, ""]
    # Resumed with Last-Event-ID (and the token): nothing missed, nothing twice.
    assert [row.split("\t")[1:4] for row in followed] == [
        ["Deposited", account, "amount_in_cents: 2"],
        ["Deposited", account, "amount_in_cents: 1"],
    ]
    assert visit.errors == []


@pytest.mark.slow
def test_with_tokens_the_api_docs_fetch_the_description_with_the_token(
    secured_visit: Visit,
) -> None:
    page = secured_visit.page
    secured_visit.open("/api/docs")
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")

    page.get_by_text("/api/audit", exact=True).wait_for()

    assert secured_visit.errors == []
