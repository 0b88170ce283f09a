"""Each stated limit, at the limit and one past it: in the domain, and over HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from scenario import (
    BACK,
    LAPSED,
    OPEN,
    PAID,
    deposited,
    moved,
    opened,
    overdraft_limit_set,
    pending,
    reversal,
)

from bank import InvalidCommandError
from bank.commands import (
    Deposit,
    ExpireHolds,
    OpenAccount,
    PostTransfer,
    ReverseTransfer,
    SetOverdraftLimit,
    Transfer,
)
from web.api import MAX_COMMAND_BODY_BYTES

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from scenario import Scenario


# In the domain.


def test_an_overdraft_limit_of_exactly_10_to_the_15_cents_is_accepted(
    bank: Scenario,
) -> None:
    bank.given(opened("A"))

    bank.when(SetOverdraftLimit("A", 10**15))

    assert bank.new_events() == [overdraft_limit_set("A", 10**15)]


def test_a_reference_of_exactly_140_printable_characters_is_accepted(
    bank: Scenario,
) -> None:
    bank.given(opened("A"))

    bank.when(Deposit("A", 5, reference="é" * 140))

    assert bank.new_events() == [deposited("A", 5, reference="é" * 140)]


@pytest.mark.parametrize("reference", ["tab\there", "line\nbreak", "nul\x00"])
def test_a_reference_with_a_control_character_is_refused(
    bank: Scenario, reference: str
) -> None:
    bank.given(opened("A"))

    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(Deposit("A", 5, reference=reference))

    assert refusal.value.details == {"field": "reference"}
    assert bank.new_events() == []


def test_metadata_at_every_limit_is_accepted(bank: Scenario) -> None:
    metadata = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(16)}
    bank.given(opened("A"))

    bank.when(Deposit("A", 5, metadata=metadata))

    assert bank.new_events() == [deposited("A", 5, metadata=metadata)]


@pytest.mark.parametrize(
    "metadata",
    [{"k" * 41: "v"}, {"": "v"}, {"k": 5}, ["k"]],
    ids=["a key of 41", "an empty key", "a value not text", "not an object"],
)
def test_metadata_past_a_limit_is_refused(bank: Scenario, metadata: Any) -> None:
    bank.given(opened("A"))

    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(Deposit("A", 5, metadata=metadata))

    assert refusal.value.details == {"field": "metadata"}
    assert bank.new_events() == []


@pytest.mark.parametrize("timeout", [1, 30 * 24 * 3600])
def test_a_holds_timeout_of_1_second_to_30_days_is_accepted(
    bank: Scenario, timeout: int
) -> None:
    bank.given(opened("A"), opened("B"), deposited("A", 10))

    result = bank.when(Transfer("A", "B", 10, pending=True, timeout_seconds=timeout))

    assert result.transfer is not None
    assert result.transfer.expires_at is not None
    # The expiry is reckoned when the command decides, just before its events.
    lasts = result.transfer.expires_at - result.transfer.created_at
    assert timeout - 1 < lasts.total_seconds() <= timeout


@pytest.mark.parametrize("timeout", [30 * 24 * 3600 + 1, -1, True, 1.5])
def test_a_holds_timeout_past_30_days_or_not_whole_seconds_is_refused(
    bank: Scenario, timeout: Any
) -> None:
    bank.given(opened("A"), opened("B"), deposited("A", 10))

    with pytest.raises(InvalidCommandError) as refusal:
        bank.when(Transfer("A", "B", 10, pending=True, timeout_seconds=timeout))

    assert refusal.value.details == {"field": "timeout_seconds"}
    assert bank.new_events() == []


def test_an_account_id_of_64_characters_is_accepted_and_65_refused(
    bank: Scenario,
) -> None:
    bank.when(OpenAccount("o@example.com", "a" * 64))

    with pytest.raises(InvalidCommandError):
        bank.when(OpenAccount("o@example.com", "a" * 65))

    assert bank.new_events() == [opened("a" * 64, "o@example.com")]


@pytest.mark.parametrize("amount", [1, None], ids=["that cent", "the rest"])
def test_the_last_cent_of_a_transfer_can_be_reversed(
    bank: Scenario, amount: int | None
) -> None:
    bank.given(
        opened("A"),
        opened("B"),
        deposited("A", 40),
        *moved(PAID, "A", "B", 40),
        *reversal(PAID, BACK, "A", "B", 39),
    )

    result = bank.when(ReverseTransfer(PAID, amount))

    assert result.transfer is not None
    assert (result.transfer.amount_in_cents, result.transfer.reverses_transfer_id) == (
        1,
        PAID,
    )
    assert [account.balance_in_cents for account in result.accounts] == [0, 40]


def test_expiring_an_accounts_lapsed_holds_answers_what_it_still_holds(
    bank: Scenario,
) -> None:
    now = datetime_now_with_tzinfo()
    bank.given(
        opened("A"),
        opened("B"),
        deposited("A", 100),
        *pending(LAPSED, "A", "B", 40, expires_at=now - timedelta(minutes=1)),
        *pending(OPEN, "A", "B", 30, expires_at=now + timedelta(hours=1)),
    )

    result = bank.when(ExpireHolds("A"))

    assert (
        result.account.pending_debits_in_cents,
        result.account.available_in_cents,
    ) == (
        30,
        70,
    )


def test_raising_the_overdraft_limit_beside_a_hold_answers_what_is_available(
    bank: Scenario,
) -> None:
    bank.given(
        opened("A"), opened("B"), deposited("A", 100), *pending(OPEN, "A", "B", 30)
    )

    result = bank.when(SetOverdraftLimit("A", 50))

    assert (
        result.account.pending_debits_in_cents,
        result.account.available_in_cents,
    ) == (
        30,
        120,
    )


def test_a_transfers_answer_carries_the_transfers_version(bank: Scenario) -> None:
    bank.given(opened("A"), opened("B"), deposited("A", 100))

    held = bank.when(Transfer("A", "B", 60, pending=True))
    assert held.transfer is not None
    posted = bank.when(PostTransfer(held.transfer.transfer_id, 50))

    assert posted.transfer is not None
    assert (held.transfer.version, posted.transfer.version) == (1, 2)
    assert (posted.transfer.status, posted.transfer.posted_amount_in_cents) == (
        "posted",
        50,
    )


# Over HTTP.


def stored(flask_app: Flask) -> int:
    """How many events the bank has stored."""
    return int(flask_app.extensions["bank"].recorder.max_notification_id() or 0)


def deposit(amount: Any, **extra: Any) -> dict[str, Any]:
    """A deposit of this amount to account A, as JSON."""
    data = {"account_id": "A", "amount_in_cents": amount, **extra}
    return {"command": "account_deposit", "data": data}


def bad_query(name: str, reason: str) -> dict[str, Any]:
    """The 422 body refusing query parameter `name` for this reason."""
    return {
        "error": {
            "code": "validation_error",
            "message": f"Query parameter '{name}' {reason}.",
            "details": {"errors": [{"field": f"query.{name}", "reason": reason}]},
        }
    }


@pytest.fixture
def account_a(client: FlaskClient) -> FlaskClient:
    """A client of a bank with account A, empty."""
    data = {"account_owner_email": "a@example.com", "account_id": "A"}
    response = client.post("/api", json={"command": "account_open", "data": data})
    assert response.status_code == 201
    return client


@pytest.mark.parametrize(
    ("amount", "balance"),
    [("1000000000000000", 10**15), ("0001000000000000000", 10**15), ("1", 1)],
)
def test_an_amount_string_of_up_to_16_digits_after_leading_zeros_is_accepted(
    account_a: FlaskClient, amount: str, balance: int
) -> None:
    response = account_a.post("/api", json=deposit(amount))

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["balance_in_cents"] == balance


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1000000000000001", "Input should be less than or equal to 1000000000000000"),
        ("10000000000000000", "must be at most 1000000000000000 cents"),
        ("\u0661\u0662\u0663", "must be a whole number of cents: digits only"),
        ("12a", "must be a whole number of cents: digits only"),
        (1.0, "must be a whole number of cents: a JSON integer or a string of digits"),
        (True, "must be a whole number of cents: a JSON integer or a string of digits"),
    ],
)
def test_an_amount_past_10_to_the_15_or_not_ascii_digits_is_refused_naming_the_field(
    account_a: FlaskClient, flask_app: Flask, amount: Any, reason: str
) -> None:
    before = stored(flask_app)

    response = account_a.post("/api", json=deposit(amount))

    assert (response.status_code, response.json) == (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": "The command's data is invalid; see details.errors.",
                "details": {
                    "errors": [{"field": "data.amount_in_cents", "reason": reason}]
                },
            }
        },
    )
    assert stored(flask_app) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_and_get_400(
    account_a: FlaskClient, flask_app: Flask, constant: str
) -> None:
    before = stored(flask_app)
    body = '{"command": "account_deposit", "data": {"account_id": "A", '
    body += f'"amount_in_cents": {constant}}}}}'

    response = account_a.post("/api", data=body, content_type="application/json")

    assert (response.status_code, response.json) == (
        400,
        {"error": {"code": "bad_request", "message": "The body is not valid JSON."}},
    )
    assert stored(flask_app) == before


def body_of(size: int) -> bytes:
    """A deposit to A whose JSON body is exactly this many bytes."""
    empty = json.dumps(deposit(1, reference="")).encode()
    padded = json.dumps(deposit(1, reference=" " * (size - len(empty)))).encode()
    assert len(padded) == size
    return padded


def test_a_command_body_of_exactly_64_kib_is_read_and_one_byte_more_gets_413(
    account_a: FlaskClient, flask_app: Flask
) -> None:
    at_limit = account_a.post(
        "/api", data=body_of(MAX_COMMAND_BODY_BYTES), content_type="application/json"
    )
    before = stored(flask_app)
    past = account_a.post(
        "/api",
        data=body_of(MAX_COMMAND_BODY_BYTES + 1),
        content_type="application/json",
    )

    # Read, so judged by the domain: a reference is at most 140 characters.
    assert at_limit.status_code == 422
    assert at_limit.json is not None
    assert at_limit.json["error"]["details"]["errors"][0]["field"] == "data.reference"
    assert (past.status_code, past.json) == (
        413,
        {
            "error": {
                "code": "payload_too_large",
                "message": "A command body is at most 64 KiB.",
            }
        },
    )
    assert stored(flask_app) == before


def test_a_body_past_the_servers_limit_gets_413_in_the_json_contract(
    account_a: FlaskClient, flask_app: Flask
) -> None:
    before = stored(flask_app)
    limit = flask_app.config["MAX_CONTENT_LENGTH"]

    response = account_a.post(
        "/api", data=b" " * (limit + 1), content_type="application/json"
    )

    assert (response.status_code, response.json) == (
        413,
        {
            "error": {
                "code": "payload_too_large",
                "message": f"The request body is larger than {limit:,} bytes.",
            }
        },
    )
    assert stored(flask_app) == before


def test_a_batch_of_exactly_one_command_is_run(
    account_a: FlaskClient, flask_app: Flask
) -> None:
    response = account_a.post("/api", json={"batch": [deposit(7)]})

    assert response.status_code == 200
    assert response.json is not None
    assert [result["balance_in_cents"] for result in response.json["results"]] == [7]
    assert response.json["position"] == response.json["results"][0]["position"]


def test_an_empty_batch_is_refused_and_stores_nothing(
    account_a: FlaskClient, flask_app: Flask
) -> None:
    before = stored(flask_app)

    response = account_a.post("/api", json={"batch": []})

    assert (response.status_code, response.json) == (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": "A batch holds 1 to 1000 commands.",
                "details": {
                    "errors": [
                        {
                            "field": "batch",
                            "reason": "A batch holds 1 to 1000 commands.",
                        }
                    ]
                },
            }
        },
    )
    assert stored(flask_app) == before


@pytest.fixture
def history_of_150(account_a: FlaskClient) -> FlaskClient:
    """Account A with 150 events: opened, then 149 deposits in one batch."""
    response = account_a.post("/api", json={"batch": [deposit(1)] * 149})
    assert response.status_code == 200
    return account_a


@pytest.mark.parametrize(
    ("query", "versions", "next_page"),
    [
        ("", list(range(1, 101)), "after_version=100&limit=100"),
        ("?limit=1", [1], "after_version=1&limit=1"),
        ("?limit=1000", list(range(1, 151)), None),
        ("?after_version=0&limit=2", [1, 2], "after_version=2&limit=2"),
        ("?after_version=148", [149, 150], None),
        ("?after_version=150", [], None),
    ],
    ids=["default 100", "limit 1", "limit 1000", "after 0", "the last page", "past"],
)
def test_history_pages_by_version_with_a_link_to_the_next_when_full(
    history_of_150: FlaskClient, query: str, versions: list[int], next_page: str | None
) -> None:
    response = history_of_150.get(f"/api/accounts/A/events{query}")

    assert response.status_code == 200
    assert response.json is not None
    assert [event["version"] for event in response.json] == versions
    link = response.headers.get("Link")
    expected = (
        f'</api/accounts/A/events?{next_page}>; rel="next"' if next_page else None
    )
    assert link == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=0", "must be from 1 to 1000"),
        ("limit=1001", "must be from 1 to 1000"),
        ("limit=\u0661", "must be a whole number"),
        ("limit=-1", "must be a whole number"),
        ("limit=00000000000000000000000000001", None),
    ],
)
def test_a_page_size_outside_1_to_1000_is_refused_naming_the_parameter(
    account_a: FlaskClient, query: str, reason: str | None
) -> None:
    response = account_a.get(f"/api/accounts/A/events?{query}")

    if reason is None:  # leading zeros are only zeros
        assert response.status_code == 200
        return
    assert (response.status_code, response.json) == (422, bad_query("limit", reason))


@pytest.mark.parametrize(
    ("path", "field", "reason"),
    [
        (
            "/api/accounts/A/statement?from=2026-11-27",
            "query.from",
            "must be an RFC 3339 time with a zone, e.g. 2026-11-27T18:00:00Z",
        ),
        (
            "/api/accounts/bad%20id/events",
            "path.account_id",
            "must be 1 to 64 letters, digits or any of '-_.:'",
        ),
    ],
    ids=["a time without a zone", "an account id with a space"],
)
def test_a_malformed_parameter_is_refused_naming_it_and_why(
    account_a: FlaskClient, path: str, field: str, reason: str
) -> None:
    response = account_a.get(path)

    location, name = field.split(".")
    assert (response.status_code, response.json) == (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": f"{location.capitalize()} parameter '{name}' {reason}.",
                "details": {"errors": [{"field": field, "reason": reason}]},
            }
        },
    )


@pytest.mark.parametrize(
    ("query", "name", "reason"),
    [
        ("", "owner_email", "is required"),
        ("?owner_email=nope", "owner_email", "must be an email address"),
        (
            "?owner_email=a@example.com&cursor=bad%20cursor",
            "cursor",
            "must be a cursor from a previous page",
        ),
        ("?owner_email=a@example.com&limit=0", "limit", "must be from 1 to 1000"),
    ],
    ids=["no owner", "not an email", "a made-up cursor", "a page of none"],
)
def test_listing_accounts_needs_an_owners_email_and_says_what_is_wrong(
    account_a: FlaskClient, query: str, name: str, reason: str
) -> None:
    response = account_a.get(f"/api/accounts{query}")

    assert (response.status_code, response.json) == (422, bad_query(name, reason))


def test_listing_accounts_pages_by_the_limit_asked_for(account_a: FlaskClient) -> None:
    for account_id in ("B", "C"):
        data = {"account_owner_email": "a@example.com", "account_id": account_id}
        account_a.post("/api", json={"command": "account_open", "data": data})

    first = account_a.get("/api/accounts?owner_email=a@example.com&limit=2")
    assert first.json is not None
    rest = account_a.get(
        f"/api/accounts?owner_email=a@example.com&limit=2&cursor={first.json['next_cursor']}"
    )

    assert rest.json is not None
    pages = [first.json["accounts"], rest.json["accounts"]]
    assert [[account["account_id"] for account in page] for page in pages] == [
        ["A", "B"],
        ["C"],
    ]
    assert rest.json["next_cursor"] is None


@pytest.mark.parametrize(
    ("path", "name", "reason"),
    [
        (
            "/api/accounts/A?version=2&as_of=2026-11-27T18:00:00Z",
            "as_of",
            "cannot be combined with version",
        ),
        (
            "/api/accounts/A/transfers?status=lost",
            "status",
            "must be one of pending, posted, voided, expired",
        ),
        ("/api/accounts/A/transfers?cursor=x", "cursor", "must be a whole number"),
        ("/api/accounts/A/statement?cursor=-1", "cursor", "must be a whole number"),
        ("/api/accounts/A/statement?limit=1001", "limit", "must be from 1 to 1000"),
    ],
    ids=["version and as_of", "an unknown status", "a cursor", "a cursor", "a limit"],
)
def test_a_reads_query_parameters_are_checked_naming_each(
    account_a: FlaskClient, path: str, name: str, reason: str
) -> None:
    response = account_a.get(path)

    assert (response.status_code, response.json) == (422, bad_query(name, reason))


@pytest.mark.parametrize("route", ["statement", "transfers"])
def test_statements_and_transfer_lists_page_by_the_limit_asked_for(
    account_a: FlaskClient, route: str
) -> None:
    data = {"account_owner_email": "b@example.com", "account_id": "B"}
    account_a.post("/api", json={"command": "account_open", "data": data})
    account_a.post("/api", json={"batch": [deposit(50)] * 3})
    move = {"from_account_id": "A", "to_account_id": "B", "amount_in_cents": 10}
    for _ in range(3):
        account_a.post("/api", json={"command": "account_transfer", "data": move})
    key = {"statement": "lines", "transfers": "transfers"}[route]

    first = account_a.get(f"/api/accounts/A/{route}?limit=2")
    assert first.json is not None
    cursor = first.json["next_cursor"]
    rest = account_a.get(f"/api/accounts/A/{route}?limit=2&cursor={cursor}")

    assert rest.json is not None
    sizes = [len(first.json[key]), len(rest.json[key])]
    assert sizes == ([2, 2] if route == "statement" else [2, 1])
    assert cursor is not None
