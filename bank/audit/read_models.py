"""The read models held against the replay, row for row, in one snapshot."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bank.audit.replay import Line, recorded_state, result, state_differences, when
from bank.audit.report import CHECKS, READ_MODELS, CheckResult
from bank.commands import AccountState
from bank.persistence.base import LogPosition
from bank.projections import PROJECTION_NAME, TRANSFER_FIELDS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Engine

    from bank.audit.replay import Replay, Replayed, TransferReplayed
    from bank.projections import Ledger

PAGE_SIZE = 1000
# What the transfers view holds of each transfer, and is compared on.
TRANSFER_VIEW_FIELDS = (*TRANSFER_FIELDS[1:], "position")


def _aggregate_view(replayed: TransferReplayed) -> dict[str, Any]:
    """What the transfers view says of a Transfer aggregate (status as recorded)."""
    transfer = replayed.transfer
    return {
        "from_account_id": transfer.from_account_id,
        "to_account_id": transfer.to_account_id,
        "currency": transfer.currency,
        "amount_in_cents": transfer.amount_in_cents,
        "status": transfer.state,
        "posted_amount_in_cents": transfer.posted_amount_in_cents,
        "reversed_amount_in_cents": transfer.reversed_amount_in_cents,
        "reverses_transfer_id": transfer.reverses_transfer_id,
        "metadata": dict(transfer.metadata),
        "created_at": transfer.created_on,
        "expires_at": transfer.expires_at,
        "position": replayed.notification_id,
    }


@contextmanager
def _consistent_reads(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one moment of the database."""
    with engine.connect() as db:
        if db.dialect.name == "sqlite":
            # pysqlite starts no transaction for reads; one read transaction
            # sees a single snapshot of the (WAL-mode) file.
            db.exec_driver_sql("BEGIN")
        else:
            db.execution_options(isolation_level="REPEATABLE READ")
        yield db


def check_read_models(replay: Replay, ledger: Ledger | None) -> CheckResult:
    """Compare every read model with the replay, read in one snapshot."""
    if ledger is None:
        return CheckResult(READ_MODELS, CHECKS[READ_MODELS], "", 0, ran=False)
    projection = ledger.projection
    try:
        projection.catch_up()
    except Exception as error:  # the audit reports it; it must not stop
        replay.violation(READ_MODELS, f"The projection cannot catch up: {error!r}.")
    columns = projection.positions.c
    with _consistent_reads(projection.engine) as db:
        transaction_id, notification_id = db.execute(
            select(columns.position_transaction, columns.position).where(
                columns.name == PROJECTION_NAME
            )
        ).one()
        position = LogPosition(transaction_id, notification_id)
        replay.read(stop=position)
        if position < replay.last_event:
            replay.violation(
                READ_MODELS,
                f"The read models stop at {position} but the log has ledger "
                f"events up to {replay.last_event}.",
            )
            return result(replay, READ_MODELS, "nothing")
        rows = _check_account_views(replay, db, ledger)
        lines = _check_statement_lines(replay, db, ledger)
        transfers = _check_transfer_views(replay, db, ledger)
        holds = _check_hold_views(replay, db, ledger)
    return result(
        replay,
        READ_MODELS,
        f"{rows:,} view rows, {lines:,} statement lines, {transfers:,} transfer rows, "
        f"{holds:,} hold rows",
    )


def _check_account_views(replay: Replay, db: Connection, ledger: Ledger) -> int:
    """Compare each accounts view row with its account; return the rows read."""
    seen = set()
    sealer = ledger.projection.sealer
    for row in db.execute(select(ledger.projection.accounts)).mappings():
        account_id = row["account_id"]
        seen.add(account_id)
        replayed = _opened(replay, account_id, "the accounts view has a row for it")
        if replayed is None:
            continue
        if row["owner_key"] != sealer.lookup_key(replayed.account.owner_email):
            _read_model_problem(
                replay,
                account_id,
                "the accounts view files it under the wrong owner key, so its "
                "owner's listing misses it.",
            )
        view = AccountState(
            account_id,
            sealer.open(row["owner_email"]) or "",
            row["balance_in_cents"],
            row["overdraft_limit_in_cents"],
            bool(row["closed"]),
            row["version"],
            row["currency"],
            row["pending_debits_in_cents"],
            row["pending_credits_in_cents"],
        )
        differences = state_differences(view, recorded_state(replayed.account))
        if differences:
            _read_model_problem(
                replay,
                account_id,
                f"the accounts view row differs from the events: {differences}.",
            )
    for account_id in replay.by_account_id.keys() - seen:
        _read_model_problem(replay, account_id, "it has no row in the accounts view.")
    return len(seen)


def _opened(replay: Replay, account_id: str, found: str) -> Replayed | None:
    """The account a read model names, or None (a violation) if never opened."""
    replayed = replay.by_account_id.get(account_id)
    if replayed is None:
        _read_model_problem(
            replay, account_id, f"{found}, but the log never opened it."
        )
    return replayed


def _read_model_problem(
    replay: Replay, account_id: str, problem: str, version: int | None = None
) -> None:
    replay.violation(
        READ_MODELS,
        f"Account {account_id}: {problem}",
        account_id=account_id,
        version=version,
    )


def _check_statement_lines(replay: Replay, db: Connection, ledger: Ledger) -> int:
    """Match statement lines and events one to one; return the lines read."""
    table = ledger.projection.statement_lines
    query = (
        select(
            table.c.account_id,
            table.c.version,
            table.c.kind,
            table.c.amount_in_cents,
            table.c.balance_after_in_cents,
            table.c.counterparty_account_id,
            table.c.transfer_id,
            table.c.reference,
            table.c.metadata,
        )
        .order_by(table.c.account_id, table.c.version)
        .execution_options(yield_per=PAGE_SIZE)
    )
    sealer = ledger.projection.sealer
    read = 0
    with_lines = set()
    for account_id, group in itertools.groupby(db.execute(query), lambda r: r[0]):
        lines = [
            Line._make(
                (*row[1:-2], sealer.open(row[-2]), sealer.open_metadata(row[-1]))
            )
            for row in group
        ]
        read += len(lines)
        with_lines.add(account_id)
        replayed = _opened(replay, account_id, f"{len(lines)} statement lines")
        if replayed is not None:
            _compare_statement(replay, replayed, lines)
    for account_id in replay.by_account_id.keys() - with_lines:
        events = replay.by_account_id[account_id].account.version
        _read_model_problem(
            replay,
            account_id,
            f"it has no statement lines; each of its {events} events needs one.",
        )
    return read


def _compare_statement(replay: Replay, replayed: Replayed, lines: list[Line]) -> None:
    account_id = replayed.account.account_id
    history = replayed.history
    for line in lines:
        version = line.version
        after = replayed.after(version)
        if after is None:
            problem = (
                f"statement line {version} has no event of that version in the log."
            )
        elif line != after.line:
            problem = (
                f"statement line {version} says {_describe(line)}; its event says "
                f"{_describe(after.line)}."
            )
        else:
            continue
        _read_model_problem(replay, account_id, problem, version)
    listed = {line.version for line in lines}
    for after in history:
        if after and after.line.version not in listed:
            _read_model_problem(
                replay,
                account_id,
                f"the {after.line.kind} event of version {after.line.version} has no "
                "statement line.",
                after.line.version,
            )


def _check_transfer_views(replay: Replay, db: Connection, ledger: Ledger) -> int:
    """Compare each transfers view row with its transfer; return the rows read."""
    expected = {
        transfer_id: _aggregate_view(aggregate)
        for transfer_id, aggregate in replay.by_transfer_id.items()
    }
    for transfer_id, transfer in replay.transfers.items():
        if transfer_id not in expected and transfer.legacy_view is not None:
            expected[transfer_id] = transfer.legacy_view
    table = ledger.projection.transfers
    sealer = ledger.projection.sealer
    read = 0
    query = select(table).execution_options(yield_per=PAGE_SIZE)
    for row in db.execute(query).mappings():
        read += 1
        transfer_id = row["transfer_id"]
        derived = expected.pop(transfer_id, None)
        if derived is None:
            problem = "the transfers view has a row for it, but the log has no such "
            problem += "transfer."
        else:
            stored = {name: row[name] for name in TRANSFER_VIEW_FIELDS}
            stored["metadata"] = sealer.open_metadata(row["metadata"])
            for name in ("created_at", "expires_at"):
                if stored[name] is not None and stored[name].tzinfo is None:
                    stored[name] = stored[name].replace(tzinfo=UTC)  # SQLite: UTC
            differences = "; ".join(
                f"{name} is {value!r}, the events give {derived[name]!r}"
                for name, value in stored.items()
                if value != derived[name]
            )
            if not differences:
                continue
            problem = f"the transfers view row differs from the events: {differences}."
        _transfer_view_problem(replay, transfer_id, problem)
    for transfer_id in expected:
        _transfer_view_problem(
            replay, transfer_id, "it has no row in the transfers view."
        )
    return read


def _transfer_view_problem(replay: Replay, transfer_id: str, problem: str) -> None:
    replay.violation(
        READ_MODELS, f"Transfer {transfer_id}: {problem}", transfer_id=transfer_id
    )


def _check_hold_views(replay: Replay, db: Connection, ledger: Ledger) -> int:
    """Compare the holds view with the holds the accounts recorded; return its rows."""
    expected = {
        (transfer_id, replayed.account.account_id): _hold_terms(hold)
        for replayed in replay.accounts.values()
        for transfer_id, hold in replayed.account.holds.items()
    }
    read = 0
    for row in db.execute(select(ledger.projection.holds)).mappings():
        read += 1
        transfer_id, account_id = key = (row["transfer_id"], row["account_id"])
        stored = _hold_terms(row)
        derived = expected.pop(key, None)
        if derived is None:
            problem = f"the holds view has a hold for transfer {transfer_id}, but "
            problem += "the events hold nothing for it."
        elif stored != derived:
            problem = (
                f"the holds view says its hold for transfer {transfer_id} is "
                f"{_describe_hold(stored)}; the events say {_describe_hold(derived)}."
            )
        else:
            continue
        _read_model_problem(replay, account_id, problem)
    for transfer_id, account_id in expected:
        _read_model_problem(
            replay,
            account_id,
            f"its hold for transfer {transfer_id} has no row in the holds view.",
        )
    return read


def _hold_terms(hold: Any) -> tuple[bool, int, datetime | None]:
    """A hold's direction, amount and expiry, as a row or an account holds it."""
    expires_at = hold["expires_at"]
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)  # SQLite keeps UTC, unzoned
    return bool(hold["is_debit"]), int(hold["amount_in_cents"]), expires_at


def _describe_hold(terms: tuple[bool, int, datetime | None]) -> str:
    is_debit, amount, expires_at = terms
    direction = "a debit" if is_debit else "a credit"
    return f"{direction} of {amount} cents expiring {when(expires_at)}"


def _describe(line: Line) -> str:
    """A statement line in words, e.g. "deposit +500, balance after 1500"."""
    text = (
        f"{line.kind} {line.amount_in_cents:+d}, balance after {line.balance_in_cents}"
    )
    extras = zip(
        ("counterparty", "transfer", "reference", "metadata"),
        (line.counterparty, line.transfer_id, line.reference, line.metadata),
        strict=True,
    )
    return text + "".join(f", {name} {value}" for name, value in extras if value)
