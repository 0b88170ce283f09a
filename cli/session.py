"""What every `bank` command shares: the database chosen and how refusals show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

import click

from bank import BankApplication, BankError


@dataclass
class BankSession:
    """The database chosen on the command line and the bank opened on it."""

    db_url: str | None
    _app: BankApplication | None = field(default=None, repr=False)

    @property
    def app(self) -> BankApplication:
        """The bank, built on first use (so `serve` never opens the database)."""
        if self._app is None:
            env = {"SQLALCHEMY_URL": self.db_url} if self.db_url else None
            self._app = BankApplication(env=env)
        return self._app

    def close(self) -> None:
        """Release the bank's database connections, if it was ever opened."""
        if self._app is not None:
            self._app.close()
            self._app = None


class Refusal(click.ClickException):
    """A BankError shown as one `error: code: message` line, exit status 1."""

    exit_code = 1

    def __init__(self, error: BankError) -> None:
        super().__init__(" ".join(error.message.split()))
        self.code = error.code

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the refusal to stderr, without a traceback."""
        click.echo(f"error: {self.code}: {self.message}", err=True, file=file)


class BankGroup(click.Group):
    """A command group that turns any refused command into a Refusal."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand, reporting a BankError as a one-line refusal."""
        try:
            return super().invoke(ctx)
        except BankError as error:
            raise Refusal(error) from None


pass_session = click.make_pass_decorator(BankSession)


def _metadata(
    ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]
) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE.", ctx, param)
        metadata[key] = value
    return metadata


metadata_option = click.option(
    "--meta",
    "metadata",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_metadata,
    help="Metadata to record with it, as KEY=VALUE (repeatable).",
)
