"""The audit: re-derive the ledger from the event log and check what is stored.

The log is read once, in notification order, and every account and transfer
is rebuilt by applying its events with the domain's own `@event` methods
(`event.mutate`). On the way, and then against the rebuilt aggregates, seven
things are checked:

1. streams: each account's events start with its Opened, each transfer's with
   its Created, and run on version by version; nothing follows Closed;
2. overdraft: no debit (Withdrawn, TransferSent) took a balance below minus the
   overdraft limit plus the debit holds recorded then. Debits only: lowering a
   limit below an existing debt is allowed by the domain, so a balance under a
   later, lower limit is not a violation;
3. transfers: every transfer that moved money at once is exactly one
   TransferSent and one TransferReceived with the same amount, each naming the
   other's account, both of one currency, and agrees with its Transfer (those
   made before transfers were aggregates have none); every reversal names a
   posted original, which records it with the same amount, and reversals total
   at most what was posted;
4. holds: no hold took its account's available money below zero when placed;
   every HoldPosted, HoldVoided and HoldExpired ends a hold that was placed
   (same transfer, direction and counterparty; posting at most what was held);
   each pending transfer's two holds agree with each other and with its
   Transfer, which was pending whenever it was posted, voided or expired;
5. money: in each currency, the balances add up to deposits minus withdrawals;
6. read models (when a Ledger is given): the accounts view, the statement
   lines, the transfers view and the holds view equal the events, row for row;
7. snapshots: the library's repository (which starts from the latest snapshot)
   rebuilds each account to the same state, and so does every stored snapshot.

Holds are judged as recorded: one past its expiry still counts until its
HoldExpired is in the log (the read models subtract lapsed holds only when
they answer a query).

Against a live bank the read models are read in one snapshot of the database
(REPEATABLE READ on PostgreSQL, one read transaction on SQLite) and the log is
audited at least up to the projection's position in that snapshot, so writers
and projectors that keep working during the audit cause no false alarms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bank.audit.ledger_checks import check_holds, check_money, check_transfers
from bank.audit.read_models import check_read_models
from bank.audit.replay import (
    Replay,
    currency_totals,
    recorded_state,
    result,
    transfer_ids,
)
from bank.audit.report import (
    CHECKS,
    HOLDS,
    MONEY,
    OVERDRAFT,
    READ_MODELS,
    SNAPSHOTS,
    STREAMS,
    TRANSFERS,
    AuditReport,
    CheckResult,
    CurrencyTotals,
    Violation,
)
from bank.audit.snapshots import check_snapshots

if TYPE_CHECKING:
    from bank.application import BankApplication
    from bank.projections import Ledger

__all__ = [
    "CHECKS",
    "HOLDS",
    "MONEY",
    "OVERDRAFT",
    "READ_MODELS",
    "SNAPSHOTS",
    "STREAMS",
    "TRANSFERS",
    "AuditReport",
    "CheckResult",
    "CurrencyTotals",
    "Violation",
    "audit",
    "recorded_state",
]


def audit(app: BankApplication, ledger: Ledger | None = None) -> AuditReport:
    """Re-derive every account and transfer from the whole log and check it all."""
    replay = Replay(app)
    replay.read(stop=app.event_log.settled_head())
    read_models = check_read_models(replay, ledger)  # may read the log further
    results = [
        result(
            replay,
            STREAMS,
            f"{replay.events:,} account events, {replay.transfer_events:,} "
            "transfer events",
        ),
        result(replay, OVERDRAFT, f"{replay.debits:,} debits"),
        check_transfers(replay),
        check_holds(replay),
        check_money(replay),
        read_models,
        check_snapshots(replay),
    ]
    order = list(CHECKS)
    currencies = currency_totals(replay)
    return AuditReport(
        up_to_notification_id=replay.position.notification_id,
        accounts=len(replay.accounts),
        events=replay.events,
        transfers=len(transfer_ids(replay)),
        total_balance_in_cents=sum(c.balance_in_cents for c in currencies.values()),
        total_deposits_in_cents=sum(c.deposits_in_cents for c in currencies.values()),
        total_withdrawals_in_cents=sum(
            c.withdrawals_in_cents for c in currencies.values()
        ),
        checks=results,
        violations=sorted(replay.violations, key=lambda v: order.index(v.check)),
        currencies=currencies,
        transfer_events=replay.transfer_events,
    )
