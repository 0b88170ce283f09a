"""What the audit checks, and the report of what it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

STREAMS = "streams"
OVERDRAFT = "overdraft"
TRANSFERS = "transfers"
HOLDS = "holds"
MONEY = "money"
READ_MODELS = "read models"
SNAPSHOTS = "snapshots"
CHECKS = {
    STREAMS: "each account's events start with Opened and each transfer's with "
    "Created, versions run on without gaps, nothing follows Closed",
    OVERDRAFT: "no debit took a balance below minus the overdraft limit, plus the "
    "debit holds, of the time (debits only: lowering a limit below an existing "
    "debt is allowed)",
    TRANSFERS: "each transfer is one TransferSent and one TransferReceived, same "
    "amount and currency, each naming the other's account, netting to zero, as its "
    "Transfer says; reversals name a posted original and total at most its amount",
    HOLDS: "no hold was placed beyond the money available; each posted, voided or "
    "expired hold was placed and pending; each pending transfer's two holds agree "
    "with each other and with its Transfer",
    MONEY: "in each currency, the balances add up to deposits minus withdrawals",
    READ_MODELS: "the accounts view, statement lines, transfers view and holds view "
    "equal the events, row for row",
    SNAPSHOTS: "the repository (from snapshots) and every stored snapshot give the "
    "same state as the events",
}


@dataclass(frozen=True)
class Violation:
    """One thing the audit found wrong, said in a sentence."""

    check: str
    message: str
    account_id: str | None = None
    version: int | None = None
    transfer_id: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """One check: how much it examined and how many violations it found."""

    name: str
    description: str
    examined: str
    violations: int
    ran: bool = True

    @property
    def passed(self) -> bool:
        """Whether the check ran and found nothing wrong."""
        return self.ran and not self.violations


class CurrencyTotals(NamedTuple):
    """The money of one currency: what the accounts hold, and what came and went."""

    balance_in_cents: int
    deposits_in_cents: int
    withdrawals_in_cents: int


@dataclass(frozen=True)
class AuditReport:
    """What the audit checked, the figures it re-derived and what it found.

    The totals add up every currency; `currencies` has them one by one.
    """

    up_to_notification_id: int
    accounts: int
    events: int
    transfers: int
    total_balance_in_cents: int
    total_deposits_in_cents: int
    total_withdrawals_in_cents: int
    checks: list[CheckResult]
    violations: list[Violation]
    currencies: dict[str, CurrencyTotals] = field(default_factory=dict)
    transfer_events: int = 0

    @property
    def clean(self) -> bool:
        """Whether no violation was found."""
        return not self.violations
