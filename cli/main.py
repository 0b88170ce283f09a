"""The `bank` console script: the Python API and the HTTP server from a shell."""

from __future__ import annotations

import click

from bank.commands import AccountState
from cli.ledger import accounts, audit_command, projections, replay, statement
from cli.projector import projector
from cli.serve import keygen, serve
from cli.session import BankGroup, BankSession, metadata_option, pass_session
from cli.tables import account_table, history_table, print_table
from cli.transfers import holds, post, reverse, transfer_show, void

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
@click.option(
    "--currency",
    metavar="CODE",
    help="ISO 4217 currency, e.g. EUR; default: BANK_DEFAULT_CURRENCY, or USD.",
)
@pass_session
def open_account(
    session: BankSession,
    owner_email: str,
    account_id: str | None,
    currency: str | None,
) -> None:
    """Open an account owned by EMAIL and print its id."""
    click.echo(session.app.open_account(owner_email, account_id, currency=currency))


@main.command()
@click.argument("account_id")
@cents_argument
@metadata_option
@pass_session
def deposit(
    session: BankSession,
    account_id: str,
    amount_in_cents: int,
    metadata: dict[str, str],
) -> None:
    """Pay CENTS into ACCOUNT_ID and print the new balance in cents."""
    click.echo(session.app.deposit(account_id, amount_in_cents, metadata=metadata))


@main.command()
@click.argument("account_id")
@cents_argument
@metadata_option
@pass_session
def withdraw(
    session: BankSession,
    account_id: str,
    amount_in_cents: int,
    metadata: dict[str, str],
) -> None:
    """Pay CENTS out of ACCOUNT_ID and print the new balance in cents."""
    click.echo(session.app.withdraw(account_id, amount_in_cents, metadata=metadata))


@main.command()
@click.argument("from_account_id", metavar="FROM_ID")
@click.argument("to_account_id", metavar="TO_ID")
@cents_argument
@click.option("--pending", is_flag=True, help="Hold the money until posted or voided.")
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.INT,
    metavar="SECONDS",
    help="With --pending: the hold lapses after this many seconds (1 to 2592000).",
)
@metadata_option
@pass_session
def transfer(
    session: BankSession,
    *,
    from_account_id: str,
    to_account_id: str,
    amount_in_cents: int,
    pending: bool,
    timeout_seconds: int | None,
    metadata: dict[str, str],
) -> None:
    """Move CENTS from FROM_ID to TO_ID (both or neither); print the transfer id."""
    transfer_id = session.app.transfer(
        from_account_id,
        to_account_id,
        amount_in_cents,
        pending=pending,
        timeout_seconds=timeout_seconds,
        metadata=metadata,
    )
    click.echo(transfer_id)


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
    """Show an account: owner, currency, balance, holds, what is available, version."""
    account = session.app.get_account(account_id, version=version)
    print_table(account_table(AccountState.of(account)))


@main.command()
@click.argument("account_id")
@pass_session
def history(session: BankSession, account_id: str) -> None:
    """List every event recorded for ACCOUNT_ID, oldest first."""
    print_table(history_table(account_id, session.app.get_history(account_id)))


for command in (
    serve,
    keygen,
    statement,
    accounts,
    replay,
    projections,
    projector,
    audit_command,
    post,
    void,
    reverse,
    transfer_show,
    holds,
):
    main.add_command(command)
