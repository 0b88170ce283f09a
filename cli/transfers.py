"""Holds and transfers from a shell: post, void, reverse, show, expire lapsed holds."""

from __future__ import annotations

import click
from eventsourcing.domain import datetime_now_with_tzinfo

from bank.projections import Ledger
from cli.session import BankSession, metadata_option, pass_session
from cli.tables import print_table, transfer_table

optional_cents = click.argument(
    "amount_in_cents", metavar="[CENTS]", type=click.INT, required=False
)


@click.command()
@click.argument("transfer_id")
@optional_cents
@pass_session
def post(session: BankSession, transfer_id: str, amount_in_cents: int | None) -> None:
    """Move a pending transfer's held money (all of it, or CENTS); free the rest."""
    transfer = session.app.post_transfer(transfer_id, amount_in_cents)
    click.echo(
        f"Transfer {transfer.transfer_id} is posted: "
        f"{transfer.posted_amount_in_cents} cents moved."
    )


@click.command()
@click.argument("transfer_id")
@pass_session
def void(session: BankSession, transfer_id: str) -> None:
    """Release all of a pending transfer's held money."""
    transfer = session.app.void_transfer(transfer_id)
    click.echo(f"Transfer {transfer.transfer_id} is voided: nothing moved.")


@click.command()
@click.argument("transfer_id")
@optional_cents
@metadata_option
@pass_session
def reverse(
    session: BankSession,
    transfer_id: str,
    amount_in_cents: int | None,
    metadata: dict[str, str],
) -> None:
    """Move a posted transfer's money back (all, or CENTS); print the new id."""
    click.echo(
        session.app.reverse_transfer(transfer_id, amount_in_cents, metadata=metadata)
    )


@click.command("transfer-show")
@click.argument("transfer_id")
@pass_session
def transfer_show(session: BankSession, transfer_id: str) -> None:
    """Show a transfer: accounts, amount, status, what was posted and reversed."""
    print_table(transfer_table(session.app.get_transfer(transfer_id)))


@click.group()
def holds() -> None:
    """Look after pending transfers (holds)."""


@holds.command("expire")
@pass_session
def expire_holds(session: BankSession) -> None:
    """Record the expiry of every hold that has lapsed (found in the read models)."""
    lapsed = Ledger(session.app).lapsed_transfer_ids(datetime_now_with_tzinfo())
    for transfer_id in lapsed:
        session.app.expire_transfer(transfer_id)
    click.echo(f"Expired {len(lapsed)} lapsed hold{'' if len(lapsed) == 1 else 's'}.")
