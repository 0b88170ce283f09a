"""The benchmark report: rows of figures with their targets, printed as one table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

REPO_ROOT = Path(__file__).resolve().parent.parent

Status = Literal["PASS", "FAIL", "info", "SKIP", "CRASH"]
STATUS_STYLES: dict[Status, str] = {
    "PASS": "bold green",
    "FAIL": "bold red",
    "info": "dim",
    "SKIP": "yellow",
    "CRASH": "bold white on red",
}


@dataclass(frozen=True)
class Row:
    """One figure of one benchmark: what was measured and what it should be."""

    id: str
    figure: str
    measured: str
    target: str = ""
    status: Status = "info"


def judged(row_id: str, figure: str, measured: str, target: str, passed: bool) -> Row:
    """A row whose measurement is held to a target."""
    return Row(row_id, figure, measured, target, "PASS" if passed else "FAIL")


def context_line(persistence_module: str) -> str:
    """Where the figures come from: Python, CPUs, commit, event store."""
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"commit {git_commit()}, persistence {persistence_module}"
    )


def git_commit() -> str:
    """The checkout's short commit id, marked "+dirty" with local changes."""
    try:
        sha = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def table(rows: list[Row], title: str) -> Table:
    """The rows as a rich table, status coloured."""
    result = Table(title=title, title_justify="left")
    result.add_column("id", no_wrap=True)
    result.add_column("figure")
    result.add_column("measured", justify="right")
    result.add_column("target", justify="right")
    result.add_column("PASS/FAIL", no_wrap=True)
    for row in rows:
        result.add_row(
            row.id,
            Text(row.figure),
            Text(row.measured),
            Text(row.target),
            Text(row.status, style=STATUS_STYLES[row.status]),
        )
    return result


def print_report(context: str, rows: list[Row], title: str) -> None:
    """Print the context line and the table; when piped, wide enough not to wrap."""
    console = Console()
    rendered = table(rows, title)
    if not console.is_terminal:
        unlimited = console.options.update_width(sys.maxsize)
        console.width = max(
            console.width, console.measure(rendered, options=unlimited).maximum
        )
    console.print(Text(context), soft_wrap=True)
    console.print(rendered)


def report_of_process(module: str, *arguments: str, what: str) -> dict[str, Any]:
    """Run `python -m module arguments` fresh; the JSON object it printed."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the {what} process exited with {completed.returncode}: "
            f"{completed.stderr[-2000:]}"
        )
    report: dict[str, Any] = json.loads(completed.stdout)
    return report
