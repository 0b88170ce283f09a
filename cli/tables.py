"""How the CLI shows accounts, histories, statements and audits: rich tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bank.domain import event_fields, minor_unit_digits

if TYPE_CHECKING:
    from bank import Account
    from bank.audit import AuditReport
    from bank.commands import AccountState, TransferState

# How many violations `bank audit` lists; the report counts them all.
MAX_VIOLATIONS_SHOWN = 200


def format_money(amount_in_minor_units: int, currency: str) -> str:
    """Render minor units in the currency's own way: 1525 USD as 15.25, JPY as 1525."""
    digits = minor_unit_digits(currency)
    if digits == 2:
        return format_cents(amount_in_minor_units)
    sign = "-" if amount_in_minor_units < 0 else ""
    units, minor = divmod(abs(amount_in_minor_units), 10**digits)
    return f"{sign}{units}.{minor:0{digits}d}" if digits else f"{sign}{units}"


def format_cents(amount_in_cents: int) -> str:
    """Render integer cents as money with two decimals, e.g. -1525 as -15.25."""
    sign = "-" if amount_in_cents < 0 else ""
    units, cents = divmod(abs(amount_in_cents), 100)
    return f"{sign}{units}.{cents:02d}"


def account_table(account: AccountState) -> Table:
    """A two-column table of an account's state."""
    table = Table(title=Text(f"Account {account.account_id}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("Account id", account.account_id)
    # Plain Text, not markup: an email such as "a[b]@example.com" is data.
    table.add_row("Owner email", Text(account.owner_email))
    table.add_row("Currency", account.currency)
    for name, cents in (
        ("Balance", account.balance_in_cents),
        ("Overdraft limit", account.overdraft_limit_in_cents),
        ("Pending debits", account.pending_debits_in_cents),
        ("Pending credits", account.pending_credits_in_cents),
        ("Available", account.available_in_cents),
    ):
        table.add_row(name, format_money(cents, account.currency))
        table.add_row(f"{name} (cents)", str(cents))
    table.add_row("Closed", "yes" if account.is_closed else "no")
    table.add_row("Version", str(account.version))
    return table


def transfer_table(transfer: TransferState) -> Table:
    """A two-column table of a transfer's state."""
    table = Table(title=Text(f"Transfer {transfer.transfer_id}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("Transfer id", transfer.transfer_id)
    table.add_row("From account", Text(transfer.from_account_id))
    table.add_row("To account", Text(transfer.to_account_id))
    table.add_row("Status", transfer.status)
    table.add_row("Currency", transfer.currency)
    for name, cents in (
        ("Amount", transfer.amount_in_cents),
        ("Posted", transfer.posted_amount_in_cents),
        ("Reversed", transfer.reversed_amount_in_cents),
    ):
        table.add_row(name, format_money(cents, transfer.currency))
        table.add_row(f"{name} (cents)", str(cents))
    table.add_row("Reverses", transfer.reverses_transfer_id or "")
    table.add_row("Created at", transfer.created_at.isoformat())
    expires_at = transfer.expires_at
    table.add_row("Expires at", expires_at.isoformat() if expires_at else "")
    metadata = " ".join(f"{key}={value}" for key, value in transfer.metadata.items())
    table.add_row("Metadata", Text(metadata))
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
