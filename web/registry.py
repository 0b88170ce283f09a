"""The command registry: API command name -> data model -> application command.

A request body is looked up here by name, validated by its pydantic model,
turned into the application's command, run by `BankApplication.execute`, and
its result shaped into the JSON answer. Adding a command takes one domain
method, one application command and one entry in `COMMANDS`; the JSON API,
its validation and its OpenAPI description all follow from the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Self, TypeVar

import iso4217
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from bank import BankError
from bank.commands import (
    CloseAccount,
    Deposit,
    OpenAccount,
    PostTransfer,
    ReverseTransfer,
    SetOverdraftLimit,
    Transfer,
    VoidTransfer,
    Withdraw,
    check_batch_size,
)
from bank.domain import (
    ACCOUNT_ID_PATTERN,
    MAX_AMOUNT_IN_CENTS,
    MAX_EMAIL_LENGTH,
    MAX_HOLD_SECONDS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    MAX_REFERENCE_LENGTH,
    METADATA_KEY_PATTERN,
    TRANSFER_ID_PATTERN,
    InvalidCommandError,
    check_currency,
    check_email,
    check_metadata,
)
from bank.transfers import POSTED
from web.errors import ApiError, validation_details
from web.metrics import command_label, observed
from web.reads import (
    CURRENCY_PATTERN,
    POSITION_PATTERN,
    TRANSFER_STATUSES,
    account_fields,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from bank import BankApplication
    from bank.commands import AccountState, Command, CommandResult

_MAX_CENTS_DIGITS = len(str(MAX_AMOUNT_IN_CENTS))
# Digits whose value is 1..10**15 (an amount) or 0..10**15 (a limit), leading
# zeros allowed: exactly what _whole_cents and the Field bounds accept.
_AMOUNT_DIGITS = (
    f"^0*(?:[1-9][0-9]{{0,{_MAX_CENTS_DIGITS - 2}}}|{MAX_AMOUNT_IN_CENTS})$"
)
_LIMIT_DIGITS = f"^0*(?:[0-9]{{1,{_MAX_CENTS_DIGITS - 1}}}|{MAX_AMOUNT_IN_CENTS})$"
# The integers whose decimal string is an account id (at most 64 characters).
_ACCOUNT_ID_INTEGERS = {"minimum": 1 - 10**63, "maximum": 10**64 - 1}
# The codes bank.domain.check_currency accepts: the ISO 4217 list it checks against.
CURRENCIES: list[JsonValue] = sorted(currency.value for currency in iso4217.Currency)
T = TypeVar("T")


def _whole_cents(value: Any) -> Any:
    """Accept a JSON integer or a string of digits; refuse floats and booleans."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "whole_cents",
            "must be a whole number of cents: a JSON integer or a string of digits",
        )
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise PydanticCustomError(
                "whole_cents", "must be a whole number of cents: digits only"
            )
        # Leading zeros are dropped first: int() of a long string is slow, or refused.
        digits = value.lstrip("0") or "0"
        if len(digits) > _MAX_CENTS_DIGITS:
            raise PydanticCustomError(
                "whole_cents", f"must be at most {MAX_AMOUNT_IN_CENTS} cents"
            )
        return int(digits)
    return value


@cache
def printable_class(excluded: str = "") -> str:
    """A regex class of the characters str.isprintable() accepts, but `excluded`."""
    # The domain's rules are Python's own idea of printable (this Python's
    # Unicode database), which no portable regex escape names: so the class
    # spells out each range, as the characters themselves.
    ranges: list[tuple[int, int]] = []
    for code in range(0x110000):
        character = chr(code)
        if not character.isprintable() or character in excluded:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    spelled = (
        _class_character(first)
        + ("" if first == last else "-" + _class_character(last))
        for first, last in ranges
    )
    return "[" + "".join(spelled) + "]"


def _class_character(code: int) -> str:
    character = chr(code)
    return "\\" + character if character in "\\]^-[" else character


def email_json_schema() -> dict[str, Any]:
    """The exact JSON schema of an owner email (see bank.domain.check_email)."""
    # One '@', neither first nor last, and no space or other non-printable.
    part = printable_class(excluded=" @") + "+"
    return {
        "type": "string",
        "maxLength": MAX_EMAIL_LENGTH,
        "pattern": f"^{part}@{part}$",
        "description": "name@domain: one '@', printable, no spaces.",
    }


def _email_schema(schema: dict[str, Any]) -> None:
    schema.clear()
    schema.update(email_json_schema())


def _reference_schema(schema: dict[str, Any]) -> None:
    schema["pattern"] = f"^{printable_class()}*$"


def _account_id(value: Any) -> Any:
    """Accept an account id as a string or an integer (its decimal string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise PydanticCustomError(
            "account_id", "an account id is a string or an integer"
        )
    return value


def _domain_rule(check: Callable[[Any], object]) -> AfterValidator:
    """Apply one of the domain's own checks, its refusal reported as a field error."""

    def validate(value: T) -> T:
        try:
            check(value)
        except InvalidCommandError as error:
            raise PydanticCustomError(
                "domain_rule", "{reason}", {"reason": error.message}
            ) from None
        return value

    return AfterValidator(validate)


AmountInCents = Annotated[
    int,
    BeforeValidator(_whole_cents),
    Field(gt=0, le=MAX_AMOUNT_IN_CENTS, description="Whole cents, never a float."),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_IN_CENTS},
                {"type": "string", "pattern": _AMOUNT_DIGITS},
            ],
            "description": "Whole cents: 1 to 10**15, a JSON integer or digits.",
        }
    ),
]
OverdraftLimitInCents = Annotated[
    int,
    BeforeValidator(_whole_cents),
    Field(ge=0, le=MAX_AMOUNT_IN_CENTS),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_IN_CENTS},
                {"type": "string", "pattern": _LIMIT_DIGITS},
            ],
            "description": "Whole cents from 0 to 10**15.",
        }
    ),
]
AccountId = Annotated[
    str,
    BeforeValidator(_account_id),
    Field(pattern=f"^{ACCOUNT_ID_PATTERN.pattern}$"),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": f"^{ACCOUNT_ID_PATTERN.pattern}$"},
                {
                    "type": "integer",
                    **_ACCOUNT_ID_INTEGERS,
                    "description": "Means its decimal string.",
                },
            ],
            "description": "1-64 letters, digits or '-_.:'; an integer is accepted.",
        }
    ),
]
OwnerEmail = Annotated[
    str,
    Field(
        min_length=3,
        max_length=MAX_EMAIL_LENGTH,
        # Documents the domain's rule, which _domain_rule enforces.
        json_schema_extra=_email_schema,
    ),
    _domain_rule(check_email),
]
Currency = Annotated[
    str,
    _domain_rule(check_currency),
    WithJsonSchema(
        {"type": "string", "enum": CURRENCIES, "description": "An ISO 4217 code."}
    ),
]
Metadata = Annotated[
    dict[str, str],
    _domain_rule(check_metadata),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_METADATA_KEYS,
            "patternProperties": {
                f"^{METADATA_KEY_PATTERN.pattern}$": {
                    "type": "string",
                    "maxLength": MAX_METADATA_VALUE_LENGTH,
                }
            },
            "additionalProperties": False,
            "description": f"At most {MAX_METADATA_KEYS} keys of 1-40 letters, "
            f"digits or '_.-', each with text of at most {MAX_METADATA_VALUE_LENGTH} "
            "characters.",
        }
    ),
]
TransferId = Annotated[str, Field(pattern=f"^{TRANSFER_ID_PATTERN.pattern}$")]
TimeoutSeconds = Annotated[int, Field(strict=True, ge=1, le=MAX_HOLD_SECONDS)]


class CommandData(BaseModel):
    """Base for a command's `data`: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenAccountData(CommandData):
    """Data of `account_open`."""

    account_owner_email: OwnerEmail
    account_id: AccountId | None = None
    # None: the bank's BANK_DEFAULT_CURRENCY.
    currency: Currency | None = None


class AmountData(CommandData):
    """Data of `account_withdraw`."""

    account_id: AccountId
    amount_in_cents: AmountInCents
    metadata: Metadata | None = None


class DepositData(AmountData):
    """Data of `account_deposit`: an optional payer's reference as well."""

    reference: Annotated[
        str,
        Field(max_length=MAX_REFERENCE_LENGTH, json_schema_extra=_reference_schema),
    ] = ""


def _timeout_needs_pending(schema: dict[str, Any]) -> None:
    """State what _only_when_pending checks: a timeout needs "pending": true."""
    schema["anyOf"] = [
        {"required": ["pending"], "properties": {"pending": {"const": True}}},
        {"properties": {"timeout_seconds": {"type": "null"}}},
    ]


class TransferData(CommandData):
    """Data of `account_transfer`: pending, it holds the amount until posted."""

    model_config = ConfigDict(json_schema_extra=_timeout_needs_pending)

    from_account_id: AccountId
    to_account_id: AccountId
    amount_in_cents: AmountInCents
    pending: StrictBool = False
    timeout_seconds: TimeoutSeconds | None = None
    metadata: Metadata | None = None

    @field_validator("timeout_seconds")
    @classmethod
    def _only_when_pending(
        cls, timeout_seconds: int | None, info: ValidationInfo
    ) -> int | None:
        # A pending that failed its own validation is reported by itself.
        if timeout_seconds is not None and info.data.get("pending") is False:
            raise PydanticCustomError(
                "timeout_without_pending",
                'applies only to a pending transfer ("pending": true)',
            )
        return timeout_seconds


class OverdraftLimitData(CommandData):
    """Data of `account_set_overdraft_limit`."""

    account_id: AccountId
    overdraft_limit_in_cents: OverdraftLimitInCents


class AccountIdData(CommandData):
    """Data of `account_close`."""

    account_id: AccountId


class TransferIdData(CommandData):
    """Data of `transfer_void`."""

    transfer_id: TransferId


class PostTransferData(TransferIdData):
    """Data of `transfer_post`: without an amount, all that is held."""

    amount_in_cents: AmountInCents | None = None


class ReverseTransferData(PostTransferData):
    """Data of `transfer_reverse`: without an amount, all that is left to reverse."""

    metadata: Metadata | None = None


class AccountBalance(BaseModel):
    """An account's balances and version right after a command."""

    # No other field: each command's answer matches exactly one answer schema.
    model_config = ConfigDict(extra="forbid")

    account_id: str
    currency: str = Field(pattern=CURRENCY_PATTERN)
    balance_in_cents: int
    pending_debits_in_cents: int = Field(ge=0)
    pending_credits_in_cents: int = Field(ge=0)
    available_in_cents: int
    version: int = Field(ge=1)

    @classmethod
    def of(cls, account: AccountState, **more: Any) -> Self:
        """Describe one account (fields the model does not name are dropped)."""
        fields = account_fields(account) | more
        return cls.model_validate({name: fields[name] for name in cls.model_fields})


class AccountAnswer(AccountBalance):
    """An account right after a command, and the log's position just after it."""

    position: str = Field(
        pattern=POSITION_PATTERN,
        description="Opaque: pass it as min_position to read what this command did.",
    )

    @classmethod
    def from_result(cls, result: CommandResult) -> Self:
        """Describe the command's account and where the log is after it."""
        return cls.of(result.account, position=position_token(result))


class OpenedAccount(AccountAnswer):
    """A newly opened account."""

    account_owner_email: str


class OverdraftLimitChanged(AccountAnswer):
    """An account with its new overdraft limit."""

    overdraft_limit_in_cents: int


class ClosedAccount(AccountAnswer):
    """A closed account."""

    closed: Literal[True]


def position_token(result: CommandResult) -> str:
    """The position an accepted command's answer carries."""
    if result.position is None:
        msg = "an accepted command's result carries its position"
        raise ValueError(msg)
    return result.position.token()


class TransferMade(BaseModel):
    """A transfer made or changed, and both its accounts right after."""

    model_config = ConfigDict(extra="forbid")

    transfer_id: str
    status: str = Field(json_schema_extra={"enum": TRANSFER_STATUSES})
    from_account: AccountBalance
    to_account: AccountBalance
    position: str = Field(
        pattern=POSITION_PATTERN,
        description="Opaque: pass it as min_position to read what this command did.",
    )

    @classmethod
    def from_result(cls, result: CommandResult) -> Self:
        """Describe the transfer and both accounts (payer first)."""
        source, target = result.accounts
        # Answers kept before transfers had a state were all plain transfers.
        status = POSTED if result.transfer is None else result.transfer.status
        return cls(
            transfer_id=result.transfer_id or "",
            status=status,
            from_account=AccountBalance.of(source),
            to_account=AccountBalance.of(target),
            position=position_token(result),
        )


DataT = TypeVar("DataT", bound=CommandData)


@dataclass(frozen=True)
class CommandSpec(Generic[DataT]):
    """One registry entry: how a named command is validated, run and answered."""

    name: str
    summary: str
    data_model: type[DataT]
    build: Callable[[DataT], Command]
    response_model: type[AccountAnswer] | type[TransferMade]
    success_status: int = 200

    def command(self, data: Mapping[str, Any]) -> Command:
        """Validate raw `data` (raising pydantic's ValidationError) and build."""
        return self.build(self.data_model.model_validate(data))

    def respond(self, result: CommandResult) -> dict[str, Any]:
        """The JSON body for an accepted command."""
        model = self.response_model.from_result(result)
        return model.model_dump()


def _entries(*specs: CommandSpec[Any]) -> Mapping[str, CommandSpec[Any]]:
    return MappingProxyType({spec.name: spec for spec in specs})


COMMANDS: Mapping[str, CommandSpec[Any]] = _entries(
    CommandSpec[OpenAccountData](
        name="account_open",
        summary="Open an account, with a chosen id or a fresh one, in a currency.",
        data_model=OpenAccountData,
        build=lambda data: OpenAccount(
            data.account_owner_email, data.account_id, data.currency
        ),
        response_model=OpenedAccount,
        success_status=201,
    ),
    CommandSpec[DepositData](
        name="account_deposit",
        summary="Pay money into an account.",
        data_model=DepositData,
        build=lambda data: Deposit(
            data.account_id, data.amount_in_cents, data.reference, data.metadata
        ),
        response_model=AccountAnswer,
    ),
    CommandSpec[AmountData](
        name="account_withdraw",
        summary="Pay money out, at most what is available.",
        data_model=AmountData,
        build=lambda data: Withdraw(
            data.account_id, data.amount_in_cents, data.metadata
        ),
        response_model=AccountAnswer,
    ),
    CommandSpec[TransferData](
        name="account_transfer",
        summary="Move money between two accounts of one currency, both halves or "
        "neither; pending, hold it until posted, voided or timed out.",
        data_model=TransferData,
        build=lambda data: Transfer(
            data.from_account_id,
            data.to_account_id,
            data.amount_in_cents,
            data.pending,
            data.timeout_seconds,
            data.metadata,
        ),
        response_model=TransferMade,
    ),
    CommandSpec[PostTransferData](
        name="transfer_post",
        summary="Move a pending transfer's held money, all or less, and free the rest.",
        data_model=PostTransferData,
        build=lambda data: PostTransfer(data.transfer_id, data.amount_in_cents),
        response_model=TransferMade,
    ),
    CommandSpec[TransferIdData](
        name="transfer_void",
        summary="Release all of a pending transfer's held money.",
        data_model=TransferIdData,
        build=lambda data: VoidTransfer(data.transfer_id),
        response_model=TransferMade,
    ),
    CommandSpec[ReverseTransferData](
        name="transfer_reverse",
        summary="Move a posted transfer's money back, all or part, as a new "
        "transfer (the answer's).",
        data_model=ReverseTransferData,
        build=lambda data: ReverseTransfer(
            data.transfer_id, data.amount_in_cents, data.metadata
        ),
        response_model=TransferMade,
    ),
    CommandSpec[OverdraftLimitData](
        name="account_set_overdraft_limit",
        summary="Set how far below zero the balance may go.",
        data_model=OverdraftLimitData,
        build=lambda data: SetOverdraftLimit(
            data.account_id, data.overdraft_limit_in_cents
        ),
        response_model=OverdraftLimitChanged,
    ),
    CommandSpec[AccountIdData](
        name="account_close",
        summary="Close an account whose balance is exactly zero, with no pending "
        "transfers.",
        data_model=AccountIdData,
        build=lambda data: CloseAccount(data.account_id),
        response_model=ClosedAccount,
    ),
)


@dataclass(frozen=True)
class Answer:
    """An accepted request's JSON body and status; a replay says it is one."""

    body: dict[str, Any]
    status: int
    replayed: bool


def run_command(
    bank: BankApplication, body: dict[str, Any], idempotency_key: str | None
) -> Answer:
    """Run one {"command": name, "data": {...}} and shape its answer."""
    with observed([command_label(body.get("command"), COMMANDS)]) as observation:
        spec, command = parse_command(body)
        [result] = bank.execute(command, idempotency_key=idempotency_key)
        observation.replayed = result.replayed
    return Answer(spec.respond(result), spec.success_status, result.replayed)


def run_batch(
    bank: BankApplication, entries: object, idempotency_key: str | None
) -> Answer:
    """Run {"batch": [command, ...]} in one transaction, all or nothing."""
    with observed(batch_labels(entries)) as observation:
        parsed = parse_batch(entries)
        try:
            results = bank.execute_batch(
                [command for _, command in parsed], idempotency_key=idempotency_key
            )
        except BankError as error:
            # A refusal of the whole batch (a reused key) names no command.
            if error.command_index is not None:
                error.details = {"index": error.command_index, **error.details}
            raise
        observation.replayed = results[0].replayed
    bodies = [
        spec.respond(result) for (spec, _), result in zip(parsed, results, strict=True)
    ]
    return Answer(
        {"results": bodies, "position": position_token(results[-1])},
        200,
        results[0].replayed,
    )


def batch_labels(entries: object) -> list[str]:
    """The metrics label of each command of a batch (one "unknown" for a non-list)."""
    if not isinstance(entries, list):
        return [command_label(None, COMMANDS)]
    return [
        command_label(
            entry.get("command") if isinstance(entry, dict) else None, COMMANDS
        )
        for entry in entries
    ]


def parse_batch(entries: object) -> list[tuple[CommandSpec[Any], Command]]:
    """Check a batch's size before any entry, then look up and validate each."""
    try:
        if not isinstance(entries, list):
            raise InvalidCommandError("'batch' is a list of commands.", field="batch")
        check_batch_size(len(entries))
    except InvalidCommandError as error:
        raise ApiError(
            "validation_error",
            error.message,
            {"errors": [{"field": "batch", "reason": error.message}]},
        ) from None
    parsed = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ApiError(
                "bad_request", "Each batch entry is a JSON object.", {"index": index}
            )
        parsed.append(parse_command(entry, where=f"batch[{index}].data", index=index))
    return parsed


def parse_command(
    body: dict[str, Any], where: str = "data", index: int | None = None
) -> tuple[CommandSpec[Any], Command]:
    """Look a command up in the registry and validate its data."""
    position = {} if index is None else {"index": index}
    unknown_keys = sorted(set(body) - {"command", "data"})
    if unknown_keys:
        raise ApiError(
            "bad_request",
            "A command has only 'command' and 'data'.",
            {**position, "unknown_keys": unknown_keys},
        )
    name, data = body.get("command"), body.get("data", {})
    if not isinstance(name, str):
        raise ApiError(
            "bad_request", "'command' must be a string naming a command.", position
        )
    if not isinstance(data, dict):
        raise ApiError("bad_request", "'data' must be a JSON object.", position)
    spec = COMMANDS.get(name)
    if spec is None:
        raise ApiError(
            "unknown_command",
            "There is no such command.",
            {**position, "known_commands": sorted(COMMANDS)},
        )
    try:
        return spec, spec.command(data)
    except ValidationError as error:
        raise ApiError(
            "validation_error",
            "The command's data is invalid; see details.errors.",
            {**position, **validation_details(error, prefix=where)},
        ) from None
