"""`make mutation`'s table: what counts as killed, and what the score is out of."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mutation.report import module_of, render, tallies

if TYPE_CHECKING:
    from pathlib import Path

EQUIVALENT = {"bank.idempotency.x_of__mutmut_3": "both spellings name one key"}


def write_results(root: Path) -> None:
    """mutmut's results for two modules, and one of mutation.extra's."""
    (root / "bank").mkdir()
    codes = {
        "bank.idempotency.x_of__mutmut_1": 1,  # killed
        "bank.idempotency.x_of__mutmut_2": 0,  # survived
        "bank.idempotency.x_of__mutmut_3": 0,  # survived, but equivalent
        "bank.idempotency.xǁIdempotencyKeyǁrecord__mutmut_1": 36,  # timeout
        "bank.idempotency.xǁIdempotencyKeyǁrecord__mutmut_2": 33,  # no tests
        "bank.idempotency.xǁIdempotencyKeyǁrecord__mutmut_3": None,  # not run
    }
    meta = {"exit_code_by_key": codes}
    (root / "bank" / "idempotency.py.meta").write_text(json.dumps(meta))
    extra = [
        {"id": "web.errors:STATUS_BY_CODE:dict_remove:1", "module": "web.errors"}
        | {"status": "killed"},
        {"id": "web.errors:STATUS_BY_CODE:dict_remove:2", "module": "web.errors"}
        | {"status": "survived"},
    ]
    (root / "extra-results.json").write_text(json.dumps(extra))


def test_a_mutmut_name_belongs_to_the_module_before_its_function() -> None:
    assert module_of("bank.projections.rows.x_row__mutmut_2") == "bank.projections.rows"
    assert module_of("bank.domain.xǁAccountǁclose__mutmut_11") == "bank.domain"


def test_timeouts_count_as_kills_and_equivalent_and_unrun_mutants_not_at_all(
    tmp_path: Path,
) -> None:
    write_results(tmp_path)

    by_module = tallies(EQUIVALENT, tmp_path)

    idempotency = by_module["bank.idempotency"]
    assert (idempotency.killed, idempotency.timeout, idempotency.equivalent) == (
        1,
        1,
        1,
    )
    assert idempotency.survived == ["bank.idempotency.x_of__mutmut_2"]
    assert idempotency.no_tests == [
        "bank.idempotency.xǁIdempotencyKeyǁrecord__mutmut_2"
    ]
    assert (idempotency.not_run, idempotency.counted, idempotency.score) == (1, 4, 0.5)
    errors = by_module["web.errors"]
    assert (errors.killed, errors.survived, errors.score) == (
        1,
        ["web.errors:STATUS_BY_CODE:dict_remove:2"],
        0.5,
    )


def test_the_table_flags_each_module_under_90_percent_and_says_none_reached_it(
    tmp_path: Path,
) -> None:
    write_results(tmp_path)

    table, reached = render(tallies(EQUIVALENT, tmp_path))

    assert not reached
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert rows["bank.idempotency"].endswith("50.0%  < 90%")
    assert rows["web.errors"].endswith("50.0%  < 90%")
    assert rows["all"].split()[1:] == ["2", "1", "2", "1", "1", "1", "50.0%"]
