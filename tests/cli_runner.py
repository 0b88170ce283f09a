"""The `bank` command run in-process on a fresh SQLite file, and its tables read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from click.testing import CliRunner, Result

from bank import BankApplication
from cli.main import main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


class Cli:
    """Runs `bank --db URL ...` in-process and reads the database behind it."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        """Run one `bank` command line on this database."""
        return self.runner.invoke(main, ["--db", self.db_url, *args])

    def ok(self, *args: str) -> str:
        """Run a command that must succeed and return its stdout."""
        result = self(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    def app(self) -> BankApplication:
        """A separate BankApplication on the same database."""
        return BankApplication(env={"SQLALCHEMY_URL": self.db_url})

    def max_notification_id(self) -> int | None:
        """The id of the last event stored, by any writer."""
        with self.app() as app:
            return app.recorder.max_notification_id()


def cli_on_a_fresh_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The `bank` command on a fresh SQLite file, whatever the environment says."""
    for key in ("SQLALCHEMY_URL", "BANK_SQLALCHEMY_URL", "SQLALCHEMY_SCHEMA"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # a stray default ./bank.db would land here
    return Cli(f"sqlite:///{tmp_path / 'bank.db'}")


def rows(output: str) -> list[list[str]]:
    """The body rows of a rich table (not the header), wrapped lines joined."""
    table: list[list[str]] = []
    for line in output.splitlines():
        if "│" not in line:
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[0] or not table:
            table.append(cells)
        else:  # a continuation line of a multi-line cell
            table[-1] = [
                f"{before} {more}".strip()
                for before, more in zip(table[-1], cells, strict=True)
            ]
    return table


def fields(output: str) -> dict[str, str]:
    """The `show` table as {field: value}."""
    return dict(rows(output))
