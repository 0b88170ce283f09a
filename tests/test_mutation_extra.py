"""The extra mutation tool: which places it mutates, and how, on small sources."""

from __future__ import annotations

import ast
import textwrap

import pytest

from mutation.extra import (
    CoverageMap,
    Mutant,
    apply_mutant,
    build_references,
    file_mutants,
    select_tests,
)


def mutants_of(source: str) -> list[Mutant]:
    """The mutants of a dedented source, as the module `m`."""
    return file_mutants("m.py", textwrap.dedent(source))


def applied(source: str) -> dict[str, str]:
    """Each mutant id and the whole mutated file."""
    source = textwrap.dedent(source)
    return {m.id: apply_mutant(source, m) for m in file_mutants("m.py", source)}


def test_a_decorated_function_body_is_mutated_and_a_plain_one_is_left_to_mutmut() -> (
    None
):
    mutants = mutants_of(
        """
        class Account:
            @property
            def overdrawn(self):
                return self.balance < 0

            def plain(self):
                return self.balance < 0

            @staticmethod
            def static(balance):
                return balance < 0

        def helper(balance):
            return balance < 0
        """
    )

    assert {m.id.split(":")[1] for m in mutants} == {"Account.overdrawn"}
    assert {m.operator for m in mutants} == {"compare", "int", "return_none"}


def test_a_staticmethod_with_another_decorator_is_mutated() -> None:
    mutants = mutants_of(
        """
        import functools

        class Rates:
            @staticmethod
            @functools.cache
            def rate():
                return 7
        """
    )

    assert [m.id for m in mutants] == [
        "m:Rates.rate:return_none:1",
        "m:Rates.rate:int:1",
    ]


def test_a_decorated_function_nested_in_a_plain_one_is_mutated() -> None:
    mutants = mutants_of(
        """
        def register(app):
            limit = 3

            @app.errorhandler(KeyError)
            def missing(error):
                return error.code == 404
        """
    )

    assert {m.id.split(":")[1] for m in mutants} == {"register.missing"}
    assert "m:register.missing:compare:1" in {m.id for m in mutants}


def test_a_module_dict_constant_yields_one_dict_remove_mutant_per_entry() -> None:
    source = """
        STATUS_BY_CODE = {
            "bad_request": 400,
            "not_found": 404,
            "conflict": 409,
        }
        """
    mutated = applied(source)

    removed = {
        key: ast.literal_eval(text.split("=", 1)[1].strip())
        for key, text in mutated.items()
        if ":dict_remove:" in key
    }
    assert removed == {
        "m:STATUS_BY_CODE:dict_remove:1": {"not_found": 404, "conflict": 409},
        "m:STATUS_BY_CODE:dict_remove:2": {"bad_request": 400, "conflict": 409},
        "m:STATUS_BY_CODE:dict_remove:3": {"bad_request": 400, "not_found": 404},
    }


def test_a_class_constant_is_named_after_its_class_and_keeps_its_name_for_tests() -> (
    None
):
    mutants = mutants_of(
        """
        class Accounts:
            order_columns = ("opened_at", "id")
        """
    )

    removals = [m for m in mutants if m.operator == "tuple_remove"]
    assert [m.id for m in removals] == [
        "m:Accounts.order_columns:tuple_remove:1",
        "m:Accounts.order_columns:tuple_remove:2",
    ]
    assert {(m.names, m.owner, m.kind) for m in removals} == {
        (("order_columns",), "Accounts", "constant")
    }
    assert [m.description for m in removals] == [
        "- ('opened_at', 'id') / + ('id',)",
        "- ('opened_at', 'id') / + ('opened_at',)",
    ]


def test_keyword_arguments_are_removed_one_at_a_time() -> None:
    mutated = applied(
        """
        import functools, json

        @functools.cache
        def load(text):
            return json.loads(text, parse_constant=reject, strict=False)
        """
    )

    assert "json.loads(text, strict=False)" in mutated["m:load:kwarg_remove:1"]
    assert "json.loads(text, parse_constant=reject)" in mutated["m:load:kwarg_remove:2"]


def test_a_decorator_loses_a_keyword_argument_but_is_never_removed() -> None:
    mutated = applied(
        """
        @api.route("/accounts", methods=["POST"], strict_slashes=False)
        def open_account():
            pass
        """
    )

    assert set(mutated) == {
        "m:open_account:decorator_kwarg_remove:1",
        "m:open_account:decorator_kwarg_remove:2",
    }
    assert all(text.startswith("\n@api.route('/accounts'") for text in mutated.values())
    assert "methods" not in mutated["m:open_account:decorator_kwarg_remove:1"]
    assert "strict_slashes" not in mutated["m:open_account:decorator_kwarg_remove:2"]


@pytest.mark.parametrize(
    ("expression", "mutated"),
    [
        ("a == b", "a != b"),
        ("a != b", "a == b"),
        ("a < b", "a <= b"),
        ("a <= b", "a < b"),
        ("a > b", "a >= b"),
        ("a >= b", "a > b"),
        ("a in b", "a not in b"),
        ("a not in b", "a in b"),
        ("a is b", "a is not b"),
        ("a is not b", "a is b"),
        ("a and b", "a or b"),
        ("a or b", "a and b"),
        ("not a", "a"),
        ("c and not (a or b)", "c and (a or b)"),
        ("a + b", "a - b"),
        ("a - b", "a + b"),
        ("a * b", "a / b"),
        ("a // b", "a / b"),
        ("a % b", "a / b"),
        ("0", "1"),
        ("41", "42"),
        ("1.5", "2.5"),
        ("True", "False"),
        ("False", "True"),
        ("'x'", "'XXxXX'"),
        ("[a, b]", "[b]"),
        ("{a, b}", "{a}"),
    ],
)
def test_each_operator_changes_one_node(expression: str, mutated: str) -> None:
    texts = applied(f"@cache\ndef f():\n    return {expression}\n").values()

    assert f"@cache\ndef f():\n    return {mutated}\n" in texts
    assert "@cache\ndef f():\n    return None\n" in texts


def test_string_formatting_is_not_turned_into_division_and_none_is_kept() -> None:
    mutants = mutants_of(
        """
        @cache
        def f(name):
            print("hello %s" % name, f"{name}!")
            return None
        """
    )

    assert [m.operator for m in mutants] == ["str"]


def test_docstrings_annotations_and_f_strings_are_never_mutated() -> None:
    mutants = mutants_of(
        '''
        """Module docstring."""

        class Shape:
            """Class docstring."""

            @property
            def sides(self) -> dict[str, int]:
                """Method docstring."""
                counts: dict[str, int] = {}
                return f"{counts!r:>10}"
        '''
    )

    assert [(m.operator, m.replacement) for m in mutants] == [
        ("return_none", "return None")
    ]


def test_skipped_assignments_have_no_mutants() -> None:
    mutants = mutants_of(
        """
        import logging
        from typing import TYPE_CHECKING, TypeAlias, TypeVar

        __all__ = ["Account", "open"]
        logger = logging.getLogger(__name__)
        T = TypeVar("T", bound=int)
        Env: TypeAlias = "dict[str, str]"
        Rows = dict[str, tuple[int, int]]
        Maybe = int | None
        if TYPE_CHECKING:
            LIMIT = 3
        """
    )

    assert mutants == []


def test_applying_a_mutant_leaves_every_other_byte_identical() -> None:
    source = (
        "# caf\u00e9 \u2014 before\r\n"
        "LIMITS = {'caf\u00e9':   1,  # keep me\r\n"
        "          'th\u00e9': 2}\r\n"
        "\x0c\r\n"
        "AFTER   =   'untouched'   # also kept\r\n"
    )
    by_id = {m.id: m for m in file_mutants("m.py", source)}

    assert apply_mutant(source, by_id["m:LIMITS:int:1"]) == source.replace("1,", "2,")
    assert apply_mutant(source, by_id["m:AFTER:str:1"]) == source.replace(
        "'untouched'", "'XXuntouchedXX'"
    )


def test_ids_count_per_name_and_operator_in_source_order() -> None:
    mutants = mutants_of(
        """
        A = [1, 2]
        B = (3, 4)
        """
    )

    assert [m.id for m in mutants] == [
        "m:A:list_remove:1",
        "m:A:list_remove:2",
        "m:A:int:1",
        "m:A:int:2",
        "m:B:tuple_remove:1",
        "m:B:tuple_remove:2",
        "m:B:int:1",
        "m:B:int:2",
    ]


def test_tests_are_selected_by_coverage_for_bodies_and_by_readers_for_constants() -> (
    None
):
    source = textwrap.dedent(
        """
        LIMIT = 3
        DOUBLE = LIMIT * 2
        UNREAD = 4

        @cache
        def check(amount):
            return amount < DOUBLE
        """
    )
    by_id = {m.id: m for m in file_mutants("web/m.py", source)}
    reader = "def use():\n    return 0\n\n\ndef more():\n    return cap(LIMIT)\n"
    refs = build_references({"web/m.py": source, "cli/use.py": reader})
    cov = CoverageMap(
        tests=["tests/a.py::slow", "tests/b.py::fast", "tests/c.py::other"],
        seconds=[5.0, 0.1, 1.0],
        lines={"web/m.py": {8: [0, 1]}, "cli/use.py": {2: [2], 6: [2]}},
    )

    def selected(mutant_id: str) -> list[str]:
        return select_tests(by_id[mutant_id], refs, cov)

    assert selected("web.m:check:compare:1") == ["tests/b.py::fast", "tests/a.py::slow"]
    assert selected("web.m:DOUBLE:int:1") == ["tests/b.py::fast", "tests/a.py::slow"]
    assert selected("web.m:LIMIT:int:1") == [
        "tests/b.py::fast",
        "tests/c.py::other",
        "tests/a.py::slow",
    ]
    assert selected("web.m:UNREAD:int:1") == []
