"""The `bank` console script: the Python API and the HTTP server from a shell."""

from __future__ import annotations

import ipaddress
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast

import click
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import get_topic
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from bank.application import BankApplication, ConfigurationError
from bank.audit import ACCOUNT_EVENT_TYPES, AuditReport, audit
from bank.domain import (
    Account,
    AccountNotFoundError,
    BankError,
    event_fields,
    normalise_account_id,
)
from bank.projections import ACCOUNT_TOPICS, Ledger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import TypeVar
    from uuid import UUID

    from bank.projections import Page

    F = TypeVar("F", bound=Callable[..., Any])

DATABASE_URL_KEYS = ("SQLALCHEMY_URL", "BANK_SQLALCHEMY_URL")
WEB_APP_FACTORY = "web:create_app()"
# The settings web.auth reads; bank/ names them without importing web.
API_TOKEN_SETTINGS = ("BANK_API_TOKENS", "BANK_API_TOKENS_FILE")


def database_env(url: str) -> dict[str, str]:
    """Process environment that points the server's workers at the database URL."""
    # The workers read the process environment, where BANK_SQLALCHEMY_URL
    # beats SQLALCHEMY_URL: --db sets both, so a stray one cannot win.
    return dict.fromkeys(DATABASE_URL_KEYS, url)


@dataclass
class BankSession:
    """The database chosen on the command line and the bank opened on it."""

    db_url: str | None
    _app: BankApplication | None = field(default=None, repr=False)

    @property
    def app(self) -> BankApplication:
        """The bank, built on first use (so `serve` never opens the database)."""
        if self._app is None:
            env = {"SQLALCHEMY_URL": self.db_url} if self.db_url else None
            self._app = BankApplication(env=env)
        return self._app

    def close(self) -> None:
        """Release the bank's database connections, if it was ever opened."""
        if self._app is not None:
            self._app.close()
            self._app = None


class Refusal(click.ClickException):
    """A BankError shown as one `error: code: message` line, exit status 1."""

    exit_code = 1

    def __init__(self, error: BankError) -> None:
        super().__init__(" ".join(error.message.split()))
        self.code = error.code

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the refusal to stderr, without a traceback."""
        click.echo(f"error: {self.code}: {self.message}", err=True, file=file)


class BankGroup(click.Group):
    """A command group that turns any refused command into a Refusal."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand, reporting a BankError as a one-line refusal."""
        try:
            return super().invoke(ctx)
        except BankError as error:
            raise Refusal(error) from None


pass_session = click.make_pass_decorator(BankSession)
cents_argument = click.argument("amount_in_cents", metavar="CENTS", type=click.INT)


@click.group(
    cls=BankGroup,
    epilog="Amounts are whole numbers of cents: 1525 is 15.25. A refused command "
    "prints `error: CODE: MESSAGE` on stderr and exits with status 1.",
)
@click.option(
    "--db",
    "db_url",
    envvar="SQLALCHEMY_URL",
    metavar="URL",
    help="SQLAlchemy database URL, e.g. sqlite:///bank.db or "
    "postgresql+psycopg://user@host/db. Default: the SQLite file ./bank.db.",
)
@click.pass_context
def main(ctx: click.Context, db_url: str | None) -> None:
    """An event-sourced bank: open accounts, move money, read the ledger, serve HTTP."""
    session = BankSession(db_url or None)
    ctx.obj = session
    ctx.call_on_close(session.close)


@main.command("open")
@click.argument("owner_email", metavar="EMAIL")
@click.option(
    "--id",
    "account_id",
    metavar="ACCOUNT_ID",
    help="Choose the account id (1-64 of A-Z a-z 0-9 - _ . :); default: a new UUID.",
)
@pass_session
def open_account(
    session: BankSession, owner_email: str, account_id: str | None
) -> None:
    """Open an account owned by EMAIL and print its id."""
    click.echo(session.app.open_account(owner_email, account_id))


@main.command()
@click.argument("account_id")
@cents_argument
@pass_session
def deposit(session: BankSession, account_id: str, amount_in_cents: int) -> None:
    """Pay CENTS into ACCOUNT_ID and print the new balance in cents."""
    click.echo(session.app.deposit(account_id, amount_in_cents))


@main.command()
@click.argument("account_id")
@cents_argument
@pass_session
def withdraw(session: BankSession, account_id: str, amount_in_cents: int) -> None:
    """Pay CENTS out of ACCOUNT_ID and print the new balance in cents."""
    click.echo(session.app.withdraw(account_id, amount_in_cents))


@main.command()
@click.argument("from_account_id", metavar="FROM_ID")
@click.argument("to_account_id", metavar="TO_ID")
@cents_argument
@pass_session
def transfer(
    session: BankSession, from_account_id: str, to_account_id: str, amount_in_cents: int
) -> None:
    """Move CENTS from FROM_ID to TO_ID (both or neither) and print the transfer id."""
    click.echo(session.app.transfer(from_account_id, to_account_id, amount_in_cents))


@main.command("set-overdraft-limit")
@click.argument("account_id")
@click.argument("overdraft_limit_in_cents", metavar="CENTS", type=click.INT)
@pass_session
def set_overdraft_limit(
    session: BankSession, account_id: str, overdraft_limit_in_cents: int
) -> None:
    """Let the balance of ACCOUNT_ID go down to CENTS below zero (0: no overdraft)."""
    session.app.set_overdraft_limit(account_id, overdraft_limit_in_cents)
    click.echo(
        f"Account {account_id} may now go {overdraft_limit_in_cents} cents below zero."
    )


@main.command("close")
@click.argument("account_id")
@pass_session
def close_account(session: BankSession, account_id: str) -> None:
    """Close ACCOUNT_ID for good; only an account with a zero balance can close."""
    session.app.close_account(account_id)
    click.echo(f"Account {account_id} is closed.")


@main.command()
@click.argument("account_id")
@click.option(
    "--version",
    type=click.INT,
    metavar="N",
    help="Show the account as it was right after its N-th event.",
)
@pass_session
def show(session: BankSession, account_id: str, version: int | None) -> None:
    """Show an account: owner, balance, overdraft limit, whether closed, version."""
    account = session.app.get_account(account_id, version=version)
    print_table(account_table(account))


@main.command()
@click.argument("account_id")
@pass_session
def history(session: BankSession, account_id: str) -> None:
    """List every event recorded for ACCOUNT_ID, oldest first."""
    print_table(history_table(account_id, session.app.get_history(account_id)))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to bind.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes, each with its own bank.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Threads per worker.",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="SQLAlchemy database URL for the server (overrides the global --db).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Allow a non-loopback address without API tokens (never in production).",
)
@pass_session
def serve(
    session: BankSession,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    db_url: str | None,
    insecure_no_auth: bool,
) -> None:
    """Serve the JSON API over HTTP with gunicorn (replaces this process)."""
    if not (is_loopback(host) or api_tokens_configured(os.environ) or insecure_no_auth):
        raise click.UsageError(
            f"refusing to serve on {host} without API tokens: anyone who can reach "
            f"it could move money. Set {API_TOKEN_SETTINGS[0]} or "
            f"{API_TOKEN_SETTINGS[1]}, or pass --insecure-no-auth."
        )
    argv = gunicorn_argv(host, port, workers, threads)
    env = serve_env(os.environ, db_url or session.db_url)
    os.execvpe(argv[0], argv, env)


def is_loopback(host: str) -> bool:
    """Whether the address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_tokens_configured(environ: Mapping[str, str]) -> bool:
    """Whether the web app will demand bearer tokens."""
    return any(environ.get(setting) for setting in API_TOKEN_SETTINGS)


@main.command()
def keygen() -> None:
    """Print a fresh random key for BANK_CIPHER_KEY (AES-256, base64)."""
    click.echo(AESCipher.create_key(32))


def gunicorn_argv(host: str, port: int, workers: int, threads: int) -> list[str]:
    """The command that runs the web app's factory under gunicorn."""
    # No --preload: every worker builds its own BankApplication after the fork.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--bind",
        f"{host}:{port}",
        "--access-logfile",
        "-",
        # gunicorn 27 otherwise shares one ~/.gunicorn control socket between
        # every server on the machine.
        "--no-control-socket",
        WEB_APP_FACTORY,
    ]


def serve_env(environ: Mapping[str, str], db_url: str | None) -> dict[str, str]:
    """The server's environment: this one, plus the database URL when given."""
    env = dict(environ)
    if db_url:
        env.update(database_env(db_url))
    return env


def format_cents(amount_in_cents: int) -> str:
    """Render integer cents as money with two decimals, e.g. -1525 as -15.25."""
    sign = "-" if amount_in_cents < 0 else ""
    units, cents = divmod(abs(amount_in_cents), 100)
    return f"{sign}{units}.{cents:02d}"


def account_table(account: Account) -> Table:
    """A two-column table of an account's state."""
    table = Table(title=Text(f"Account {account.account_id}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("Account id", account.account_id)
    # Plain Text, not markup: an email such as "a[b]@example.com" is data.
    table.add_row("Owner email", Text(account.owner_email))
    table.add_row("Balance", format_cents(account.balance_in_cents))
    table.add_row("Balance (cents)", str(account.balance_in_cents))
    table.add_row("Overdraft limit", format_cents(account.overdraft_limit_in_cents))
    table.add_row("Overdraft limit (cents)", str(account.overdraft_limit_in_cents))
    table.add_row("Closed", "yes" if account.is_closed else "no")
    table.add_row("Version", str(account.version))
    return table


def history_table(account_id: str, events: list[Account.Event]) -> Table:
    """A table of an account's events: version, time, type and own fields."""
    table = Table(title=Text(f"History of account {account_id}"))
    table.add_column("Version", justify="right")
    table.add_column("Timestamp", overflow="fold")
    table.add_column("Type")
    table.add_column("Fields", overflow="fold")
    for event in events:
        fields = Text(
            "\n".join(f"{name}={value}" for name, value in event_fields(event).items())
        )
        table.add_row(
            str(event.originator_version),
            event.timestamp.isoformat(),
            type(event).__name__,
            fields,
        )
    return table


def print_table(table: Table) -> None:
    """Print a table to stdout; when piped, wide enough that no cell wraps."""
    console = Console()
    if not console.is_terminal:
        unlimited = console.options.update_width(sys.maxsize)
        console.width = max(
            console.width, console.measure(table, options=unlimited).maximum
        )
    console.print(table)


# The read models and the log: statements, owners' accounts, replay, audit.

PAGE_SIZE = 1000
# How many violations `bank audit` lists; the report counts them all.
MAX_VIOLATIONS_SHOWN = 200


class ReadModelsUnavailableError(BankError):
    """The bank's store has no SQL database to keep read models in."""

    code = "read_models_unavailable"


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


def open_ledger(session: BankSession) -> Ledger:
    """The read models of the session's bank."""
    try:
        return Ledger(session.app)
    except ConfigurationError as error:
        raise ReadModelsUnavailableError(str(error)) from None


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


@main.command()
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
    ledger = open_ledger(session)
    account_id = normalise_account_id(account_id)
    if ledger.account_view(account_id) is None:
        raise AccountNotFoundError(
            f"There is no account {account_id}.", account_id=account_id
        )
    lines = all_pages(
        lambda cursor, size: ledger.statement(
            account_id, since, until, limit=size, cursor=cursor
        ),
        limit,
    )
    print_table(statement_table(account_id, list(lines)))


@main.command()
@click.option(
    "--owner", "owner_email", required=True, metavar="EMAIL", help="The owner's email."
)
@pass_session
def accounts(session: BankSession, owner_email: str) -> None:
    """List the accounts an owner holds, from the read models, by account id."""
    ledger = open_ledger(session)
    rows = all_pages(
        lambda cursor, size: ledger.accounts_by_owner(
            owner_email, limit=size, cursor=cursor
        )
    )
    print_table(owner_accounts_table(owner_email, list(rows)))


@main.command()
@click.option("--account", "account_id", metavar="ACCOUNT_ID", help="Only its events.")
@click.option(
    "--type",
    "event_types",
    multiple=True,
    type=click.Choice(list(ACCOUNT_EVENT_TYPES)),
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
    """Print the accounts' events from the notification log, in the order stored.

    One line per event: notification id, timestamp, account id, type and the
    event's own fields. The log is read a page at a time, so any length streams.
    (Idempotency records are not account events and are not shown.)
    """
    app = session.app
    stream: UUID | None = None
    if account_id is not None:
        account_id = normalise_account_id(account_id)
        app.get_history(account_id, limit=1)  # AccountNotFoundError when unknown
        stream = Account.create_id(account_id)
    topics = [get_topic(ACCOUNT_EVENT_TYPES[name]) for name in event_types]
    events = (
        (notification_id, event)
        for notification_id, event in log_events(app, topics or ACCOUNT_TOPICS, stream)
        if (since is None or event.timestamp >= since)
        and (until is None or event.timestamp < until)
    )
    names = AccountNames(app)
    for notification_id, event in itertools.islice(events, limit):
        click.echo(replay_line(notification_id, names.of(event), event))


def log_events(
    app: BankApplication, topics: Sequence[str], stream: UUID | None
) -> Iterator[tuple[int, Account.Event]]:
    """The log as it is now, read a page at a time: (notification id, event)."""
    position, stop = 0, app.recorder.max_notification_id() or 0
    while position < stop:
        notifications = app.recorder.select_notifications(
            position, PAGE_SIZE, stop=stop, topics=topics, inclusive_of_start=False
        )
        if not notifications:
            return
        position = notifications[-1].id
        for notification in notifications:
            if stream is None or notification.originator_id == stream:
                event = app.mapper.to_domain_event(notification)
                yield notification.id, cast("Account.Event", event)


class AccountNames:
    """Public account ids of event streams, learnt from their Opened events."""

    def __init__(self, app: BankApplication) -> None:
        self.app = app
        self.known: dict[UUID, str] = {}

    def of(self, event: Account.Event) -> str:
        """The public id of the account the event belongs to."""
        if isinstance(event, Account.Opened):
            self.known[event.originator_id] = event.account_id
        stream = event.originator_id
        if stream not in self.known:
            first = next(iter(self.app.events.get(stream, lte=1)), None)
            opened = isinstance(first, Account.Opened)
            self.known[stream] = first.account_id if opened else str(stream)  # type: ignore[union-attr]
        return self.known[stream]


def replay_line(notification_id: int, account_id: str, event: Account.Event) -> str:
    """One event as a line: notification id, time, account, type, own fields."""
    fields = " ".join(f"{name}={value}" for name, value in event_fields(event).items())
    return (
        f"{notification_id:>8}  {event.timestamp.isoformat()}  {account_id}  "
        f"{type(event).__name__}  {fields}"
    ).rstrip()


@main.group()
def projections() -> None:
    """Look after the read models (the accounts view and statement lines)."""


@projections.command("rebuild")
@click.pass_context
def rebuild_projections(ctx: click.Context) -> None:
    """Drop every read model and rebuild it from the log; an interrupted run resumes."""
    session = ctx.find_object(BankSession)
    assert session is not None
    projection = open_ledger(session).projection
    total = session.app.recorder.max_notification_id() or 0
    start = 0
    if projection.is_rebuilding():
        start = projection.position()
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
            progress.update(task, completed=max(total, projection.position()))
    except KeyboardInterrupt:
        click.echo(
            f"error: interrupted: stopped after notification {projection.position()}; "
            "run `bank projections rebuild` again to resume.",
            err=True,
        )
        ctx.exit(130)
    seconds = time.perf_counter() - started
    click.echo(
        f"Rebuilt the read models: {applied:,} events applied in {seconds:.2f} s "
        f"({applied / seconds if seconds else 0:,.0f} events/s)."
    )


@main.command("audit")
@click.pass_context
def audit_command(ctx: click.Context) -> None:
    """Re-derive every account from the log and check everything stored against it.

    Exits with status 0 when nothing is wrong, 1 when any violation was found.
    """
    session = ctx.find_object(BankSession)
    assert session is not None
    started = time.perf_counter()
    report = audit(session.app, open_ledger(session))
    print_audit_report(report, time.perf_counter() - started)
    if not report.clean:
        click.echo(f"error: audit_failed: {count_violations(report)} found.", err=True)
        ctx.exit(1)


def statement_table(account_id: str, lines: list[dict[str, Any]]) -> Table:
    """A table of statement lines: amounts in cents and as money."""
    references = any(line.get("reference") for line in lines)
    table = Table(
        title=Text(f"Statement of account {account_id}"),
        caption=f"{len(lines)} lines",
    )
    for name in ("Version", "Time", "Kind", "Amount (cents)", "Amount"):
        table.add_column(
            name,
            justify="right" if "mount" in name or name == "Version" else "left",
            overflow="fold",
        )
    table.add_column("Balance after (cents)", justify="right")
    table.add_column("Balance after", justify="right")
    table.add_column("Counterparty", overflow="fold")
    table.add_column("Transfer id", overflow="fold")
    if references:
        table.add_column("Reference", overflow="fold")
    for line in lines:
        cells = [
            str(line["version"]),
            line["timestamp"].isoformat(),
            line["kind"],
            str(line["amount_in_cents"]),
            format_cents(line["amount_in_cents"]),
            str(line["balance_after_in_cents"]),
            format_cents(line["balance_after_in_cents"]),
            Text(line["counterparty_account_id"] or ""),
            line["transfer_id"] or "",
        ]
        if references:
            cells.append(Text(line.get("reference") or ""))
        table.add_row(*cells)
    return table


def owner_accounts_table(owner_email: str, rows: list[dict[str, Any]]) -> Table:
    """A table of an owner's accounts, one row each."""
    table = Table(
        title=Text(f"Accounts of {owner_email}"), caption=f"{len(rows)} accounts"
    )
    table.add_column("Account id", overflow="fold")
    for name in ("Balance (cents)", "Balance", "Overdraft limit (cents)"):
        table.add_column(name, justify="right")
    table.add_column("Closed")
    table.add_column("Version", justify="right")
    table.add_column("Opened at", overflow="fold")
    table.add_column("Updated at", overflow="fold")
    for row in rows:
        table.add_row(
            Text(row["account_id"]),
            str(row["balance_in_cents"]),
            format_cents(row["balance_in_cents"]),
            str(row["overdraft_limit_in_cents"]),
            "yes" if row["closed"] else "no",
            str(row["version"]),
            row["opened_at"].isoformat(),
            row["updated_at"].isoformat(),
        )
    return table


def print_audit_report(report: AuditReport, seconds: float) -> None:
    """Print the audit's figures, its checks and every violation (up to a limit)."""
    figures = Table(title="Audit", show_header=False)
    figures.add_column("figure", style="bold")
    figures.add_column("value", justify="right")
    figures.add_row("Log audited up to notification", str(report.up_to_notification_id))
    figures.add_row("Accounts", f"{report.accounts:,}")
    figures.add_row("Account events", f"{report.events:,}")
    figures.add_row("Transfers", f"{report.transfers:,}")
    for name, cents in (
        ("Total balance", report.total_balance_in_cents),
        ("Total deposits", report.total_deposits_in_cents),
        ("Total withdrawals", report.total_withdrawals_in_cents),
    ):
        figures.add_row(name, f"{format_cents(cents)} ({cents} cents)")
    figures.add_row("Time taken", f"{seconds:.2f} s")
    print_table(figures)
    checks = Table(title="Checks")
    checks.add_column("Check")
    checks.add_column("Result")
    checks.add_column("Examined", justify="right")
    checks.add_column("What it checks", overflow="fold")
    for check in report.checks:
        if not check.ran:
            result = Text("skipped", style="yellow")
        elif check.violations:
            result = Text(f"FAILED ({check.violations})", style="bold red")
        else:
            result = Text("ok", style="green")
        checks.add_row(check.name, result, check.examined, check.description)
    print_table(checks)
    if report.violations:
        shown = report.violations[:MAX_VIOLATIONS_SHOWN]
        hidden = len(report.violations) - len(shown)
        violations = Table(
            title="Violations",
            caption=f"and {hidden} more" if hidden else None,
        )
        for name in ("Check", "Account", "Version", "Transfer", "What is wrong"):
            violations.add_column(name, overflow="fold")
        for violation in shown:
            violations.add_row(
                violation.check,
                Text(violation.account_id or ""),
                "" if violation.version is None else str(violation.version),
                violation.transfer_id or "",
                Text(violation.message),
            )
        print_table(violations)
    verdict = (
        "Audit passed: no violations."
        if report.clean
        else f"Audit FAILED: {count_violations(report)}."
    )
    click.echo(verdict)


def count_violations(report: AuditReport) -> str:
    """How many violations, in words: "1 violation", "3 violations"."""
    count = len(report.violations)
    return f"{count} violation{'' if count == 1 else 's'}"
