"""Idempotency keys: a retried command is answered from its first execution.

The first accepted execution of a key records an `IdempotencyRecord` aggregate
in the same `save` as the command's account events. Its id is derived from the
key, so the event store's unique constraint lets exactly one execution of a key
commit, across threads and processes; every later one replays its results.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from bank.domain import BankError, InvalidCommandError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bank.commands import CommandResult

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
_NAMESPACE = uuid5(NAMESPACE_URL, "urn:eventsourced-bank:idempotency-key")


class IdempotencyKeyReusedError(BankError):
    """The key was first used for a different command or different data."""

    code = "idempotency_key_reused"


class IdempotencyRecord(Aggregate):
    """The outcome of the first accepted execution of an idempotency key."""

    @staticmethod
    def create_id(key: str) -> UUID:
        """Derive the record's id from the key."""
        return uuid5(_NAMESPACE, key)

    @event("Recorded")
    def __init__(self, key: str, fingerprint: str, results: list[dict[str, Any]]):
        self.key = key
        self.fingerprint = fingerprint
        self.results = results


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key together with a fingerprint of what it asked for."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, commands: Sequence[object]) -> IdempotencyKey:
        """Check the key and fingerprint the commands it is sent with."""
        if not isinstance(key, str) or not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
            raise InvalidCommandError(
                "An idempotency key is 1 to 255 visible ASCII characters.",
                field="idempotency_key",
            )
        described = [
            [type(command).__name__, _canonical(asdict(command))]  # type: ignore[call-overload]
            for command in commands
        ]
        text = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return cls(key, hashlib.sha256(text.encode()).hexdigest())

    @property
    def record_id(self) -> UUID:
        """The id of the record this key's first execution writes."""
        return IdempotencyRecord.create_id(self.key)

    def record(self, results: Sequence[CommandResult]) -> IdempotencyRecord:
        """The record of this key's first, accepted, execution."""
        return IdempotencyRecord(
            self.key, self.fingerprint, [result.as_record() for result in results]
        )

    def check_matches(self, record: IdempotencyRecord) -> None:
        """Refuse a key that was first used for something else."""
        if record.fingerprint != self.fingerprint:
            raise IdempotencyKeyReusedError(
                "This idempotency key was already used for a different request.",
                idempotency_key=self.key,
            )


def _canonical(fields: dict[str, Any]) -> dict[str, Any]:
    # 123 and "123" name the same account, so they must fingerprint alike.
    return {
        name: str(value) if type(value) is int else value
        for name, value in fields.items()
    }
