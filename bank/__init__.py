"""An event-sourced bank: the Account aggregate and the BankApplication service."""

from bank.application import BankApplication
from bank.domain import (
    Account,
    AccountAlreadyExistsError,
    AccountClosedError,
    AccountNotEmptyError,
    AccountNotFoundError,
    BankError,
    ConcurrencyError,
    InsufficientFundsError,
    InvalidCommandError,
)
from bank.settings import ConfigurationError

__all__ = [
    "Account",
    "AccountAlreadyExistsError",
    "AccountClosedError",
    "AccountNotEmptyError",
    "AccountNotFoundError",
    "BankApplication",
    "BankError",
    "ConcurrencyError",
    "ConfigurationError",
    "InsufficientFundsError",
    "InvalidCommandError",
]
