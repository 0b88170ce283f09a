"""`make mutation`: run mutmut and mutation.extra, then print the score per module."""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
from pathlib import Path

from mutation.report import (
    EQUIVALENT_FILE,
    TARGET,
    equivalent_mutants,
    render,
    stale_equivalents,
    tallies,
)

SOURCES = ("bank", "web")


def modules_matching(patterns: list[str]) -> list[str]:
    """The source files (bank/domain.py, ...) that the patterns name."""
    files = sorted(str(p) for source in SOURCES for p in Path(source).rglob("*.py"))
    return [f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]


def mutmut_names(files: list[str]) -> list[str]:
    """mutmut's mutant-name globs for these files (bank/domain.py -> bank.domain.*)."""
    return [f"{f.removesuffix('.py').replace('/', '.')}.*" for f in files]


def main(argv: list[str] | None = None) -> int:
    """Run both tools (on some modules, or all), then print the table."""
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__)
    parser.add_argument(
        "modules",
        nargs="*",
        help="source files or globs (e.g. bank/domain.py 'web/*.py'); all by default",
    )
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    parser.add_argument(
        "--report-only", action="store_true", help="print the last results; run none"
    )
    args = parser.parse_args(argv)
    files = modules_matching(args.modules) if args.modules else []
    if args.modules and not files:
        parser.error(f"no source file matches {args.modules}")
    if not args.report_only:
        mutmut = [sys.executable, "-m", "mutmut", "run", "--max-children"]
        subprocess.run([*mutmut, str(args.jobs), *mutmut_names(files)], check=False)
        extra = [sys.executable, "-m", "mutation.extra", "--jobs", str(args.jobs)]
        for only in files or [""]:
            subprocess.run([*extra, *(["--only", only] if only else [])], check=True)
    equivalent = equivalent_mutants()
    by_module = tallies(equivalent)
    if files:
        wanted = {f.removesuffix(".py").replace("/", ".") for f in files}
        by_module = {m: t for m, t in by_module.items() if m in wanted}
    table, reached = render(by_module)
    print(table)
    for tally in by_module.values():
        for name in tally.survived:
            print(f"survived  {name}")
        for name in tally.no_tests:
            print(f"no tests  {name}")
    known = {n for t in tallies({}).values() for n in t.survived + t.no_tests}
    for name in stale_equivalents(equivalent, known):
        print(f"{EQUIVALENT_FILE.name}: {name} no longer survives or exists")
    print(f"target: {TARGET:.0%} of non-equivalent mutants killed in every module")
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
