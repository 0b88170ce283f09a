"""The read models and the log from a shell: statements, owners, replay, audit."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from eventsourcing.utils import get_topic
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

from bank.audit import audit
from bank.domain import ACCOUNT_EVENT_TYPES, Account, event_fields
from bank.eventlog import LEDGER_TOPICS, LedgerEvent
from bank.projections import Ledger
from bank.transfers import TRANSFER_EVENT_TYPES, Transfer
from cli.session import BankSession, pass_session
from cli.tables import (
    count_violations,
    owner_accounts_table,
    print_audit_report,
    print_table,
    statement_table,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import TypeVar
    from uuid import UUID

    from bank import BankApplication
    from bank.projections import Page

    F = TypeVar("F", bound=Callable[..., Any])

# How many rows a page of a read-model query holds.
PAGE_SIZE = 1000
# Every kind of ledger event, by the name `bank replay --type` takes.
LEDGER_EVENT_TYPES: dict[str, type[LedgerEvent]] = {
    **ACCOUNT_EVENT_TYPES,
    **{f"Transfer.{name}": cls for name, cls in TRANSFER_EVENT_TYPES.items()},
}


def zoned_time(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | None:
    """Parse an ISO 8601 time that says its zone; anything else is a usage error."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time like 2026-11-27T18:00:00Z.", ctx, param
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{value!r} has no time zone; add one, e.g. Z or +00:00.", ctx, param
        )
    return moment


def time_option(*param_decls: str, help: str) -> Callable[[F], F]:
    """An option taking an ISO 8601 time with its zone."""
    return click.option(
        *param_decls, metavar="ISO_TIME", callback=zoned_time, help=help
    )


limit_option = click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Show at most N (default: all).",
)


def all_pages(
    fetch: Callable[[str | None, int], Page], limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Follow a query's cursors page by page, up to `limit` items."""
    cursor: str | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        page = fetch(
            cursor, PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
        )
        yield from page.items
        if remaining is not None:
            remaining -= len(page.items)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


@click.command()
@click.argument("account_id")
@time_option("--from", "since", help="Only lines at or after this time.")
@time_option("--to", "until", help="Only lines before this time.")
@limit_option
@pass_session
def statement(
    session: BankSession,
    account_id: str,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
) -> None:
    """Show the statement of ACCOUNT_ID from the read models, oldest line first."""
    ledger = Ledger(session.app)
    account_id = session.app.require_account(account_id)
    lines = all_pages(
        lambda cursor, size: ledger.statement(
            account_id, since, until, limit=size, cursor=cursor
        ),
        limit,
    )
    print_table(statement_table(account_id, list(lines)))


@click.command()
@click.option(
    "--owner", "owner_email", required=True, metavar="EMAIL", help="The owner's email."
)
@pass_session
def accounts(session: BankSession, owner_email: str) -> None:
    """List the accounts an owner holds, from the read models, by account id."""
    ledger = Ledger(session.app)
    rows = all_pages(
        lambda cursor, size: ledger.accounts_by_owner(
            owner_email, limit=size, cursor=cursor
        )
    )
    print_table(owner_accounts_table(owner_email, list(rows)))


@click.command()
@click.option("--account", "account_id", metavar="ACCOUNT_ID", help="Only its events.")
@click.option(
    "--type",
    "event_types",
    multiple=True,
    type=click.Choice(list(LEDGER_EVENT_TYPES)),
    help="Only events of this type (repeatable).",
)
@time_option("--since", help="Only events at or after this time.")
@time_option("--until", help="Only events before this time.")
@limit_option
@pass_session
def replay(
    session: BankSession,
    *,
    account_id: str | None,
    event_types: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
) -> None:
    """Print the ledger's events from the notification log, in the order stored.

    One line per event: notification id, timestamp, account id, type and the
    event's own fields. A transfer's own events (its type then reads, e.g.,
    Transfer.Created) have no account: the transfer id stands in that column.
    The log is read a page at a time, so any length streams. (Idempotency
    records are not ledger events and are not shown.)
    """
    app = session.app
    stream: UUID | None = None
    if account_id is not None:
        stream = Account.create_id(app.require_account(account_id))
    topics = [get_topic(LEDGER_EVENT_TYPES[name]) for name in event_types]
    events = (
        (position.notification_id, event)
        for position, event in app.event_log.events(
            topics=topics or LEDGER_TOPICS, stream=stream
        )
        if (since is None or event.timestamp >= since)
        and (until is None or event.timestamp < until)
    )
    names = AccountNames(app)
    for notification_id, event in itertools.islice(events, limit):
        click.echo(replay_line(notification_id, names.of(event), event))


class AccountNames:
    """Public ids of event streams (account or transfer ids), from their first event."""

    def __init__(self, app: BankApplication) -> None:
        self.app = app
        self.known: dict[UUID, str] = {}

    def of(self, event: LedgerEvent) -> str:
        """The public id of the account (or transfer) the event belongs to."""
        stream = event.originator_id
        if event.originator_version == 1:
            self.known[stream] = _public_id(event) or str(stream)
        if stream not in self.known:
            first = next(iter(self.app.events.get(stream, lte=1)), None)
            self.known[stream] = _public_id(first) or str(stream)
        return self.known[stream]


def _public_id(first: object) -> str | None:
    """The id an Opened or Created event names its aggregate by."""
    if isinstance(first, Account.Opened):
        return first.account_id
    if isinstance(first, Transfer.Created):
        return first.transfer_id
    return None


def replay_line(notification_id: int, public_id: str, event: LedgerEvent) -> str:
    """One event as a line: notification id, time, account, type, own fields."""
    fields = " ".join(f"{name}={value}" for name, value in event_fields(event).items())
    kind = type(event).__name__
    if isinstance(event, Transfer.Event):
        kind = f"Transfer.{kind}"
    return (
        f"{notification_id:>8}  {event.timestamp.isoformat()}  {public_id}  "
        f"{kind}  {fields}"
    ).rstrip()


@click.group()
def projections() -> None:
    """Look after the read models (accounts view, statement lines, transfers view)."""


@projections.command("rebuild")
@click.pass_context
def rebuild_projections(ctx: click.Context) -> None:
    """Drop every read model and rebuild it from the log; an interrupted run resumes."""
    session = ctx.find_object(BankSession)
    assert session is not None
    projection = Ledger(session.app).writer
    # Progress in notification ids: the order of the log, give or take the
    # few that commit out of order on PostgreSQL.
    total = session.app.event_log.settled_head().notification_id
    start = 0
    if projection.is_rebuilding():
        start = projection.position().notification_id
        click.echo(f"Resuming the interrupted rebuild after notification {start}.")
    started = time.perf_counter()
    columns = (
        *Progress.get_default_columns()[:-1],
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task(
                "Rebuilding read models", total=total, completed=start
            )
            applied = projection.rebuild(
                progress=lambda position: progress.update(task, completed=position)
            )
            progress.update(task, completed=total)
    except KeyboardInterrupt:
        click.echo(
            "error: interrupted: stopped after notification "
            f"{projection.position().notification_id}; "
            "run `bank projections rebuild` again to resume.",
            err=True,
        )
        ctx.exit(130)
    seconds = time.perf_counter() - started
    click.echo(
        f"Rebuilt the read models: {applied:,} events applied in {seconds:.2f} s "
        f"({applied / seconds if seconds else 0:,.0f} events/s)."
    )


@click.command("audit")
@click.pass_context
def audit_command(ctx: click.Context) -> None:
    """Re-derive every account from the log and check everything stored against it.

    Exits with status 0 when nothing is wrong, 1 when any violation was found.
    """
    session = ctx.find_object(BankSession)
    assert session is not None
    started = time.perf_counter()
    report = audit(session.app, Ledger(session.app))
    print_audit_report(report, time.perf_counter() - started)
    if not report.clean:
        click.echo(f"error: audit_failed: {count_violations(report)} found.", err=True)
        ctx.exit(1)
