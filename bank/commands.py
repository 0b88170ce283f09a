"""The command registry: API command name -> data model -> application command.

Adding a command takes one domain method, one application command and one
entry in `COMMANDS`; the JSON API, its validation and its OpenAPI description
all follow from the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Generic, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from bank.application import (
    AccountState,
    CloseAccount,
    Command,
    CommandResult,
    Deposit,
    OpenAccount,
    SetOverdraftLimit,
    Transfer,
    Withdraw,
)
from bank.domain import (
    ACCOUNT_ID_PATTERN,
    MAX_AMOUNT_IN_CENTS,
    MAX_EMAIL_LENGTH,
    MAX_REFERENCE_LENGTH,
    InvalidCommandError,
    check_email,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_DIGITS_JSON_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[0-9]{1,16}$"}


def _whole_cents(value: Any) -> Any:
    """Accept a JSON integer or a string of digits; refuse floats and booleans."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "whole_cents",
            "must be a whole number of cents: a JSON integer or a string of digits",
        )
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 16):
            raise PydanticCustomError(
                "whole_cents", "must be a whole number of cents: digits only"
            )
        return int(value)
    return value


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
                _DIGITS_JSON_SCHEMA,
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
                _DIGITS_JSON_SCHEMA,
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
                {"type": "integer", "description": "Means its decimal string."},
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
        json_schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"},
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

    reference: Annotated[str, Field(max_length=MAX_REFERENCE_LENGTH)] = ""


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

    account_id: str
    balance_in_cents: int
    version: int

    @classmethod
    def of(cls, account: AccountState) -> Self:
        """Describe one account (fields the model does not name are dropped)."""
        return cls.model_validate(
            {
                "account_id": account.account_id,
                "account_owner_email": account.owner_email,
                "balance_in_cents": account.balance_in_cents,
                "overdraft_limit_in_cents": account.overdraft_limit_in_cents,
                "closed": account.is_closed,
                "version": account.version,
            }
        )

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

    closed: bool


class TransferMade(BaseModel):
    """Both sides of a transfer, right after it."""

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
