"""The `bank` console script: the Python API and the HTTP server from a shell."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import click
from eventsourcing.cryptography import AESCipher
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bank.application import BankApplication
from bank.domain import BankError, event_fields

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bank.domain import Account

DATABASE_URL_KEYS = ("SQLALCHEMY_URL", "BANK_SQLALCHEMY_URL")
WEB_APP_FACTORY = "web:create_app()"
# The settings web.auth reads; bank/ names them without importing web.
API_TOKEN_SETTINGS = ("BANK_API_TOKENS", "BANK_API_TOKENS_FILE")


def database_env(url: str) -> dict[str, str]:
    """Settings that point the bank at the database URL, whatever else is set."""
    # BankApplication reads BANK_SQLALCHEMY_URL before SQLALCHEMY_URL, so an
    # explicit --db sets both: a stray BANK_SQLALCHEMY_URL must not win over it.
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
            env = database_env(self.db_url) if self.db_url else None
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
