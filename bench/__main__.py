"""`python -m bench [--smoke] [--only B1,B3]`: run the benchmarks, print one table.

The exit status is 0 whatever the figures are (the table is a report), and 1
only when a benchmark crashed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

from bank import BankApplication
from bench import (
    b1_database_limit,
    b2_history,
    b3_http,
    b4_batch,
    b5_cold_load,
    b6_scale_out,
    b7_read_side,
)
from bench.report import Row, context_line, print_report
from bench.sizes import FULL, SMOKE
from bench.stores import sqlite_url

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from bench.sizes import Sizes

BENCHMARKS: dict[str, Callable[[Sizes], list[Row]]] = {
    "B1": b1_database_limit.run,
    "B2": b2_history.run,
    "B3": b3_http.run,
    "B4": b4_batch.run,
    "B5": b5_cold_load.run,
    "B6": b6_scale_out.run,
    "B7": b7_read_side.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks and print the report; 1 if any crashed."""
    arguments = parse_arguments(argv)
    sizes = SMOKE if arguments.smoke else FULL
    context = context_line(default_persistence_module())
    rows: list[Row] = []
    crashed = False
    for benchmark_id in arguments.only:
        progress(f"{benchmark_id} running")
        start = perf_counter()
        try:
            rows.extend(BENCHMARKS[benchmark_id](sizes))
        except Exception as error:
            traceback.print_exc()
            rows.append(Row(benchmark_id, "crashed", describe(error), status="CRASH"))
            crashed = True
        progress(f"{benchmark_id} took {perf_counter() - start:.1f} s")
    title = (
        "smoke run: tiny sizes, PASS/FAIL only informational"
        if arguments.smoke
        else "bank benchmarks"
    )
    print_report(context, rows, title)
    return 1 if crashed else 0


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """--smoke and --only, the latter checked and split into benchmark ids."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, to check the code still runs"
    )
    parser.add_argument(
        "--only",
        type=benchmark_ids,
        default=list(BENCHMARKS),
        metavar="B1,B3",
        help="run only these benchmarks (default: all)",
    )
    return parser.parse_args(argv)


def benchmark_ids(text: str) -> list[str]:
    """A comma-separated list of known benchmark ids, in the report's order."""
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [i for i in ids if i not in BENCHMARKS]
    if unknown or not ids:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(BENCHMARKS)}, not {text!r}"
        )
    return [known for known in BENCHMARKS if known in ids]


def default_persistence_module() -> str:
    """The event store the application picks when told only its database URL."""
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        try:
            app = BankApplication(
                env={"SQLALCHEMY_URL": sqlite_url(Path(directory) / "probe.db")}
            )
        except Exception as error:
            return f"unknown ({describe(error)})"
        app.close()
    return app.env.get("PERSISTENCE_MODULE") or "unknown"


def describe(error: BaseException) -> str:
    """An exception in one line."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]


def progress(message: str) -> None:
    """Say what is happening, on stderr (the table goes to stdout)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
