"""The background projector: keeps the read models current, woken by new events.

It catches up a batch per transaction, then waits: on PostgreSQL for the
NOTIFY every write sends after its commit (and, while an older transaction
is still open, for a few milliseconds at a time, since the events behind it
can be read only once it ends); on SQLite it polls. Several may run at once:
each batch's compare-and-set lets exactly one of them apply it. A projector
that stops, however it stops, resumes from the stored position. While
`bank projections rebuild` runs (or lies interrupted), it waits.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from eventsourcing.persistence import OperationalError, PersistenceError

from bank.persistence import SqlApplicationRecorder

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator

    from bank.projections.projector import LedgerProjection

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # SQLite: how often the log is looked at when idle
FIRST_POLL_SECONDS = 0.002  # SQLite: how soon after the log last moved
SETTLING_SECONDS = 0.02  # PostgreSQL: the longest wait while a transaction is open
IDLE_SECONDS = 1.0  # PostgreSQL: the longest wait for a NOTIFY (one may be lost)
RETRY_SECONDS = 1.0  # after the database failed to answer
REBUILD_POLL_SECONDS = 0.5  # how often a paused projector looks if a rebuild ended


class Projector:
    """Runs a projection's catch-up whenever the log moves, until told to stop."""

    def __init__(
        self,
        projection: LedgerProjection,
        batch_size: int = 1000,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.projection = projection
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        recorder = projection.log.recorder
        self._recorder = (
            recorder if isinstance(recorder, SqlApplicationRecorder) else None
        )
        self.applied = 0
        self._quiet = 0  # catch-ups in a row that found nothing new

    def run(
        self,
        stop: threading.Event,
        progress: Callable[[int], None] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Keep the read models current until `stop` is set.

        `ready` is called once, when the log as it was at the start has been
        applied (or the database failed to answer).
        """
        with self._woken() as wait:
            while not stop.is_set():
                try:
                    if self.projection.is_rebuilding():
                        # `bank projections rebuild` has the tables: it alone
                        # refills them, and says how many it applied.
                        if ready is not None:
                            ready()
                            ready = None
                        stop.wait(REBUILD_POLL_SECONDS)
                        continue
                    applied = self.projection.catch_up(self.batch_size, settle=False)
                except (OperationalError, PersistenceError):
                    logger.warning("projector: database failed", exc_info=True)
                    applied = 0
                    stop.wait(RETRY_SECONDS)
                self.applied += applied
                self._quiet = 0 if applied else min(self._quiet + 1, 16)
                if applied and progress is not None:
                    progress(applied)
                if not applied:
                    if ready is not None:
                        ready()
                        ready = None
                    wait(stop)

    def run_once(self) -> int:
        """Catch up with what the log holds now; return how many were applied."""
        applied = self.projection.catch_up(self.batch_size, settle=True)
        self.applied += applied
        return applied

    @contextlib.contextmanager
    def _woken(self) -> Iterator[Callable[[threading.Event], None]]:
        """A function that waits until the log may have moved (or `stop` is set)."""
        recorder = self._recorder
        if recorder is None or recorder.log_sql.horizon_sql is None:

            def poll(stop: threading.Event) -> None:
                # Writes come in bursts: right after one, look again soon,
                # then less and less often, up to poll_seconds.
                stop.wait(min(self.poll_seconds, FIRST_POLL_SECONDS * 2**self._quiet))

            yield poll
            return
        listener = recorder.database.listening(recorder.channel)
        try:

            def wait(stop: threading.Event) -> None:
                # While some transaction is open, events behind it are readable
                # only once it ends, which sends no NOTIFY if it wrote nothing:
                # then look again soon, NOTIFY or not.
                longest = SETTLING_SECONDS if recorder.log_horizon() else IDLE_SECONDS
                deadline = time.monotonic() + longest
                while not stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    # Short slices, so that a stop is noticed soon.
                    if any(listener.notifies(timeout=min(left, 0.1), stop_after=1)):
                        # One catch-up serves every NOTIFY already here.
                        for _ in listener.notifies(timeout=0):
                            pass
                        return

            yield wait
        finally:
            listener.close()
