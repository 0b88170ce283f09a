"""`python -m bench --smoke`: every benchmark still runs, at tiny sizes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARK_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")


@pytest.mark.slow
def test_the_smoke_run_of_every_benchmark_completes() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    report = completed.stdout
    assert completed.returncode == 0, f"{report}\n{completed.stderr[-4000:]}"
    for benchmark_id in BENCHMARK_IDS:
        # A table row starts with its id (B1 has rows B1a and B1b).
        row = re.compile(rf"^\W*{benchmark_id}[a-z]?\s", re.MULTILINE)
        assert row.search(report), f"no {benchmark_id} row in:\n{report}"
