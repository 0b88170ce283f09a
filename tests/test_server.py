"""`bank serve` end to end: gunicorn workers answering the JSON API over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from live_server import server_fixture

if TYPE_CHECKING:
    from live_server import Server

pytestmark = pytest.mark.slow

# `bank serve` with two workers on a free port, on each real database.
server = server_fixture(workers=2)


def test_the_server_runs_commands_and_queries_over_real_http(server: Server) -> None:
    opened = server.command(
        "account_open", account_owner_email="a@example.com", account_id=123
    )
    deposited = server.command(
        "account_deposit", account_id="123", amount_in_cents=1000
    )
    withdrawn = server.command(
        "account_withdraw", account_id="123", amount_in_cents=300
    )
    refused = server.command("account_withdraw", account_id="123", amount_in_cents=5000)
    shown = server.request("GET", "/api/accounts/123")

    assert opened[0] == 201
    assert opened[1]["account_id"] == "123"
    assert deposited[0] == 200
    assert deposited[1]["balance_in_cents"] == 1000
    assert withdrawn[0] == 200
    assert withdrawn[1]["balance_in_cents"] == 700
    assert refused[0] == 409
    assert refused[1]["error"]["code"] == "insufficient_funds"
    assert shown[0] == 200
    assert shown[1]["balance_in_cents"] == 700
