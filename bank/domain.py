"""The Account aggregate: its events, its rules and the errors it raises."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_AMOUNT_IN_CENTS = 10**15
MAX_EMAIL_LENGTH = 254
MAX_REFERENCE_LENGTH = 140
ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# Public account ids map onto aggregate UUIDs in this namespace (uuid5), so a
# client-chosen id names exactly one event stream, in every process.
ACCOUNT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:eventsourced-bank:account")


# Bookkeeping every event carries; the rest are the event's own fields.
EVENT_ENVELOPE = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
)


class BankError(Exception):
    """A refused command: carries a stable `code` and optional details."""

    code: ClassVar[str] = "bank_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        # Which command of a batch was refused, when it ran in one.
        self.command_index: int | None = None


class InvalidCommandError(BankError):
    """A command's arguments break a rule on their own (amount, email, id)."""

    code = "validation_error"


class AccountNotFoundError(BankError):
    """No account has this id (or had it, at a given moment)."""

    code = "account_not_found"

    def __init__(self, account_id: str, at: datetime | None = None) -> None:
        message = (
            f"There is no account {account_id}."
            if at is None
            else f"There was no account {account_id} at {at.isoformat()}."
        )
        super().__init__(message, account_id=account_id)


class AccountAlreadyExistsError(BankError):
    """An account with this id has already been opened."""

    code = "account_already_exists"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"Account {account_id} already exists.", account_id=account_id)


class InsufficientFundsError(BankError):
    """The debit would take the balance below the overdraft limit."""

    code = "insufficient_funds"

    def __init__(self, account: Account, amount_in_cents: int) -> None:
        available_in_cents = account.available_in_cents
        super().__init__(
            f"Account {account.account_id} has {available_in_cents} cents available; "
            f"{amount_in_cents} were asked for.",
            account_id=account.account_id,
            balance_in_cents=account.balance_in_cents,
            overdraft_limit_in_cents=account.overdraft_limit_in_cents,
            available_in_cents=available_in_cents,
            amount_in_cents=amount_in_cents,
        )


class AccountClosedError(BankError):
    """The account is closed and accepts no further changes."""

    code = "account_closed"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"Account {account_id} is closed.", account_id=account_id)


class AccountNotEmptyError(BankError):
    """Only an account whose balance is exactly zero can be closed."""

    code = "account_not_empty"

    def __init__(self, account_id: str, balance_in_cents: int) -> None:
        super().__init__(
            f"Account {account_id} still holds {balance_in_cents} cents; "
            "only an empty account can be closed.",
            account_id=account_id,
            balance_in_cents=balance_in_cents,
        )


class ConcurrencyError(BankError):
    """Other writers kept winning the race for an account; retry later."""

    code = "concurrency_conflict"

    def __init__(self, attempts: int) -> None:
        super().__init__(
            "The accounts kept changing under this command; gave up after "
            f"{attempts} attempts. Retry later.",
            attempts=attempts,
        )


def in_utc(moment: datetime) -> datetime:
    """A zoned moment in UTC; past the years 1-9999 there, the first or last one."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # Before every event or after every event, which is all a query asks.
        extreme = datetime.min if moment.year == 1 else datetime.max
        return extreme.replace(tzinfo=UTC)


def normalise_account_id(account_id: str | int) -> str:
    """Return the public account id as a string, or raise InvalidCommandError."""
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        account_id = str(account_id)
    if not isinstance(account_id, str) or not ACCOUNT_ID_PATTERN.fullmatch(account_id):
        raise InvalidCommandError(
            "An account id is 1 to 64 letters, digits or any of '-_.:'.",
            field="account_id",
            value=repr(account_id)[:100],
        )
    return account_id


def check_amount(amount_in_cents: int, field: str = "amount_in_cents") -> None:
    """Refuse anything but a whole, positive number of cents up to 10**15."""
    if type(amount_in_cents) is not int:
        raise InvalidCommandError(
            "An amount is a whole number of cents (an integer).", field=field
        )
    if not 0 < amount_in_cents <= MAX_AMOUNT_IN_CENTS:
        raise InvalidCommandError(
            f"An amount is between 1 and {MAX_AMOUNT_IN_CENTS} cents.", field=field
        )


def check_email(email: str) -> None:
    """Refuse an owner email that does not look like an address."""
    if (
        not isinstance(email, str)
        or len(email) > MAX_EMAIL_LENGTH
        or email.count("@") != 1
        or any(character.isspace() for character in email)
        or not email.isprintable()
        or email.startswith("@")
        or email.endswith("@")
    ):
        raise InvalidCommandError(
            "The owner email must look like name@example.com (one '@', no "
            f"spaces or control characters, at most {MAX_EMAIL_LENGTH} characters).",
            field="account_owner_email",
        )


def check_reference(reference: str) -> None:
    """Refuse a payment reference that is not short, printable text."""
    if (
        not isinstance(reference, str)
        or len(reference) > MAX_REFERENCE_LENGTH
        or not reference.isprintable()
    ):
        raise InvalidCommandError(
            f"A reference is printable text of at most {MAX_REFERENCE_LENGTH} "
            "characters.",
            field="reference",
        )


class Account(Aggregate):
    """A bank account whose state is the sum of its recorded events."""

    class Opened(Aggregate.Created):
        """The account was opened for an owner."""

        account_id: str
        owner_email: str

    class Deposited(Aggregate.Event):
        """Money was paid in, with the payer's reference (version 2 added it)."""

        amount_in_cents: int
        reference: str
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Deposits recorded before references existed had none."""
            state["reference"] = ""

    class Withdrawn(Aggregate.Event):
        """Money was paid out."""

        amount_in_cents: int

    class TransferSent(Aggregate.Event):
        """Money left for another account; the other half is TransferReceived."""

        transfer_id: str
        to_account_id: str
        amount_in_cents: int

    class TransferReceived(Aggregate.Event):
        """Money arrived from another account; the other half is TransferSent."""

        transfer_id: str
        from_account_id: str
        amount_in_cents: int

    class OverdraftLimitSet(Aggregate.Event):
        """How far below zero the balance may go was changed."""

        overdraft_limit_in_cents: int

    class Closed(Aggregate.Event):
        """The account was closed for good."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Account:
        """A private copy to run a command on, made in a few microseconds.

        Every attribute of an account is an immutable value (str, int, bool,
        datetime, UUID), so only the list of pending events needs a copy of
        its own; a generic deep copy would cost more than the rest of a deposit.
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__["_pending_events"] = list(self.pending_events)
        return clone

    @staticmethod
    @functools.lru_cache(maxsize=65536)
    def create_id(account_id: str) -> UUID:
        """Derive the aggregate id from the public account id (a cached uuid5)."""
        return uuid5(ACCOUNT_ID_NAMESPACE, account_id)

    @classmethod
    def open(cls, owner_email: str, account_id: str | int) -> Account:
        """Open a new account, refusing a malformed email or id."""
        check_email(owner_email)
        return cls(account_id=normalise_account_id(account_id), owner_email=owner_email)

    @event(Opened)
    def __init__(self, account_id: str, owner_email: str) -> None:
        self.account_id = account_id
        self.owner_email = owner_email
        self.balance_in_cents = 0
        self.overdraft_limit_in_cents = 0
        self.is_closed = False

    def deposit(self, amount_in_cents: int, reference: str = "") -> None:
        """Pay money in, optionally with the payer's reference."""
        check_amount(amount_in_cents)
        check_reference(reference)
        self.check_is_open()
        self._deposited(amount_in_cents, reference)

    def withdraw(self, amount_in_cents: int) -> None:
        """Pay money out, down to the overdraft limit at most."""
        check_amount(amount_in_cents)
        self.check_is_open()
        self.check_can_debit(amount_in_cents)
        self._withdrawn(amount_in_cents)

    def send_transfer(
        self, transfer_id: str, to_account_id: str, amount_in_cents: int
    ) -> None:
        """Debit this account as the first half of a transfer."""
        check_amount(amount_in_cents)
        self.check_is_open()
        if to_account_id == self.account_id:
            raise InvalidCommandError(
                "A transfer needs two different accounts.", field="to_account_id"
            )
        self.check_can_debit(amount_in_cents)
        self._transfer_sent(transfer_id, to_account_id, amount_in_cents)

    def receive_transfer(
        self, transfer_id: str, from_account_id: str, amount_in_cents: int
    ) -> None:
        """Credit this account as the second half of a transfer."""
        check_amount(amount_in_cents)
        self.check_is_open()
        self._transfer_received(transfer_id, from_account_id, amount_in_cents)

    def set_overdraft_limit(self, overdraft_limit_in_cents: int) -> None:
        """Let the balance go as far as this many cents below zero."""
        if type(overdraft_limit_in_cents) is not int or not (
            0 <= overdraft_limit_in_cents <= MAX_AMOUNT_IN_CENTS
        ):
            raise InvalidCommandError(
                f"An overdraft limit is a whole number of cents from 0 to "
                f"{MAX_AMOUNT_IN_CENTS}.",
                field="overdraft_limit_in_cents",
            )
        self.check_is_open()
        self._overdraft_limit_set(overdraft_limit_in_cents)

    def close(self) -> None:
        """Close the account; only an empty account can be closed."""
        self.check_is_open()
        if self.balance_in_cents != 0:
            raise AccountNotEmptyError(self.account_id, self.balance_in_cents)
        self._closed()

    def check_is_open(self) -> None:
        """Refuse any change to a closed account."""
        if self.is_closed:
            raise AccountClosedError(self.account_id)

    def check_can_debit(self, amount_in_cents: int) -> None:
        """Refuse a debit that would go below the overdraft limit."""
        if amount_in_cents > self.available_in_cents:
            raise InsufficientFundsError(self, amount_in_cents)

    @property
    def available_in_cents(self) -> int:
        """What may still be debited: the balance plus the overdraft limit."""
        return self.balance_in_cents + self.overdraft_limit_in_cents

    # The @event methods below only apply already-decided facts: they run
    # again on every replay, so they hold no rules.

    @event(Deposited)
    def _deposited(self, amount_in_cents: int, reference: str) -> None:
        self.balance_in_cents += amount_in_cents

    @event(Withdrawn)
    def _withdrawn(self, amount_in_cents: int) -> None:
        self.balance_in_cents -= amount_in_cents

    @event(TransferSent)
    def _transfer_sent(
        self, transfer_id: str, to_account_id: str, amount_in_cents: int
    ) -> None:
        self.balance_in_cents -= amount_in_cents

    @event(TransferReceived)
    def _transfer_received(
        self, transfer_id: str, from_account_id: str, amount_in_cents: int
    ) -> None:
        self.balance_in_cents += amount_in_cents

    @event(OverdraftLimitSet)
    def _overdraft_limit_set(self, overdraft_limit_in_cents: int) -> None:
        self.overdraft_limit_in_cents = overdraft_limit_in_cents

    @event(Closed)
    def _closed(self) -> None:
        self.is_closed = True


# The domain's list of its own facts, by name. Every reader of the log (read
# models, audit, replay) takes it from here; a test checks each covers it all.
ACCOUNT_EVENT_TYPES: dict[str, type[Account.Event]] = {
    event_class.__name__: event_class
    for event_class in (
        Account.Opened,
        Account.Deposited,
        Account.Withdrawn,
        Account.TransferSent,
        Account.TransferReceived,
        Account.OverdraftLimitSet,
        Account.Closed,
    )
}


def event_fields(domain_event: Account.Event) -> dict[str, Any]:
    """An event's own fields, without the envelope every event carries."""
    return {
        key: value
        for key, value in domain_event.__dict__.items()
        if key not in EVENT_ENVELOPE
    }


def project_account(
    account: Account | None, domain_events: Iterable[Account.Event]
) -> Account | None:
    """Apply events in order (the library's projector, minus per-event type checks)."""
    for domain_event in domain_events:
        account = domain_event.mutate(account)
    return account
