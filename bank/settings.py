"""The bank's settings: read from the environment, made safe, checked at start-up."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventsourcing.persistence import (
    InterfaceError,
    MapperDeserialisationError,
    OperationalError,
)

from bank import domain

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsourcing.utils import Environment

    from bank.eventlog import EventLog

logger = logging.getLogger(__name__)

CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"
SQLITE_BUSY_TIMEOUT_SECONDS = "15"
SNAPSHOT_INTERVAL = "SNAPSHOT_INTERVAL"
COMMAND_MAX_ATTEMPTS = "COMMAND_MAX_ATTEMPTS"
DEFAULT_CURRENCY = "DEFAULT_CURRENCY"
GROUP_COMMIT_MAX_SIZE = "GROUP_COMMIT_MAX_SIZE"


class ConfigurationError(Exception):
    """The bank's settings cannot work (a malformed or wrong cipher key)."""


@dataclass(frozen=True)
class Tuning:
    """Snapshots, retries, the currency of new accounts, and group commit."""

    snapshot_interval: int
    max_attempts: int
    default_currency: str
    group_commit_max_size: int

    @classmethod
    def of(cls, environment: Mapping[str, str]) -> Tuning:
        """Read SNAPSHOT_INTERVAL (0: never), COMMAND_MAX_ATTEMPTS, DEFAULT_CURRENCY.

        And GROUP_COMMIT_MAX_SIZE: how many concurrent commands may share one
        transaction (0: each commits on its own).
        """
        currency = environment.get(DEFAULT_CURRENCY) or domain.DEFAULT_CURRENCY
        try:
            domain.check_currency(currency)
        except domain.InvalidCommandError:
            raise ConfigurationError(
                f"BANK_DEFAULT_CURRENCY must be an ISO 4217 code such as USD, not "
                f"{currency!r}."
            ) from None
        return cls(
            snapshot_interval=int(environment.get(SNAPSHOT_INTERVAL) or "100"),
            max_attempts=max(1, int(environment.get(COMMAND_MAX_ATTEMPTS) or "30")),
            default_currency=currency,
            group_commit_max_size=max(
                0, int(environment.get(GROUP_COMMIT_MAX_SIZE) or "64")
            ),
        )


def make_safe(environment: Environment, explicit: Mapping[str, str]) -> Environment:
    """Let explicit settings win, drop an empty schema, and fill in safe defaults."""
    for key in explicit:
        # The library reads BANK_KEY before KEY: a BANK_KEY left in the
        # process environment must not beat a KEY given here explicitly.
        prefixed = environment.create_keys(key)[0]
        if prefixed not in explicit:
            environment.pop(prefixed, None)
    for key in environment.create_keys("SQLALCHEMY_SCHEMA"):
        # An empty schema name would qualify tables as ".bank_events".
        if environment.get(key) == "":
            del environment[key]
    for key in environment.create_keys("SQLALCHEMY_URL"):
        if key in environment:
            environment[key] = with_sqlite_busy_timeout(
                environment[key], SQLITE_BUSY_TIMEOUT_SECONDS
            )
            break
    cipher_key = environment.get("CIPHER_KEY")
    if cipher_key:
        check_cipher_key(cipher_key)
        if not environment.get("CIPHER_TOPIC"):
            environment["CIPHER_TOPIC"] = CIPHER_TOPIC
    return environment


def check_cipher_key(cipher_key: str) -> None:
    """Refuse a cipher key that is not base64 of 16, 24 or 32 bytes."""
    try:
        size = len(base64.b64decode(cipher_key, validate=True))
    except ValueError:
        size = 0
    if size not in (16, 24, 32):
        raise ConfigurationError(
            "BANK_CIPHER_KEY must be base64 of 16, 24 or 32 random bytes; "
            "`bank keygen` prints one."
        )


def with_sqlite_busy_timeout(url: str, seconds: str) -> str:
    """Add a busy timeout to a SQLite file URL so writers wait, not fail."""
    if not url.startswith("sqlite") or "memory" in url or "timeout=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}timeout={seconds}"


def check_stored_events_are_readable(log: EventLog) -> None:
    """Refuse to start when the latest stored event can't be read with this key."""
    # A wrong or missing cipher key must stop the bank at start-up, not
    # surface later as failures in the middle of serving requests.
    try:
        latest = log.latest()
    except (OperationalError, InterfaceError):
        # Unreachable now: health checks report it, and nothing can be
        # misread before it is reachable again.
        logger.warning("database unreachable at start-up", exc_info=True)
        return
    if latest is None:
        return
    try:
        log.mapper.to_domain_event(latest)
    except MapperDeserialisationError as error:
        encrypted = "with" if log.mapper.cipher else "without"
        raise ConfigurationError(
            f"The stored events cannot be read {encrypted} encryption: is "
            f"BANK_CIPHER_KEY missing or wrong? ({error})"
        ) from None
