"""The Account aggregate: its events, its rules and the errors it raises."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

import iso4217
from eventsourcing.domain import Aggregate, datetime_now_with_tzinfo, event

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MAX_AMOUNT_IN_CENTS = 10**15
MAX_EMAIL_LENGTH = 254
MAX_REFERENCE_LENGTH = 140
DEFAULT_CURRENCY = "USD"
MAX_HOLD_SECONDS = 30 * 24 * 60 * 60
MAX_METADATA_KEYS = 16
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
MAX_METADATA_VALUE_LENGTH = 500
ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# Transfer ids are made by the bank (UUIDs), so one looks like nothing else.
TRANSFER_ID_PATTERN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
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
    """The debit would take the available amount below zero."""

    code = "insufficient_funds"

    def __init__(
        self, account: Account, amount_in_cents: int, available_in_cents: int
    ) -> None:
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


class AccountHasPendingTransfersError(BankError):
    """Only an account without pending holds, in either direction, can be closed."""

    code = "account_has_pending_transfers"

    def __init__(self, account_id: str, transfer_ids: list[str]) -> None:
        super().__init__(
            f"Account {account_id} has {len(transfer_ids)} pending transfer(s); post "
            "or void them first.",
            account_id=account_id,
            transfer_ids=transfer_ids,
        )


class CurrencyMismatchError(BankError):
    """Money can only move between accounts of one currency."""

    code = "currency_mismatch"

    def __init__(self, source: Account, target: Account) -> None:
        super().__init__(
            f"Account {source.account_id} holds {source.currency} and account "
            f"{target.account_id} holds {target.currency}; a transfer needs one "
            "currency.",
            from_account_id=source.account_id,
            from_currency=source.currency,
            to_account_id=target.account_id,
            to_currency=target.currency,
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


def check_currency(currency: str) -> None:
    """Refuse anything but an ISO 4217 alphabetic code, such as USD or JPY."""
    try:
        iso4217.Currency(currency)
    except (ValueError, TypeError):
        raise InvalidCommandError(
            "A currency is an ISO 4217 alphabetic code, such as USD, EUR or JPY.",
            field="currency",
        ) from None


def minor_unit_digits(currency: str) -> int:
    """How many digits of an amount are the minor unit: USD 2, JPY 0, BHD 3."""
    return iso4217.Currency(currency).exponent or 0


def check_metadata(metadata: Mapping[str, str]) -> None:
    """Refuse metadata that is not a few short string keys with short string values."""
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise InvalidCommandError(
            f"Metadata is an object of at most {MAX_METADATA_KEYS} keys.",
            field="metadata",
        )
    for key, value in metadata.items():
        if not (isinstance(key, str) and METADATA_KEY_PATTERN.fullmatch(key)):
            raise InvalidCommandError(
                "A metadata key is 1 to 40 letters, digits or any of '_.-'.",
                field="metadata",
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_LENGTH:
            raise InvalidCommandError(
                f"A metadata value is text of at most {MAX_METADATA_VALUE_LENGTH} "
                "characters.",
                field="metadata",
            )


def check_timeout(timeout_seconds: int) -> None:
    """Refuse a hold's timeout that is not 1 second to 30 days."""
    if type(timeout_seconds) is not int or not 1 <= timeout_seconds <= MAX_HOLD_SECONDS:
        raise InvalidCommandError(
            f"A timeout is a whole number of seconds from 1 to {MAX_HOLD_SECONDS:,}.",
            field="timeout_seconds",
        )


def expiry(now: datetime, timeout_seconds: int | None) -> datetime | None:
    """When a hold placed now lapses (None: it does not)."""
    if timeout_seconds is None:
        return None
    check_timeout(timeout_seconds)
    return now + timedelta(seconds=timeout_seconds)


class _MetadataSinceVersion2:
    """For events that gained metadata in their version 2: older ones had none."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Recorded before metadata existed: none."""
        state["metadata"] = {}


class _HoldEnded(Aggregate.Event):
    """The end of a hold: what it was for, with whom, how much, which way."""

    transfer_id: str
    counterparty_account_id: str
    amount_in_cents: int
    is_debit: bool


class Account(Aggregate):
    """A bank account whose state is the sum of its recorded events.

    `balance_in_cents` is the posted balance; `holds` are the pending
    transfers that reserve money (debits) or will bring it (credits), by
    transfer id. A hold past its expiry reserves nothing, whether or not its
    `HoldExpired` event has been recorded yet.
    """

    # Version 2 added the currency and the holds to snapshots.
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Snapshots taken before currencies and holds existed: USD, none held."""
        state["currency"] = DEFAULT_CURRENCY
        state["holds"] = {}

    class Opened(Aggregate.Created):
        """The account was opened for an owner, in a currency (version 2 added it)."""

        account_id: str
        owner_email: str
        currency: str
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Accounts opened before currencies existed hold US dollars."""
            state["currency"] = DEFAULT_CURRENCY

    class Deposited(Aggregate.Event):
        """Money was paid in, with a reference (version 2) and metadata (3)."""

        amount_in_cents: int
        reference: str
        metadata: dict[str, str]
        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Deposits recorded before references existed had none."""
            state["reference"] = ""

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """Deposits recorded before metadata existed had none."""
            state["metadata"] = {}

    class Withdrawn(_MetadataSinceVersion2, Aggregate.Event):
        """Money was paid out (version 2 added metadata)."""

        amount_in_cents: int
        metadata: dict[str, str]

    class TransferSent(_MetadataSinceVersion2, Aggregate.Event):
        """Money left for another account; the other half is TransferReceived."""

        transfer_id: str
        to_account_id: str
        amount_in_cents: int
        metadata: dict[str, str]

    class TransferReceived(_MetadataSinceVersion2, Aggregate.Event):
        """Money arrived from another account; the other half is TransferSent."""

        transfer_id: str
        from_account_id: str
        amount_in_cents: int
        metadata: dict[str, str]

    class HoldPlaced(Aggregate.Event):
        """A pending transfer reserves money here (debit) or will bring it (credit)."""

        transfer_id: str
        counterparty_account_id: str
        amount_in_cents: int
        is_debit: bool
        expires_at: datetime | None
        metadata: dict[str, str]

    class HoldPosted(_HoldEnded):
        """A hold became a transfer of this amount (at most what was held)."""

    class HoldVoided(_HoldEnded):
        """A hold was released without moving any money (the amount it held)."""

    class HoldExpired(_HoldEnded):
        """A hold lapsed at its expiry without moving any money (the amount held)."""

    class OverdraftLimitSet(Aggregate.Event):
        """How far below zero the balance may go was changed."""

        overdraft_limit_in_cents: int

    class Closed(Aggregate.Event):
        """The account was closed for good."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Account:
        """A private copy to run a command on, made in a few microseconds.

        Every attribute of an account but its holds is an immutable value (str,
        int, bool, datetime, UUID), and a hold is replaced, never changed in
        place; so only the list of pending events and the dict of holds need
        copies of their own. A generic deep copy would cost more than the rest
        of a deposit.
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__["_pending_events"] = list(self.pending_events)
        clone.__dict__["holds"] = dict(self.holds)
        return clone

    @staticmethod
    @functools.lru_cache(maxsize=65536)
    def create_id(account_id: str) -> UUID:
        """Derive the aggregate id from the public account id (a cached uuid5)."""
        return uuid5(ACCOUNT_ID_NAMESPACE, account_id)

    @classmethod
    def open(
        cls, owner_email: str, account_id: str | int, currency: str = DEFAULT_CURRENCY
    ) -> Account:
        """Open a new account, refusing a malformed email, id or currency."""
        check_email(owner_email)
        check_currency(currency)
        return cls(
            account_id=normalise_account_id(account_id),
            owner_email=owner_email,
            currency=currency,
        )

    @event(Opened)
    def __init__(self, account_id: str, owner_email: str, currency: str) -> None:
        self.account_id = account_id
        self.owner_email = owner_email
        self.currency = currency
        self.balance_in_cents = 0
        self.overdraft_limit_in_cents = 0
        self.is_closed = False
        self.holds: dict[str, dict[str, Any]] = {}

    def deposit(
        self,
        amount_in_cents: int,
        reference: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Pay money in, optionally with the payer's reference and metadata."""
        check_amount(amount_in_cents)
        check_reference(reference)
        metadata = _checked_metadata(metadata)
        self.check_is_open()
        self._deposited(amount_in_cents, reference, metadata)

    def withdraw(
        self,
        amount_in_cents: int,
        metadata: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
    ) -> None:
        """Pay money out, at most what is available."""
        check_amount(amount_in_cents)
        metadata = _checked_metadata(metadata)
        self.check_is_open()
        self.check_can_debit(amount_in_cents, now or datetime_now_with_tzinfo())
        self._withdrawn(amount_in_cents, metadata)

    def send_transfer(
        self,
        transfer_id: str,
        to_account_id: str,
        amount_in_cents: int,
        metadata: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
    ) -> None:
        """Debit this account as the first half of a transfer."""
        check_amount(amount_in_cents)
        metadata = _checked_metadata(metadata)
        self.check_is_open()
        self.check_not_itself(to_account_id)
        self.check_can_debit(amount_in_cents, now or datetime_now_with_tzinfo())
        self._transfer_sent(transfer_id, to_account_id, amount_in_cents, metadata)

    def receive_transfer(
        self,
        transfer_id: str,
        from_account_id: str,
        amount_in_cents: int,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Credit this account as the second half of a transfer."""
        check_amount(amount_in_cents)
        metadata = _checked_metadata(metadata)
        self.check_is_open()
        self._transfer_received(transfer_id, from_account_id, amount_in_cents, metadata)

    def place_hold(
        self,
        transfer_id: str,
        counterparty_account_id: str,
        amount_in_cents: int,
        *,
        is_debit: bool,
        expires_at: datetime | None,
        metadata: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Reserve money for a pending transfer (a debit), or expect it (a credit)."""
        check_amount(amount_in_cents)
        metadata = _checked_metadata(metadata)
        self.check_is_open()
        self.check_not_itself(counterparty_account_id)
        if is_debit:
            self.check_can_debit(amount_in_cents, now or datetime_now_with_tzinfo())
        self._hold_placed(
            transfer_id,
            counterparty_account_id,
            amount_in_cents,
            is_debit,
            expires_at,
            metadata,
        )

    def post_hold(self, transfer_id: str, amount_in_cents: int) -> None:
        """Move this much of a hold's money (at most what is held), release the rest."""
        hold = self.holds[transfer_id]
        check_amount(amount_in_cents)
        self._hold_posted(
            transfer_id,
            hold["counterparty_account_id"],
            amount_in_cents,
            hold["is_debit"],
        )

    def void_hold(self, transfer_id: str) -> None:
        """Release a hold without moving money."""
        self._hold_voided(*self._whole_hold(transfer_id))

    def expire_hold(self, transfer_id: str) -> None:
        """Record that a hold lapsed at its expiry."""
        self._hold_expired(*self._whole_hold(transfer_id))

    def _whole_hold(self, transfer_id: str) -> tuple[str, str, int, bool]:
        """A hold's fields as an event that ends all of it records them."""
        hold = self.holds[transfer_id]
        return (
            transfer_id,
            hold["counterparty_account_id"],
            hold["amount_in_cents"],
            hold["is_debit"],
        )

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

    def close(self, *, now: datetime | None = None) -> None:
        """Close the account; only an empty account with no pending holds can close."""
        self.check_is_open()
        pending = self.pending_transfer_ids(now or datetime_now_with_tzinfo())
        if pending:
            raise AccountHasPendingTransfersError(self.account_id, pending)
        if self.balance_in_cents != 0:
            raise AccountNotEmptyError(self.account_id, self.balance_in_cents)
        self._closed()

    def check_is_open(self) -> None:
        """Refuse any change to a closed account."""
        if self.is_closed:
            raise AccountClosedError(self.account_id)

    def check_not_itself(self, counterparty_account_id: str) -> None:
        """Refuse a transfer from an account to itself."""
        if counterparty_account_id == self.account_id:
            raise InvalidCommandError(
                "A transfer needs two different accounts.", field="to_account_id"
            )

    def check_can_debit(self, amount_in_cents: int, now: datetime) -> None:
        """Refuse a debit of more than is available now."""
        available_in_cents = self.available_at(now)
        if amount_in_cents > available_in_cents:
            raise InsufficientFundsError(self, amount_in_cents, available_in_cents)

    def check_same_currency(self, other: Account) -> None:
        """Refuse to move money to or from an account of another currency."""
        if other.currency != self.currency:
            raise CurrencyMismatchError(self, other)

    def available_at(self, now: datetime) -> int:
        """What may be debited now: balance plus overdraft limit minus debit holds."""
        return (
            self.balance_in_cents
            + self.overdraft_limit_in_cents
            - self.pending_at(now, is_debit=True)
        )

    def pending_at(self, now: datetime, *, is_debit: bool) -> int:
        """The money held now in one direction (lapsed holds hold nothing)."""
        return sum(
            hold["amount_in_cents"]
            for hold in self.holds.values()
            if hold["is_debit"] is is_debit and not _lapsed(hold, now)
        )

    def pending_transfer_ids(self, now: datetime) -> list[str]:
        """The transfers that hold money here now, either way."""
        return [tid for tid, hold in self.holds.items() if not _lapsed(hold, now)]

    def lapsed_transfer_ids(self, now: datetime) -> list[str]:
        """The transfers whose holds here have lapsed without HoldExpired yet."""
        return [tid for tid, hold in self.holds.items() if _lapsed(hold, now)]

    # The @event methods below only apply already-decided facts: they run
    # again on every replay, so they hold no rules.

    @event(Deposited)
    def _deposited(
        self, amount_in_cents: int, reference: str, metadata: dict[str, str]
    ) -> None:
        self.balance_in_cents += amount_in_cents

    @event(Withdrawn)
    def _withdrawn(self, amount_in_cents: int, metadata: dict[str, str]) -> None:
        self.balance_in_cents -= amount_in_cents

    @event(TransferSent)
    def _transfer_sent(
        self,
        transfer_id: str,
        to_account_id: str,
        amount_in_cents: int,
        metadata: dict[str, str],
    ) -> None:
        self.balance_in_cents -= amount_in_cents

    @event(TransferReceived)
    def _transfer_received(
        self,
        transfer_id: str,
        from_account_id: str,
        amount_in_cents: int,
        metadata: dict[str, str],
    ) -> None:
        self.balance_in_cents += amount_in_cents

    @event(HoldPlaced)
    def _hold_placed(
        self,
        transfer_id: str,
        counterparty_account_id: str,
        amount_in_cents: int,
        is_debit: bool,
        expires_at: datetime | None,
        metadata: dict[str, str],
    ) -> None:
        self.holds = {
            **self.holds,
            transfer_id: {
                "counterparty_account_id": counterparty_account_id,
                "amount_in_cents": amount_in_cents,
                "is_debit": is_debit,
                "expires_at": expires_at,
            },
        }

    @event(HoldPosted)
    def _hold_posted(
        self,
        transfer_id: str,
        counterparty_account_id: str,
        amount_in_cents: int,
        is_debit: bool,
    ) -> None:
        self._release(transfer_id)
        self.balance_in_cents += -amount_in_cents if is_debit else amount_in_cents

    @event(HoldVoided)
    def _hold_voided(
        self,
        transfer_id: str,
        counterparty_account_id: str,
        amount_in_cents: int,
        is_debit: bool,
    ) -> None:
        self._release(transfer_id)

    @event(HoldExpired)
    def _hold_expired(
        self,
        transfer_id: str,
        counterparty_account_id: str,
        amount_in_cents: int,
        is_debit: bool,
    ) -> None:
        self._release(transfer_id)

    def _release(self, transfer_id: str) -> None:
        # A new dict, never a change in place: cached copies share the old one.
        self.holds = {
            other: hold for other, hold in self.holds.items() if other != transfer_id
        }

    @event(OverdraftLimitSet)
    def _overdraft_limit_set(self, overdraft_limit_in_cents: int) -> None:
        self.overdraft_limit_in_cents = overdraft_limit_in_cents

    @event(Closed)
    def _closed(self) -> None:
        self.is_closed = True


def _lapsed(hold: Mapping[str, Any], now: datetime) -> bool:
    expires_at = hold["expires_at"]
    return expires_at is not None and expires_at <= now


def _checked_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    check_metadata(metadata)
    return dict(metadata)


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
        Account.HoldPlaced,
        Account.HoldPosted,
        Account.HoldVoided,
        Account.HoldExpired,
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
