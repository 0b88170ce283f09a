"""Where reads are served: the primary database, or a hot standby of it.

A read is served once the store it reads from has caught up with a target
position: the one the client names (`min_position`, from a command's answer),
or else the log's head when the read arrived, which keeps read-your-writes
for a client that just had a command answered. Waiting is bounded by
`BANK_READ_WAIT_SECONDS`; past it the read is refused as behind, never
answered stale.

With `BANK_READ_URL` set to a PostgreSQL hot standby, the read models, the
accounts' history and the event feed are read there, and only the target is
asked of the primary. A standby replays the primary's log in commit order, so
once its own settled head has reached the target, every event up to the
target is visible on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.persistence import EventStore
from eventsourcing.utils import Environment, strtobool

from bank.domain import (
    Account,
    AccountNotFoundError,
    BankError,
    normalise_account_id,
)
from bank.eventlog import EventLog
from bank.persistence import LogPosition, SqlFactory

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from uuid import UUID

    from sqlalchemy.engine import Engine

    from bank.application import BankApplication
    from bank.commands import AccountId

READ_WAIT_SECONDS = "READ_WAIT_SECONDS"
CATCH_UP_IN_REQUEST = "CATCH_UP_IN_REQUEST"
READ_URL = "READ_URL"
DEFAULT_READ_WAIT_SECONDS = 5.0
_FIRST_PAUSE_SECONDS = 0.0005
_LONGEST_PAUSE_SECONDS = 0.02


class ReadBehindError(BankError):
    """The store a read is served from has not reached the position in time."""

    code = "read_model_behind"

    def __init__(self, wanted: LogPosition | None, reached: LogPosition) -> None:
        if wanted is None:
            super().__init__(
                "Older transactions are still committing; the log's head is not "
                "yet known. Retry.",
                position=reached.token(),
            )
            return
        super().__init__(
            "The read side has not yet reached the position asked for; retry.",
            min_position=wanted.token(),
            position=reached.token(),
        )


class ReadModelRebuildingError(BankError):
    """The read models are being rebuilt from the log: no partial answers."""

    code = "read_model_rebuilding"

    def __init__(self) -> None:
        super().__init__("The read models are being rebuilt; retry shortly.")


@dataclass(frozen=True)
class ReadSettings:
    """How long a read may wait, whether it may catch up itself, and where it reads."""

    wait_seconds: float
    catch_up_in_request: bool
    read_url: str | None

    @classmethod
    def of(cls, environment: Mapping[str, str]) -> ReadSettings:
        """Read READ_WAIT_SECONDS, CATCH_UP_IN_REQUEST and READ_URL (BANK_...)."""
        wait = environment.get(READ_WAIT_SECONDS) or str(DEFAULT_READ_WAIT_SECONDS)
        read_url = environment.get(READ_URL) or None
        return cls(
            wait_seconds=max(0.0, float(wait)),
            # A standby is read-only: there, only a projector can catch up.
            catch_up_in_request=read_url is None
            and strtobool(environment.get(CATCH_UP_IN_REQUEST) or "y"),
            read_url=read_url,
        )


class ReadSide:
    """The store reads are served from, and the waiting that keeps them fresh."""

    def __init__(self, app: BankApplication) -> None:
        self.settings = ReadSettings.of(app.env)
        self.primary_log = app.event_log
        self._app = app
        self._factory: SqlFactory | None = None
        if self.settings.read_url is None:
            self.log = app.event_log
            self.events = app.events
            return
        # (The instance's env is the library's Environment, whatever the class says.)
        env = cast("Environment", app.env)
        self._factory = SqlFactory(_replica_env(env, self.settings.read_url))
        recorder = self._factory.application_recorder()
        self.log = EventLog(recorder, app.mapper)
        self.events = EventStore(app.mapper, recorder)

    @property
    def on_replica(self) -> bool:
        """Whether reads are served from a standby."""
        return self._factory is not None

    @property
    def primary_engine(self) -> Engine | None:
        """The SQLAlchemy engine of the application's own store, if SQL."""
        datastore = getattr(self._app.factory, "datastore", None)
        return cast("Engine | None", getattr(datastore, "engine", None))

    @property
    def engine(self) -> Engine | None:
        """The SQLAlchemy engine of the store reads are served from, if SQL."""
        if self._factory is not None:
            return cast("Engine", self._factory.datastore.engine)
        return self.primary_engine

    def deadline(self) -> float:
        """When a read arriving now must be answered by (monotonic time)."""
        return time.monotonic() + self.settings.wait_seconds

    def target(self, min_position: LogPosition | None, deadline: float) -> LogPosition:
        """The position a read must see: the client's, else the head at arrival."""
        if min_position is not None:
            return min_position
        # Every command answered before now has committed: once older
        # transactions still committing have ended, the head includes it.
        # Until then it may not, and the read would be stale: refused.
        if not self.primary_log.settle(max(0.0, deadline - time.monotonic())):
            raise ReadBehindError(None, self.primary_log.head())
        return self.primary_log.head()

    def wait_for_log(self, target: LogPosition, deadline: float) -> None:
        """Wait until the log read here has reached the target; else ReadBehindError."""
        wait_until(target, self.log.head, deadline)

    def history(
        self,
        account_id: AccountId,
        after_version: int | None,
        limit: int | None,
        min_position: LogPosition | None = None,
    ) -> list[Account.Event]:
        """An account's recorded events, oldest first, once the log has caught up."""
        # The primary's history is current for every answered command: it
        # waits only for a position named (which may lie beyond the log).
        if min_position is not None or self.on_replica:
            deadline = self.deadline()
            self.wait_for_log(self.target(min_position, deadline), deadline)
        if not self.on_replica:
            return self._app.get_history(account_id, after_version, limit)
        account_id = normalise_account_id(account_id)
        aggregate_id: UUID = Account.create_id(account_id)
        events = cast(
            "list[Account.Event]",
            list(self.events.get(aggregate_id, gt=after_version, limit=limit)),
        )
        if not events and not list(self.events.get(aggregate_id, limit=1)):
            raise AccountNotFoundError(account_id)
        return events

    def close(self) -> None:
        """Close the standby's connections (the primary's are the application's)."""
        if self._factory is not None:
            self._factory.close()


def wait_until(
    target: LogPosition, reached: Callable[[], LogPosition], deadline: float
) -> None:
    """Poll `reached` until it reaches the target; ReadBehindError at the deadline."""
    pause = _FIRST_PAUSE_SECONDS
    while (position := reached()) < target:
        if time.monotonic() >= deadline:
            raise ReadBehindError(target, position)
        time.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE_SECONDS)


def _replica_env(env: Environment, read_url: str) -> Environment:
    """The application's settings, pointed at the standby and making no tables."""
    settings: dict[str, Any] = dict(env)
    for key in (*env.create_keys("SQLALCHEMY_URL"), *env.create_keys("CREATE_TABLE")):
        settings.pop(key, None)
    settings["SQLALCHEMY_URL"] = read_url
    settings["CREATE_TABLE"] = "n"
    return Environment(env.name, settings)
