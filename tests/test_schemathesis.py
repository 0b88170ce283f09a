"""The server does exactly what its OpenAPI description says.

Schemathesis runs against a live `bank serve` on each database; faster tests
hold the description's schemas against the server's own validation. The file
is also schemathesis's hooks module (loaded by path, in its process).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import running_server

from bank import BankApplication, BankError
from bank.domain import ACCOUNT_ID_PATTERN, MAX_HOLD_SECONDS, TRANSFER_ID_PATTERN
from bank.idempotency import IDEMPOTENCY_KEY_PATTERN
from web import create_app
from web.errors import ApiError
from web.openapi import openapi_document
from web.reads import TIME_PATTERN
from web.registry import run_command
from web.testing import HOST

if TYPE_CHECKING:
    from collections.abc import Mapping

    from conftest import BankEnv
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TESTS_DIR = Path(__file__).resolve().parent
# Cases per operation and phase, and the whole run's time budget per database.
MAX_EXAMPLES = 40
RUN_SECONDS = 40
# The run overshoots its budget by the case in flight and the report; past this
# the subprocess is stuck and is killed.
RUN_TIMEOUT_SECONDS = RUN_SECONDS + 120
SEED = 20_261_127
# Schemathesis's own list of rejections, plus what the HTTP front end answers
# to a request too large to read (documented on every route): a generated
# invalid value may be long enough to be refused before it is looked at.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [
  "400", "401", "403", "404", "405", "406", "409", "413", "414", "415",
  "422", "428", "429", "431", "5xx",
]
"""
FRESH_SUFFIX = 33  # "-" and 32 hex digits, made unique per request
# The account and transfer ids the server under test answered, newest last
# (in schemathesis's process), and what an id of either looks like.
KNOWN_IDS: dict[str, list[str]] = {"account": [], "transfer": []}
ID_PATTERNS = {"account": ACCOUNT_ID_PATTERN, "transfer": TRANSFER_ID_PATTERN}
MAX_KNOWN_IDS = 100


@pytest.mark.slow
def test_the_server_does_exactly_what_its_openapi_description_says(
    db_env: BankEnv, tmp_path: Path
) -> None:
    with running_server(db_env, tmp_path) as server:
        run = run_schemathesis(
            f"http://{HOST}:{server.port}/api/openapi.json", tmp_path
        )

    report = run.stdout + run.stderr
    sys.stdout.write(report)
    assert run.returncode == 0, report


def run_schemathesis(
    schema_url: str, work_dir: Path
) -> subprocess.CompletedProcess[str]:
    """One bounded `schemathesis run` with every check, its report as text."""
    config = work_dir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        schema_url,
        "--checks",
        "all",
        # One worker: the coverage phase crashed with several.
        "--workers",
        "1",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(RUN_SECONDS),
        "--seed",
        str(SEED),
        # Traffic goes to the server under test only: no redirect is followed.
        "--max-redirects",
        "0",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.lower().endswith("_proxy")
    }
    env |= {
        "NO_PROXY": "*",
        "SCHEMATHESIS_HOOKS": str(Path(__file__).resolve()),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR.parent)]),
    }
    return subprocess.run(
        command,
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


# The description's schemas against the server's own validation, in-process.


def validator(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A JSON Schema validator (ECMA regexes, as schemathesis reads them)."""
    components = openapi_document()["components"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": components})


def described_as_valid(command: str, data: dict[str, Any]) -> bool:
    """Whether the description's request schema admits this command."""
    request = validator({"$ref": f"#/components/schemas/{command}_request"})
    return request.is_valid({"command": command, "data": data})


def server_accepts(command: str, data: dict[str, Any]) -> bool:
    """Whether the server takes the command as valid: any answer but a 422."""
    with BankApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}) as bank:
        bank.open_account("a@example.com", account_id="a")
        try:
            run_command(bank, {"command": command, "data": data}, None)
        except (ApiError, BankError) as error:
            return error.code != "validation_error"
    return True


def _not_integral_float(value: object) -> bool:
    # 100.0 is the one documented exception (see as_json_integers below).
    return not (isinstance(value, float) and value.is_integer())


json_scalars = st.one_of(
    st.integers(min_value=-(10**66), max_value=10**66),
    st.integers(min_value=-3, max_value=10**15 + 3),
    st.text(alphabet="0123456789", max_size=24),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.floats(),
).filter(_not_integral_float)
emails = st.one_of(
    st.text(max_size=8),
    st.builds("{}@{}".format, st.text(max_size=6), st.text(max_size=6)),
    st.builds("{}@example.com".format, st.text(min_size=240, max_size=250)),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(amount=json_scalars, limit=json_scalars, account_id=json_scalars)
def test_amounts_limits_and_ids_are_described_exactly(
    amount: object, limit: object, account_id: object
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("account_withdraw", {"account_id": "a", "amount_in_cents": amount}),
        (
            "account_set_overdraft_limit",
            {"account_id": "a", "overdraft_limit_in_cents": limit},
        ),
        ("account_close", {"account_id": account_id}),
    ]
    for command, data in cases:
        assert described_as_valid(command, data) == server_accepts(command, data)


metadata_keys = st.one_of(
    st.text(max_size=42),
    st.text(alphabet="abcXYZ019_.-", min_size=38, max_size=42),
)
metadata_values = st.one_of(
    st.text(max_size=6),
    st.text(min_size=498, max_size=502),
    json_scalars,
)
metadata = st.one_of(
    st.dictionaries(metadata_keys, metadata_values, max_size=3),
    st.dictionaries(
        st.from_regex(r"k[0-9]{1,3}", fullmatch=True),
        st.just("v"),
        min_size=15,
        max_size=18,
    ),
    json_scalars,
    st.lists(st.text(max_size=3), max_size=2),
)
currencies = st.one_of(
    st.sampled_from(["USD", "EUR", "JPY", "XXX", "usd", "ZZZ", "US", "USDX", ""]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
    json_scalars,
)
hold_flags = st.one_of(st.booleans(), json_scalars)
timeouts = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.integers(min_value=MAX_HOLD_SECONDS - 2, max_value=MAX_HOLD_SECONDS + 2),
    json_scalars,
)
transfer_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda value: str(value).upper()),
    st.uuids().map(lambda value: value.hex),
    json_scalars,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    metadata=metadata,
    currency=currencies,
    pending=hold_flags,
    timeout=timeouts,
    transfer_id=transfer_ids,
)
def test_metadata_currencies_holds_and_transfer_ids_are_described_exactly(
    metadata: object,
    currency: object,
    pending: object,
    timeout: object,
    transfer_id: object,
) -> None:
    hold = {"from_account_id": "a", "to_account_id": "b", "amount_in_cents": 1}
    cases: list[tuple[str, dict[str, Any]]] = [
        (
            "account_deposit",
            {"account_id": "a", "amount_in_cents": 1, "metadata": metadata},
        ),
        ("account_open", {"account_owner_email": "a@b", "currency": currency}),
        ("account_transfer", {**hold, "pending": pending, "timeout_seconds": timeout}),
        ("account_transfer", {**hold, "timeout_seconds": timeout}),
        ("transfer_reverse", {"transfer_id": transfer_id, "metadata": metadata}),
    ]
    for command, data in cases:
        assert described_as_valid(command, data) == server_accepts(command, data), (
            command,
            data,
        )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(email=emails, reference=st.text(max_size=150))
def test_emails_and_references_are_described_exactly(
    email: str, reference: str
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("account_open", {"account_owner_email": email}),
        (
            "account_deposit",
            {"account_id": "a", "amount_in_cents": 1, "reference": reference},
        ),
    ]
    for command, data in cases:
        assert described_as_valid(command, data) == server_accepts(command, data)


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(timezones=offsets),
    generated=st.from_regex(TIME_PATTERN, fullmatch=True),
)
def test_the_time_pattern_is_rfc_3339_as_python_reads_it(
    moment: datetime, generated: str
) -> None:
    written = moment.isoformat().replace("+00:00", "Z")

    assert re.fullmatch(TIME_PATTERN, written), written
    assert datetime.fromisoformat(generated).tzinfo is not None


def test_every_answer_matches_exactly_one_answer_schema(memory_env: BankEnv) -> None:
    flask_app = create_app({**memory_env, "TESTING": True})
    client = flask_app.test_client()
    opened = {"account_owner_email": "a@example.com", "account_id": "a"}
    answers = [
        client.post("/api", json={"command": name, "data": data})
        for name, data in [
            ("account_open", opened),
            ("account_open", {**opened, "account_id": "b"}),
            ("account_deposit", {"account_id": "a", "amount_in_cents": 500}),
            ("account_withdraw", {"account_id": "a", "amount_in_cents": 100}),
            (
                "account_transfer",
                {"from_account_id": "a", "to_account_id": "b", "amount_in_cents": 400},
            ),
            (
                "account_set_overdraft_limit",
                {"account_id": "b", "overdraft_limit_in_cents": 0},
            ),
            ("account_withdraw", {"account_id": "b", "amount_in_cents": 400}),
            ("account_close", {"account_id": "b"}),
        ]
    ]
    every_kind = [
        {"command": "account_open", "data": {**opened, "account_id": "c"}},
        {
            "command": "account_deposit",
            "data": {"account_id": "c", "amount_in_cents": 5},
        },
        {
            "command": "account_withdraw",
            "data": {"account_id": "c", "amount_in_cents": 5},
        },
        {
            "command": "account_set_overdraft_limit",
            "data": {"account_id": "c", "overdraft_limit_in_cents": 10},
        },
        {
            "command": "account_transfer",
            "data": {
                "from_account_id": "c",
                "to_account_id": "a",
                "amount_in_cents": 5,
            },
        },
        {
            "command": "account_deposit",
            "data": {"account_id": "c", "amount_in_cents": 5},
        },
        {"command": "account_close", "data": {"account_id": "c"}},
    ]
    batch = client.post("/api", json={"batch": every_kind})
    answers += [batch, *transfer_answers(client)]
    flask_app.extensions["bank"].close()

    responses = openapi_document()["paths"]["/api"]["post"]["responses"]
    for answer in answers:
        assert answer.status_code in {200, 201}, answer.json
        described = responses[str(answer.status_code)]["content"]["application/json"]
        branches = described["schema"]["oneOf"]
        matching = [b for b in branches if validator(b).is_valid(answer.json)]
        assert len(matching) == 1, (answer.json, matching)
    assert len((batch.json or {})["results"]) == len(every_kind)


def transfer_answers(client: FlaskClient) -> list[TestResponse]:
    """The answers of holds' lives: placed, posted or voided, then reversed."""

    def post(name: str, **data: Any) -> TestResponse:
        return client.post("/api", json={"command": name, "data": data})

    def transfer_id(response: TestResponse) -> str:
        return str((response.json or {})["transfer_id"])

    opened = {"account_owner_email": "a@example.com", "currency": "EUR"}
    hold = {"from_account_id": "d", "to_account_id": "e", "amount_in_cents": 10}
    answers = [
        post("account_open", **opened, account_id="d"),
        post("account_open", **opened, account_id="e"),
        post("account_deposit", account_id="d", amount_in_cents=100, metadata={}),
    ]
    posted = post("account_transfer", **hold, pending=True, timeout_seconds=60)
    voided = post("account_transfer", **hold, pending=True)
    answers += [
        posted,
        voided,
        post("transfer_post", transfer_id=transfer_id(posted), amount_in_cents=5),
        post("transfer_void", transfer_id=transfer_id(voided)),
        post("transfer_reverse", transfer_id=transfer_id(posted), metadata={"k": "v"}),
    ]
    return answers


# The hooks, registered only in schemathesis's process: they line each request
# up with a documented rule that JSON Schema cannot state, and do nothing else
# (after_call only remembers the transfer ids the bank made).


def before_call(
    context: schemathesis.HookContext,
    case: schemathesis.Case[Any],
    kwargs: dict[str, Any],
) -> None:
    """Adjust a generated request just before it is sent (in every phase)."""
    body = as_json_integers(case.body)
    for command in commands_in(body):
        name_known_ids(command)
        retarget_transfer_to_itself(command)
    case.body = body
    if case.path_parameters and "transfer_id" in case.path_parameters:
        generated = case.path_parameters["transfer_id"]
        case.path_parameters["transfer_id"] = known_id(generated, "transfer")
    if case.headers:
        case.headers.update(fresh_idempotency_key(case.headers))


def as_json_integers(value: Any) -> Any:
    """Integral floats as JSON integers: 100.0 is refused, deliberately.

    JSON Schema counts 100.0 as the integer 100, so no schema can say that
    amounts and account ids are integers "written as integers"; the README
    documents the refusal and tests/test_api.py asserts it.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {name: as_json_integers(item) for name, item in value.items()}
    if isinstance(value, list):
        return [as_json_integers(item) for item in value]
    return value


def commands_in(body: Any) -> list[Any]:
    """The commands a request body holds: its batch's entries, or itself."""
    if not isinstance(body, dict):
        return []
    batch = body.get("batch")
    return batch if isinstance(batch, list) else [body]


def retarget_transfer_to_itself(command: object) -> None:
    """Send a transfer to itself elsewhere: a documented 422 no schema can state."""
    if not isinstance(command, dict) or command.get("command") != "account_transfer":
        return
    data = command.get("data")
    if not isinstance(data, dict) or "from_account_id" not in data:
        return
    source = str(data["from_account_id"])
    if source == str(data.get("to_account_id")):
        data["to_account_id"] = "elsewhere" if source != "elsewhere" else "elsewhere-2"


def name_known_ids(command: object) -> None:
    """Aim a command at accounts and transfers the bank made (see known_id)."""
    if not isinstance(command, dict) or command.get("command") == "account_open":
        return
    data = command.get("data")
    if not isinstance(data, dict):
        return
    for field in ("account_id", "from_account_id", "to_account_id"):
        if field in data:
            data[field] = known_id(data[field], "account")
    if "transfer_id" in data:
        data["transfer_id"] = known_id(data["transfer_id"], "transfer")


def known_id(generated: object, kind: str) -> object:
    """Mostly an id the bank answered with, in place of a generated one.

    Accounts are opened and transfers made by the bank, any other id is a
    documented 404 that no schema can state, and generated ids are almost
    never ones it made: so without this, no transfer would ever be made,
    posted or reversed. A quarter, and any invalid id, are left as they are.
    """
    text = str(generated) if type(generated) is int else generated
    known = KNOWN_IDS[kind]
    if not (isinstance(text, str) and ID_PATTERNS[kind].fullmatch(text) and known):
        return generated
    choice = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    if choice % 4 == 0:
        return generated
    return known[-1 - choice // 4 % len(known)]


def after_call(
    context: schemathesis.HookContext,
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> None:
    """Remember the accounts and transfers the bank answers with (in every phase)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return
    results = body.get("results") if isinstance(body, dict) else None
    for answer in results if isinstance(results, list) else [body]:
        if not isinstance(answer, dict):
            continue
        if "account_owner_email" in answer and "account_id" in answer:
            KNOWN_IDS["account"].append(str(answer["account_id"]))
        if isinstance(answer.get("transfer_id"), str):
            KNOWN_IDS["transfer"].append(answer["transfer_id"])
    for known in KNOWN_IDS.values():
        del known[:-MAX_KNOWN_IDS]


def fresh_idempotency_key(headers: Mapping[str, Any]) -> dict[str, str]:
    """A valid Idempotency-Key made unique, keeping the generated one as its prefix.

    A key already used for a different request is refused with 422 by design,
    generated keys repeat ("0", "00", ...), and no schema can say "unused".
    An invalid key is left as it is.
    """
    key = headers.get("Idempotency-Key")
    if not (isinstance(key, str) and IDEMPOTENCY_KEY_PATTERN.fullmatch(key)):
        return {}
    return {"Idempotency-Key": f"{key[: 255 - FRESH_SUFFIX]}-{uuid.uuid4().hex}"}


if __name__ == "_schemathesis_hooks":
    schemathesis.hook(before_call)
    schemathesis.hook(after_call)
