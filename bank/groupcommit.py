"""Group commit: the concurrent writers of one process share one transaction.

A commit is the dearest part of a command: an fsync on SQLite, a WAL flush
and a round trip on PostgreSQL. When several threads write at once, the
first to arrive runs alone, and those that queue meanwhile form the next
group: its leader begins one transaction, has every job of the group decide
what to write, then writes each job's decision inside its own savepoint, and
commits once. A job that is refused writes nothing; one whose write fails
(a lost race) undoes only its own writes, and so does every later job that
built on what it decided. Each raises in its own caller's thread. Every
caller is answered after the commit that holds its writes, or with that
commit's error when it fails.

Why decide first: on PostgreSQL the log is ordered by writing transaction,
and a transaction gets its id at its first write. A job that decided after
that, on state another transaction committed meanwhile, would come before
that state in the log. With every decision made before the first write,
whatever a group builds on was committed before it has an id.

What a job decided (say, the accounts it changed) is staged for the group's
later jobs to build on; when the commit succeeds the group publishes what was
written (to the cache), and when it fails it discards what was staged.
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Hashable, Iterable
    from contextlib import AbstractContextManager

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K", bound="Hashable")
V = TypeVar("V")

DEFAULT_MAX_SIZE = 64  # PostgreSQL tracks 64 subtransactions per backend cheaply


class Decision(Protocol[T_co]):
    """What a job decided: what it will write, and how."""

    @property
    def keys(self) -> Collection[Hashable]:
        """What the write changes (say, aggregate ids): later jobs may build on it."""

    def write(self) -> T_co:
        """Write what was decided; return the caller's answer."""

    def abandon(self) -> BaseException:
        """The error for the caller when a job this one built on failed to write."""

    def staged(self) -> Iterable[tuple[Hashable, object]]:
        """What later jobs of the group may build on: the state once written."""

    def written(self) -> Iterable[tuple[Hashable, object]]:
        """After write(): what to publish once the commit holds it."""


class _Job:
    """One caller's job, and what became of it."""

    __slots__ = ("decision", "done", "error", "run", "staged", "value", "wakeup")

    def __init__(self, run: Callable[[], Decision[object]]) -> None:
        self.run = run
        self.decision: Decision[object] | None = None
        self.done = False
        self.value: object = None
        self.error: BaseException | None = None
        self.staged: dict[object, object] = {}
        # Set when the job is done, or when its caller is to lead a group.
        self.wakeup = threading.Event()

    def fail(self, error: BaseException) -> None:
        """Record the job's error; what it staged is no more."""
        self.error = error
        self.staged.clear()


class GroupCommit(Generic[K, V]):
    """Runs jobs of concurrent threads in shared transactions, one savepoint each."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[object]],
        savepoint: Callable[[], AbstractContextManager[object]],
        *,
        publish: Callable[[Iterable[tuple[K, V]]], None],
        discard: Callable[[Iterable[K]], None],
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._transaction = transaction
        self._savepoint = savepoint
        self._publish = publish
        self._discard = discard
        self.max_size = max(1, max_size)
        # Jobs waiting or running, oldest first; the caller of the first leads.
        self._queue: deque[_Job] = deque()
        self._mutex = threading.Lock()
        self._local = threading.local()
        # Figures for health reports and benchmarks (updated by the leader).
        self.transactions = 0
        self.commands = 0
        # Told each committed group's size (metrics), when set.
        self.on_commit: Callable[[int], None] | None = None

    def run(self, job: Callable[[], Decision[T]]) -> T:
        """Decide and write in a group's transaction; answer after its commit."""
        if getattr(self._local, "group", None) is not None:
            # Called from a job this thread runs: part of that job, not a new one.
            return job().write()
        entry = _Job(job)
        with self._mutex:
            self._queue.append(entry)
            leads = len(self._queue) == 1
        if not leads:
            entry.wakeup.wait()
        if not entry.done:
            self._lead()
        if entry.error is not None:
            raise entry.error
        return entry.value  # type: ignore[return-value]  # what write() returned

    @property
    def queued(self) -> int:
        """How many jobs are waiting or running now."""
        return len(self._queue)

    def staged(self, key: K) -> V | None:
        """Inside a job: what an earlier job of this group decided for key, if any."""
        group: list[_Job] | None = getattr(self._local, "group", None)
        if group:
            for job in reversed(group):
                if key in job.staged:
                    return job.staged[key]  # type: ignore[return-value]
        return None

    def _lead(self) -> None:
        # The group is the oldest jobs, this caller's first; they stay queued
        # until done, so newcomers wait behind them.
        with self._mutex:
            group = list(islice(self._queue, self.max_size))
        self._local.group = group
        try:
            self._commit(group)
        finally:
            self._local.group = None
            with self._mutex:
                for _ in group:
                    self._queue.popleft()
                successor = self._queue[0] if self._queue else None
            for job in group:
                job.done = True
                job.wakeup.set()
            if successor is not None:
                successor.wakeup.set()

    def _commit(self, group: list[_Job]) -> None:
        if len(group) == 1:
            self._run_alone(group[0])
            return
        try:
            with self._transaction():
                for job in group:
                    self._decide(job)
                self._write(group)
        except BaseException as error:
            # The commit failed (or the transaction broke): nothing of the
            # group is stored, so every job fails with it.
            self._discard(key for job in group for key in job.staged)  # type: ignore[misc]
            for job in group:
                if job.error is None:
                    job.fail(error)
            return
        self._committed(group)

    def _run_alone(self, job: _Job) -> None:
        # Nobody to share with: the job's writes commit on their own, as if
        # there were no group (and its decision holds no lock).
        try:
            job.decision = job.run()
            job.value = job.decision.write()
        except BaseException as error:  # handed to the job's caller
            job.fail(error)
            return
        self._committed([job])

    def _decide(self, job: _Job) -> None:
        try:
            job.decision = job.run()
            job.staged = dict(job.decision.staged())
        except Exception as error:  # handed to the job's caller
            job.decision = None
            job.fail(error)

    def _write(self, group: list[_Job]) -> None:
        failed: set[Hashable] = set()
        for job in group:
            decision = job.decision
            if decision is None:
                continue
            keys = decision.keys
            if not failed.isdisjoint(keys):
                # It decided on what a failed job would have written.
                job.fail(decision.abandon())
                failed.update(keys)
                continue
            try:
                with self._savepoint():
                    job.value = decision.write()
            except Exception as error:  # handed to the job's caller
                job.fail(error)
                failed.update(keys)

    def _committed(self, group: list[_Job]) -> None:
        self.transactions += 1
        self.commands += len(group)
        if self.on_commit is not None:
            self.on_commit(len(group))
        self._publish(
            item  # type: ignore[misc]
            for job in group
            if job.error is None and job.decision is not None
            for item in job.decision.written()
        )
