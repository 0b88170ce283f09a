"""The checks made on the whole replay: transfers, holds and money."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bank.audit.replay import (
    Holds,
    currency_totals,
    result,
    transfer_ids,
    when,
)
from bank.audit.report import HOLDS, MONEY, TRANSFERS
from bank.transfers import EXPIRED, POSTED, VOIDED

if TYPE_CHECKING:
    from bank.audit.replay import Replay, TransferHalves, TransferReplayed
    from bank.audit.report import CheckResult

# Which hold event ends the holds of a transfer that ended in each status.
HOLD_END_OF = {
    POSTED: "HoldPosted",
    VOIDED: "HoldVoided",
    EXPIRED: "HoldExpired",
}


def check_transfers(replay: Replay) -> CheckResult:
    """Check every transfer's halves and Transfer, and its reversals."""
    for transfer_id, transfer in replay.transfers.items():
        aggregate = replay.by_transfer_id.get(transfer_id)
        problem = _halves_problem(transfer) or _aggregate_problem(transfer, aggregate)
        if problem:
            halves = transfer.sent or transfer.received
            replay.violation(
                TRANSFERS,
                f"Transfer {transfer_id}: {problem}",
                account_id=halves[0].account_id,
                version=halves[0].version,
                transfer_id=transfer_id,
            )
    for transfer_id, aggregate in replay.by_transfer_id.items():
        recorded = aggregate.transfer
        if not aggregate.created_pending and transfer_id not in replay.transfers:
            replay.transfer_problem(
                TRANSFERS,
                recorded,
                "its Transfer was created posted, but no account recorded it "
                "(no TransferSent or TransferReceived).",
                1,
            )
        for reversal_id, amount in aggregate.reversals:
            reversal = replay.by_transfer_id.get(reversal_id)
            if reversal is None or (
                reversal.transfer.reverses_transfer_id,
                reversal.transfer.amount_in_cents,
            ) != (transfer_id, amount):
                replay.transfer_problem(
                    TRANSFERS,
                    recorded,
                    f"records a reversal of {amount} cents by transfer {reversal_id}, "
                    "which no reversal of that amount matches.",
                    None,
                )
        if recorded.reverses_transfer_id is not None:
            original = replay.by_transfer_id.get(recorded.reverses_transfer_id)
            mirrored = (transfer_id, recorded.amount_in_cents)
            if original is not None and mirrored not in original.reversals:
                replay.transfer_problem(
                    TRANSFERS,
                    recorded,
                    f"reverses transfer {recorded.reverses_transfer_id}, which does "
                    f"not record this reversal of {recorded.amount_in_cents} cents.",
                    1,
                )
    return result(replay, TRANSFERS, f"{len(transfer_ids(replay)):,} transfers")


def _halves_problem(transfer: TransferHalves) -> str | None:
    """What is wrong with a transfer's two halves, if anything."""
    if not transfer.sent:
        [received, *_] = transfer.received
        return (
            f"account {received.account_id} received {received.amount_in_cents} "
            f"cents from {received.counterparty}, which never sent them "
            "(no TransferSent)."
        )
    if not transfer.received:
        [sent, *_] = transfer.sent
        return (
            f"account {sent.account_id} sent {sent.amount_in_cents} cents to "
            f"{sent.counterparty}, which never received them (no TransferReceived)."
        )
    if len(transfer.sent) > 1 or len(transfer.received) > 1:
        return (
            f"recorded {len(transfer.sent)} times as sent and "
            f"{len(transfer.received)} times as received; once each is right."
        )
    [sent], [received] = transfer.sent, transfer.received
    if (sent.counterparty, received.counterparty) != (
        received.account_id,
        sent.account_id,
    ):
        return (
            f"the halves disagree on the accounts: {sent.account_id} sent to "
            f"{sent.counterparty}, {received.account_id} received from "
            f"{received.counterparty}."
        )
    if sent.amount_in_cents != received.amount_in_cents:
        return (
            f"{sent.amount_in_cents} cents were sent but {received.amount_in_cents} "
            f"received, so it nets to "
            f"{received.amount_in_cents - sent.amount_in_cents} cents instead of 0."
        )
    return None


def _aggregate_problem(
    transfer: TransferHalves, aggregate: TransferReplayed | None
) -> str | None:
    """How (sound) halves disagree on the currency or with their Transfer, if so."""
    [sent], [received] = transfer.sent, transfer.received
    if sent.currency != received.currency:
        return (
            f"it moved money from {sent.account_id} ({sent.currency}) to "
            f"{received.account_id} ({received.currency}); a transfer needs one "
            "currency."
        )
    if aggregate is None:
        return None  # made before transfers were aggregates
    recorded = aggregate.transfer
    if aggregate.created_pending:
        return "its halves moved money, but its Transfer was created pending."
    said = (
        recorded.from_account_id,
        recorded.to_account_id,
        recorded.amount_in_cents,
        recorded.currency,
    )
    if (sent.account_id, sent.counterparty, sent.amount_in_cents, sent.currency) != (
        said
    ):
        return (
            f"its halves moved {sent.amount_in_cents} {sent.currency} cents from "
            f"{sent.account_id} to {sent.counterparty}, but its Transfer says "
            f"{recorded.amount_in_cents} {recorded.currency} cents from "
            f"{recorded.from_account_id} to {recorded.to_account_id}."
        )
    return None


def check_holds(replay: Replay) -> CheckResult:
    """Check each pending transfer's holds, how they ended and its Transfer."""
    pending = {
        transfer_id
        for transfer_id, aggregate in replay.by_transfer_id.items()
        if aggregate.created_pending
    }
    for transfer_id in sorted(replay.holds.keys() | pending):
        holds = replay.holds.get(transfer_id) or Holds()
        problem = _holds_problem(holds, replay.by_transfer_id.get(transfer_id))
        if problem:
            where = (
                {
                    "account_id": holds.placed[0].account_id,
                    "version": holds.placed[0].version,
                }
                if holds.placed
                else {}
            )
            replay.violation(
                HOLDS,
                f"Transfer {transfer_id}: {problem}",
                transfer_id=transfer_id,
                **where,
            )
    return result(
        replay,
        HOLDS,
        f"{replay.holds_placed:,} holds of {len(replay.holds.keys() | pending):,} "
        "pending transfers",
    )


def _holds_problem(holds: Holds, aggregate: TransferReplayed | None) -> str | None:
    """What is wrong with a pending transfer's holds and its Transfer, if anything."""
    if aggregate is None:
        return "its holds were placed, but no Transfer records it."
    transfer = aggregate.transfer
    if not aggregate.created_pending:
        return "holds were placed for it, but its Transfer was created posted."
    debit, credit = (
        [hold for hold in holds.placed if hold.is_debit is is_debit]
        for is_debit in (True, False)
    )
    if len(debit) != 1 or len(credit) != 1:
        return (
            f"{len(debit)} debit and {len(credit)} credit holds were placed; one "
            "each is right."
        )
    [payer], [payee] = debit, credit
    terms = (transfer.amount_in_cents, transfer.expires_at, transfer.currency)
    for hold, account_id, counterparty in (
        (payer, transfer.from_account_id, transfer.to_account_id),
        (payee, transfer.to_account_id, transfer.from_account_id),
    ):
        said = (hold.amount_in_cents, hold.expires_at, hold.currency)
        if (hold.account_id, hold.counterparty, *said) != (
            account_id,
            counterparty,
            *terms,
        ):
            side = "debit" if hold.is_debit else "credit"
            return (
                f"its {side} hold on {hold.account_id} (towards {hold.counterparty}, "
                f"{hold.amount_in_cents} {hold.currency} cents, expiring "
                f"{when(hold.expires_at)}) disagrees with its Transfer "
                f"({transfer.from_account_id} to {transfer.to_account_id}, "
                f"{transfer.amount_in_cents} {transfer.currency} cents, expiring "
                f"{when(transfer.expires_at)})."
            )
    expected_end = HOLD_END_OF.get(transfer.state)
    for hold in (payer, payee):
        end = holds.ends.get(hold.account_id)
        ended = end[0] if end else None
        if ended != expected_end or (
            ended == "HoldPosted" and end and end[1] != transfer.posted_amount_in_cents
        ):
            return (
                f"its Transfer is {transfer.state} "
                f"({transfer.posted_amount_in_cents} cents posted), but the hold on "
                f"{hold.account_id} ended {_describe_end(end)}."
            )
    return None


def _describe_end(end: tuple[str, int] | None) -> str:
    return "not at all (still pending)" if end is None else f"by {end[0]} of {end[1]}"


def check_money(replay: Replay) -> CheckResult:
    """Check that each currency's balances add up to deposits minus withdrawals."""
    currencies = currency_totals(replay)
    for currency, totals in currencies.items():
        expected = totals.deposits_in_cents - totals.withdrawals_in_cents
        total = totals.balance_in_cents
        if total != expected:
            replay.violation(
                MONEY,
                f"The {currency} balances add up to {total} cents, but deposits "
                f"minus withdrawals are {expected} cents ({totals.deposits_in_cents} "
                f"- {totals.withdrawals_in_cents}): transfers net to "
                f"{total - expected} cents instead of 0.",
            )
    held_in = ", ".join(currencies) or "no currency"
    return result(replay, MONEY, f"{len(replay.accounts):,} accounts in {held_in}")
