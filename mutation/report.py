"""The mutation score per module, from mutmut's results and mutation.extra's."""

from __future__ import annotations

import json
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

MUTANTS = Path("mutants")
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")
EXTRA_RESULTS = MUTANTS / "extra-results.json"
TARGET = 0.9

# mutmut's exit codes (mutmut.stats.status_by_exit_code), as this report counts them.
KILLED_CODES = {1, 3, 37}
TIMEOUT_CODES = {36, -24, 24, 152, 255}
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}
# A mutmut name is the module, then x_function or xǁClassǁmethod, then __mutmut_N.
_MUTMUT_NAME = re.compile(r"^(?P<module>[\w.]+?)\.x[_ǁ]")


@dataclass
class Tally:
    """One module's mutants by outcome."""

    killed: int = 0
    timeout: int = 0
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    equivalent: int = 0
    not_run: int = 0

    @property
    def counted(self) -> int:
        """The mutants the score is out of: all run, less the equivalent ones."""
        return self.killed + self.timeout + len(self.survived) + len(self.no_tests)

    @property
    def score(self) -> float | None:
        """Killed (a timeout counts as killed) out of the counted mutants."""
        return (self.killed + self.timeout) / self.counted if self.counted else None


def equivalent_mutants(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """The checked-in equivalent mutants, each with its one-line reason."""
    if not path.exists():
        return {}
    listed: dict[str, str] = tomllib.loads(path.read_text())["equivalent"]
    return listed


def module_of(name: str) -> str:
    """The module a mutmut mutant name belongs to."""
    match = _MUTMUT_NAME.match(name)
    return match["module"] if match else name.rsplit(".", 1)[0]


def _count(tally: Tally, name: str, outcome: str, equivalent: dict[str, str]) -> None:
    if outcome == "not_run":
        tally.not_run += 1
    elif name in equivalent and outcome in {"survived", "no_tests"}:
        tally.equivalent += 1
    elif outcome == "killed":
        tally.killed += 1
    elif outcome == "timeout":
        tally.timeout += 1
    elif outcome == "no_tests":
        tally.no_tests.append(name)
    else:
        tally.survived.append(name)


def _mutmut_outcome(code: int | None) -> str:
    if code is None:
        return "not_run"
    if code in KILLED_CODES:
        return "killed"
    if code in TIMEOUT_CODES:
        return "timeout"
    if code in NO_TESTS_CODES:
        return "no_tests"
    # Survived, and anything mutmut calls suspicious: not a kill.
    return "survived"


def tallies(equivalent: dict[str, str], root: Path = MUTANTS) -> dict[str, Tally]:
    """Every module's tally, from both tools' results on disk."""
    by_module: dict[str, Tally] = defaultdict(Tally)
    for meta in sorted(root.glob("**/*.py.meta")):
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            module = module_of(name)
            _count(by_module[module], name, _mutmut_outcome(code), equivalent)
    extra = root / EXTRA_RESULTS.name
    if extra.exists():
        for result in json.loads(extra.read_text()):
            status = result["status"]
            outcome = (
                status if status in {"killed", "timeout", "no_tests"} else "survived"
            )
            _count(by_module[result["module"]], result["id"], outcome, equivalent)
    return dict(sorted(by_module.items()))


def stale_equivalents(equivalent: dict[str, str], known: set[str]) -> list[str]:
    """Listed equivalent mutants that no longer exist (renumbered or removed)."""
    return sorted(name for name in equivalent if name not in known)


def render(by_module: dict[str, Tally]) -> tuple[str, bool]:
    """The score table, and whether every module reaches the target."""
    lines = [
        f"{'module':<32} {'killed':>6} {'timeout':>7} {'survived':>8} "
        f"{'no tests':>8} {'equiv.':>6} {'not run':>7} {'score':>6}",
    ]
    total = Tally()
    reached = True
    for module, tally in by_module.items():
        if tally.counted == 0:
            continue
        score = tally.score or 0.0
        reached &= score >= TARGET
        mark = "" if score >= TARGET else "  < 90%"
        lines.append(
            f"{module:<32} {tally.killed:>6} {tally.timeout:>7} "
            f"{len(tally.survived):>8} {len(tally.no_tests):>8} "
            f"{tally.equivalent:>6} {tally.not_run:>7} {score:>6.1%}{mark}"
        )
        total.killed += tally.killed
        total.timeout += tally.timeout
        total.survived += tally.survived
        total.no_tests += tally.no_tests
        total.equivalent += tally.equivalent
        total.not_run += tally.not_run
    lines.append(
        f"{'all':<32} {total.killed:>6} {total.timeout:>7} {len(total.survived):>8} "
        f"{len(total.no_tests):>8} {total.equivalent:>6} {total.not_run:>7} "
        f"{total.score or 0.0:>6.1%}"
    )
    return "\n".join(lines), reached
