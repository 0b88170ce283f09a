"""Every account loaded from its snapshots, held against the replay."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from bank.audit.replay import recorded_state, result, state_differences
from bank.audit.report import SNAPSHOTS

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from bank.application import BankApplication
    from bank.audit.replay import Replay, Replayed
    from bank.audit.report import CheckResult
    from bank.commands import AccountState
    from bank.domain import Account


def check_snapshots(replay: Replay) -> CheckResult:
    """Load every account from the store and from each snapshot; compare."""
    app = replay.app
    snapshots = 0
    audited = replay.accounts.values()
    for replayed in audited:
        account = replayed.account
        differences = _loaded_differences(
            # A version keeps the repository off its cache: it reads the store.
            partial(app.repository.get, account.id, version=account.version),
            recorded_state(account),
        )
        if differences:
            _snapshot_problem(
                replay,
                account.account_id,
                account.version,
                f"the repository rebuilds version {account.version} differently "
                f"from the events: {differences}.",
            )
        for snapshot in app.snapshots.get(account.id) if app.snapshots else ():
            version = snapshot.originator_version
            if version > account.version and _has_event(app, account.id, version):
                continue  # taken after the part of the log audited
            snapshots += 1
            _compare_snapshot(replay, replayed, snapshot)
    return result(
        replay, SNAPSHOTS, f"{len(audited):,} accounts, {snapshots:,} snapshots"
    )


def _has_event(app: BankApplication, aggregate_id: UUID, version: int) -> bool:
    """Whether the account's event of this version is stored."""
    return any(True for _ in app.events.get(aggregate_id, gt=version - 1, lte=version))


def _compare_snapshot(replay: Replay, replayed: Replayed, snapshot: Any) -> None:
    version = snapshot.originator_version
    differences = _loaded_differences(
        partial(snapshot.mutate, None), replayed.state_at(version)
    )
    if differences:
        _snapshot_problem(
            replay,
            replayed.account.account_id,
            version,
            f"the snapshot of version {version} differs from the events: "
            f"{differences}.",
        )


def _loaded_differences(
    load: Callable[[], Account], expected: AccountState | None
) -> str:
    """How an account loaded another way differs from the events ("" if not at all)."""
    try:
        loaded = recorded_state(load())
    except Exception as error:  # a corrupt snapshot may not even load
        return f"it cannot be loaded: {error!r}"
    if expected is None:
        return "the log has no event of that version"
    return state_differences(loaded, expected)


def _snapshot_problem(
    replay: Replay, account_id: str, version: int, problem: str
) -> None:
    replay.violation(
        SNAPSHOTS,
        f"Account {account_id}: {problem}",
        account_id=account_id,
        version=version,
    )
