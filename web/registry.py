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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from bank import BankError
from bank.commands import (
    CloseAccount,
    Deposit,
    OpenAccount,
    SetOverdraftLimit,
    Transfer,
    Withdraw,
    check_batch_size,
)
from bank.domain import (
    ACCOUNT_ID_PATTERN,
    MAX_AMOUNT_IN_CENTS,
    MAX_EMAIL_LENGTH,
    MAX_REFERENCE_LENGTH,
    InvalidCommandError,
    check_email,
)
from web.errors import ApiError, validation_details
from web.reads import account_fields

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


def _email(value: str) -> str:
    """Apply the domain's own email rule, reported as a field error."""
    try:
        check_email(value)
    except InvalidCommandError as error:
        raise PydanticCustomError("email", error.message) from None
    return value


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
        # Documents the domain's rule; _email enforces it with its own message.
        json_schema_extra=_email_schema,
    ),
    AfterValidator(_email),
]


class CommandData(BaseModel):
    """Base for a command's `data`: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenAccountData(CommandData):
    """Data of `account_open`."""

    account_owner_email: OwnerEmail
    account_id: AccountId | None = None


class AmountData(CommandData):
    """Data of `account_withdraw`."""

    account_id: AccountId
    amount_in_cents: AmountInCents


class DepositData(AmountData):
    """Data of `account_deposit`: an optional payer's reference as well."""

    reference: Annotated[
        str,
        Field(max_length=MAX_REFERENCE_LENGTH, json_schema_extra=_reference_schema),
    ] = ""


class TransferData(CommandData):
    """Data of `account_transfer`."""

    from_account_id: AccountId
    to_account_id: AccountId
    amount_in_cents: AmountInCents


class OverdraftLimitData(CommandData):
    """Data of `account_set_overdraft_limit`."""

    account_id: AccountId
    overdraft_limit_in_cents: OverdraftLimitInCents


class AccountIdData(CommandData):
    """Data of `account_close`."""

    account_id: AccountId


class AccountBalance(BaseModel):
    """An account's balance and version right after a command."""

    # No other field: each command's answer matches exactly one answer schema.
    model_config = ConfigDict(extra="forbid")

    account_id: str
    balance_in_cents: int
    version: int = Field(ge=1)

    @classmethod
    def of(cls, account: AccountState) -> Self:
        """Describe one account (fields the model does not name are dropped)."""
        fields = account_fields(account)
        return cls.model_validate({name: fields[name] for name in cls.model_fields})

    @classmethod
    def from_result(cls, result: CommandResult) -> Self:
        """Describe the command's account."""
        return cls.of(result.account)


class OpenedAccount(AccountBalance):
    """A newly opened account."""

    account_owner_email: str


class OverdraftLimitChanged(AccountBalance):
    """An account with its new overdraft limit."""

    overdraft_limit_in_cents: int


class ClosedAccount(AccountBalance):
    """A closed account."""

    closed: Literal[True]


class TransferMade(BaseModel):
    """Both sides of a transfer, right after it."""

    model_config = ConfigDict(extra="forbid")

    transfer_id: str
    from_account: AccountBalance
    to_account: AccountBalance

    @classmethod
    def from_result(cls, result: CommandResult) -> Self:
        """Describe the transfer and both accounts."""
        source, target = result.accounts
        return cls(
            transfer_id=result.transfer_id or "",
            from_account=AccountBalance.of(source),
            to_account=AccountBalance.of(target),
        )


DataT = TypeVar("DataT", bound=CommandData)


@dataclass(frozen=True)
class CommandSpec(Generic[DataT]):
    """One registry entry: how a named command is validated, run and answered."""

    name: str
    summary: str
    data_model: type[DataT]
    build: Callable[[DataT], Command]
    response_model: type[AccountBalance] | type[TransferMade]
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
        summary="Open an account, with a chosen id or a fresh one.",
        data_model=OpenAccountData,
        build=lambda data: OpenAccount(data.account_owner_email, data.account_id),
        response_model=OpenedAccount,
        success_status=201,
    ),
    CommandSpec[DepositData](
        name="account_deposit",
        summary="Pay money into an account.",
        data_model=DepositData,
        build=lambda data: Deposit(
            data.account_id, data.amount_in_cents, data.reference
        ),
        response_model=AccountBalance,
    ),
    CommandSpec[AmountData](
        name="account_withdraw",
        summary="Pay money out, down to the overdraft limit at most.",
        data_model=AmountData,
        build=lambda data: Withdraw(data.account_id, data.amount_in_cents),
        response_model=AccountBalance,
    ),
    CommandSpec[TransferData](
        name="account_transfer",
        summary="Move money between two accounts, both halves or neither.",
        data_model=TransferData,
        build=lambda data: Transfer(
            data.from_account_id, data.to_account_id, data.amount_in_cents
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
        summary="Close an account whose balance is exactly zero.",
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
    spec, command = parse_command(body)
    [result] = bank.execute(command, idempotency_key=idempotency_key)
    return Answer(spec.respond(result), spec.success_status, result.replayed)


def run_batch(
    bank: BankApplication, entries: object, idempotency_key: str | None
) -> Answer:
    """Run {"batch": [command, ...]} in one transaction, all or nothing."""
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
    bodies = [
        spec.respond(result) for (spec, _), result in zip(parsed, results, strict=True)
    ]
    return Answer({"results": bodies}, 200, results[0].replayed)


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
