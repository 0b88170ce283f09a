"""Mutate what mutmut 3 skips (decorated bodies, module/class constants), run tests.

Never mutated: `__all__`, `if TYPE_CHECKING:` blocks, docstrings, f-strings,
annotations, type aliases (`X: TypeAlias = ...`, `dict[...]`, `A | None` values)
and values made by `getLogger`, `get_logger`, `TypeVar`, `ParamSpec`, `NewType`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import hashlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from coverage import Coverage, CoverageData

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "mutants"
TARGET_DIRS = ("bank", "web")
REFERENCE_DIRS = ("bank", "web", "cli", "tests")
COPIED = ("bank", "web", "cli", "bench", "tests", "mutation", "pyproject.toml")
COPIED_TOO = ("README.md", "docs")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "*.db*")
SELF_TEST = "tests/test_mutation_extra.py"
FAST = ("-p", "no:cacheprovider", "-m", "not slow and not postgres")
PLAIN_DECORATORS = frozenset({"staticmethod", "classmethod"})
KEPT_DECORATORS = frozenset({"property", "cached_property", *PLAIN_DECORATORS})
SKIPPED_CALLS = {"getLogger", "get_logger", "TypeVar", "ParamSpec", "NewType"}
TYPING_GENERICS = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "type", "Callable", "Mapping"}
    | {"Sequence", "Iterable", "Iterator", "Literal", "Annotated", "Union", "Optional"}
)
SKIPPED_FIELDS = frozenset({"annotation", "returns", "type_comment"})
_PAIRS: list[tuple[type[ast.cmpop], type[ast.cmpop]]] = [
    (ast.Eq, ast.NotEq),
    (ast.Lt, ast.LtE),
    (ast.Gt, ast.GtE),
    (ast.In, ast.NotIn),
    (ast.Is, ast.IsNot),
]
COMPARE_SWAPS = dict(_PAIRS) | {after: before for before, after in _PAIRS}
ARITH_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Div,
}
# `not x` -> `x` must not let x bind differently to its neighbours.
ATOMIC = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)
PER_MUTANT_CAP, COVERAGE_TIMEOUT = 300.0, 2700.0
CACHE_VERSION = 1
REPORT_ENV = "MUTATION_EXTRA_REPORT"
REPORTED = ("id", "module", "file", "line", "operator", "description")
Kind = Literal["body", "decorator", "constant"]
Function = ast.FunctionDef | ast.AsyncFunctionDef
Node = ast.expr | ast.stmt


@dataclass(frozen=True)
class Region:
    """A place mutmut never mutates: a decorated function or a constant's value."""

    qualname: str
    node: Function | ast.Assign | ast.AnnAssign
    names: tuple[str, ...] = ()
    owner: str = ""


@dataclass(frozen=True)
class Mutant:
    """One change of one AST node: where, what it becomes, and how to test it."""

    id: str
    module: str
    file: str
    line: int
    operator: str
    description: str
    start: int
    end: int
    replacement: str
    kind: Kind
    lines: tuple[int, int]
    names: tuple[str, ...]
    owner: str


@dataclass
class CoverageMap:
    """Which fast tests ran each (file, line), and how long each test took."""

    tests: list[str]
    seconds: list[float]
    lines: dict[str, dict[int, list[int]]]

    def at(self, file: str, first: int, last: int) -> set[int]:
        """The tests that ran any of the lines first..last of file."""
        by_line = self.lines.get(file, {})
        return {t for line in range(first, last + 1) for t in by_line.get(line, ())}


@dataclass
class References:
    """Where names are read, to find the tests of constants (run untraced)."""

    lines: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    consumers: dict[str, set[str]] = field(default_factory=dict)
    bodies: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)


def _callee(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_type_expression(node: ast.expr) -> bool:
    if isinstance(node, ast.Subscript):
        return _callee(node.value) in TYPING_GENERICS
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
        return False
    sides = (node.left, node.right)
    simple = (ast.Name, ast.Attribute)
    return all(
        isinstance(s, simple) or _is_none(s) or _is_type_expression(s) for s in sides
    )


def is_target_function(node: Function) -> bool:
    """Whether mutmut skips it: any decorator but a lone staticmethod/classmethod."""
    names = [_callee(decorator) for decorator in node.decorator_list]
    return bool(names) and not (len(names) == 1 and names[0] in PLAIN_DECORATORS)


def _target_names(target: ast.expr) -> tuple[str, ...]:
    if isinstance(target, ast.Name | ast.Attribute):
        return (_callee(target),)
    if isinstance(target, ast.Tuple | ast.List):
        return tuple(name for elt in target.elts for name in _target_names(elt))
    return _target_names(target.value) if isinstance(target, ast.Subscript) else ()


def _constant(
    stmt: ast.Assign | ast.AnnAssign, scope: tuple[str, ...], owner: str
) -> Region | None:
    value = stmt.value
    if value is None or _is_type_expression(value):
        return None
    if isinstance(stmt, ast.AnnAssign) and _callee(stmt.annotation) == "TypeAlias":
        return None
    if isinstance(value, ast.Call) and _callee(value) in SKIPPED_CALLS:
        return None
    target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
    label = ast.unparse(target).replace(" ", "")
    if label == "__all__":
        return None
    return Region(".".join((*scope, label)), stmt, _target_names(target), owner)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and _callee(node.test) == "TYPE_CHECKING"


def find_regions(tree: ast.Module) -> list[Region]:
    """Decorated functions (nested ones too) and module/class-level assignments."""
    regions: list[Region] = []

    # owner: "" at module level, the class name in a class, None in a function.
    def visit(body: list[ast.stmt], scope: tuple[str, ...], owner: str | None) -> None:
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                if is_target_function(stmt):
                    regions.append(Region(".".join((*scope, stmt.name)), stmt))
                else:
                    visit(stmt.body, (*scope, stmt.name), None)
            elif isinstance(stmt, ast.ClassDef):
                inner = None if owner is None else stmt.name
                visit(stmt.body, (*scope, stmt.name), inner)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                if owner is not None and (region := _constant(stmt, scope, owner)):
                    regions.append(region)
            elif not _is_type_checking(stmt):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(stmt, block, []), scope, owner)
                for handler in getattr(stmt, "handlers", []):
                    visit(handler.body, scope, owner)

    visit(tree.body, (), "")
    return regions


def _walk(node: ast.AST, stmt: ast.stmt) -> Iterator[tuple[Node, ast.stmt]]:
    docstring = isinstance(node, ast.Expr) and _is_str(node.value)
    if docstring or isinstance(node, ast.JoinedStr) or _is_type_checking(node):
        return
    stmt = node if isinstance(node, ast.stmt) else stmt
    if isinstance(node, ast.expr | ast.stmt):
        yield node, stmt
    for name, value in ast.iter_fields(node):
        for child in value if isinstance(value, list) else [value]:
            if name not in SKIPPED_FIELDS and isinstance(child, ast.AST):
                yield from _walk(child, stmt)


def _constant_mutations(value: object) -> Iterator[tuple[str, ast.AST]]:
    if isinstance(value, bool):
        yield "bool", ast.Constant(not value)
    elif isinstance(value, int | float):
        yield type(value).__name__, ast.Constant(value + 1)
    elif isinstance(value, str):
        yield "str", ast.Constant(f"XX{value}XX")


def _removals(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    if isinstance(node, ast.Dict):
        for i in range(len(node.keys)):
            keys, values = node.keys[:i] + node.keys[i + 1 :], [*node.values]
            yield "dict_remove", ast.Dict(keys, values[:i] + values[i + 1 :])
    elif isinstance(node, ast.Set) or (
        isinstance(node, ast.List | ast.Tuple) and isinstance(node.ctx, ast.Load)
    ):
        for i in range(len(node.elts)):
            elts = node.elts[:i] + node.elts[i + 1 :]
            smaller = ast.Set(elts) if isinstance(node, ast.Set) else type(node)(elts)
            yield f"{type(node).__name__.lower()}_remove", smaller
    elif isinstance(node, ast.Call):
        for i in range(len(node.keywords)):
            keywords = node.keywords[:i] + node.keywords[i + 1 :]
            yield "kwarg_remove", ast.Call(node.func, node.args, keywords)


def mutations(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """Each (operator, replacement node) that changes just this node."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if (swap := COMPARE_SWAPS.get(type(op))) is not None:
                ops = [*node.ops[:i], swap(), *node.ops[i + 1 :]]
                yield "compare", ast.Compare(node.left, ops, node.comparators)
    elif isinstance(node, ast.BoolOp):
        flipped = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield "boolop", ast.BoolOp(flipped, node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not_remove", node.operand
    elif isinstance(node, ast.BinOp) and (arith := ARITH_SWAPS.get(type(node.op))):
        formatting = isinstance(node.left, ast.JoinedStr) or _is_str(node.left)
        if not (isinstance(node.op, ast.Mod) and formatting):
            yield "arith", ast.BinOp(node.left, arith(), node.right)
    elif isinstance(node, ast.Constant):
        yield from _constant_mutations(node.value)
    elif isinstance(node, ast.Return) and node.value and not _is_none(node.value):
        yield "return_none", ast.Return(ast.Constant(None))
    else:
        yield from _removals(node)


Candidate = tuple[str, Node, ast.AST, Kind, tuple[int, int]]


def _candidates(region: Region) -> Iterator[Candidate]:
    """(operator, node, replacement, kind, lines whose tests should run)."""
    node = region.node
    if isinstance(node, ast.Assign | ast.AnnAssign):
        for child, _ in _walk(node.value, node) if node.value else ():
            for operator, new in mutations(child):
                yield operator, child, new, "constant", (0, 0)
        return
    body = (node.body[0].lineno, node.end_lineno or node.lineno)
    for decorator in node.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and _callee(decorator) not in KEPT_DECORATORS
        ):
            for operator, new in _removals(decorator):
                yield f"decorator_{operator}", decorator, new, "decorator", body
    for stmt in node.body:
        for child, enclosing in _walk(stmt, stmt):
            span = (enclosing.lineno, child.end_lineno or child.lineno)
            for operator, new in mutations(child):
                yield operator, child, new, "body", span


def _describe(old: str, new: str, context: int = 15, width: int = 60) -> str:
    old, new = " ".join(old.split()), " ".join(new.split())
    common = os.path.commonprefix
    prefix = len(common([old, new]))
    suffix = len(common([old[prefix:][::-1], new[prefix:][::-1]]))
    begin = max(0, prefix - context)

    def cut(text: str) -> str:
        end = min(len(text), len(text) - suffix + context, begin + width)
        return (
            ("…" if begin else "") + text[begin:end] + ("…" if end < len(text) else "")
        )

    return f"- {cut(old)} / + {cut(new)}"


def file_mutants(rel: str, source: str) -> list[Mutant]:
    """Every mutant of one file (path relative to the repo), in source order."""
    module = rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    # The tokenizer's newlines only: str.splitlines also splits at \f, \x1c...
    lines = re.split(r"(?<=\n)|(?<=\r)(?!\n)", source)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int | None, col: int | None) -> int:  # col counts UTF-8 bytes
        assert lineno is not None
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    found: list[tuple[int, int, str, Region, Candidate]] = []
    for region in find_regions(ast.parse(source)):
        for candidate in _candidates(region):
            operator, node, new = candidate[:3]
            start = offset(node.lineno, node.col_offset)
            end = offset(node.end_lineno, node.end_col_offset)
            text = ast.unparse(new)
            if operator == "not_remove" and not isinstance(new, ATOMIC):
                text = f"({text})"
            if text != source[start:end]:
                found.append((start, end, text, region, candidate))
    counts: Counter[tuple[str, str]] = Counter()
    mutants: list[Mutant] = []
    for start, end, text, region, (operator, node, _, kind, span) in sorted(
        found, key=lambda item: item[0]
    ):
        mutated = source[:start] + text + source[end:]
        try:
            compile(mutated, rel, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        counts[region.qualname, operator] += 1
        n = counts[region.qualname, operator]
        mutants.append(
            Mutant(
                id=f"{module}:{region.qualname}:{operator}:{n}",
                module=module,
                file=rel,
                line=node.lineno,
                operator=operator,
                description=_describe(ast.unparse(node), text),
                start=start,
                end=end,
                replacement=text,
                kind=kind,
                lines=span,
                names=region.names,
                owner=region.owner,
            )
        )
    return mutants


def apply_mutant(source: str, mutant: Mutant) -> str:
    """The file's source with only the mutated node's text replaced."""
    return source[: mutant.start] + mutant.replacement + source[mutant.end :]


def python_files(root: Path, dirs: tuple[str, ...]) -> dict[str, str]:
    """Relative path to source, for every .py file under dirs."""
    paths = sorted(p for d in dirs for p in (root / d).rglob("*.py"))
    return {
        p.relative_to(root).as_posix(): p.read_bytes().decode()
        for p in paths
        if "__pycache__" not in p.parts
    }


def collect_mutants(root: Path, only: str) -> list[Mutant]:
    """The mutants of the target files matching only, less mutmut's do_not_mutate."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    skipped = config.get("tool", {}).get("mutmut", {}).get("do_not_mutate", [])
    return [
        mutant
        for rel, text in python_files(root, TARGET_DIRS).items()
        if fnmatch.fnmatch(rel, only)
        and not any(fnmatch.fnmatch(rel, pattern) for pattern in skipped)
        for mutant in file_mutants(rel, text)
    ]


def _names_in(*nodes: ast.AST) -> set[str]:
    walked = (n for node in nodes for n in ast.walk(node))
    return {_callee(n) for n in walked if isinstance(n, ast.Name | ast.Attribute)}


def build_references(sources: Mapping[str, str]) -> References:
    """Who reads which name; which constants and def signatures read it."""
    refs = References(defaultdict(list), defaultdict(set), defaultdict(list))
    for rel, source in sources.items():
        try:
            tree = ast.parse(source)
        except SyntaxError:  # someone is halfway through an edit
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute):
                refs.lines[_callee(node)].append((rel, node.end_lineno or node.lineno))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                span = (rel, node.body[0].lineno, node.end_lineno or node.lineno)
                defaults = [d for d in node.args.kw_defaults if d]
                for name in _names_in(
                    *node.decorator_list, *node.args.defaults, *defaults
                ):
                    refs.bodies[name].append(span)
        for region in find_regions(tree) if not rel.startswith("tests/") else ():
            if (
                isinstance(region.node, ast.Assign | ast.AnnAssign)
                and region.node.value
            ):
                for name in _names_in(region.node.value):
                    refs.consumers[name].update(region.names)
    return References(dict(refs.lines), dict(refs.consumers), dict(refs.bodies))


def _tests_reading(
    names: tuple[str, ...], refs: References, cov: CoverageMap
) -> set[int]:
    seen, todo = set(names), list(names)
    while todo:  # a constant read by another constant is tested by that one's tests
        for consumer in refs.consumers.get(todo.pop(), set()) - seen:
            seen.add(consumer)
            todo.append(consumer)
    tests: set[int] = set()
    for name in seen:
        for file, line in refs.lines.get(name, []):
            tests |= cov.at(file, line, line)
        for file, first, last in refs.bodies.get(name, []):
            tests |= cov.at(file, first, last)
    return tests


def select_tests(mutant: Mutant, refs: References, cov: CoverageMap) -> list[str]:
    """The tests to run against a mutant, quickest first (so -x stops early)."""
    if mutant.kind != "constant":
        chosen = cov.at(mutant.file, *mutant.lines)
    else:
        chosen = _tests_reading(mutant.names, refs, cov)
        if not chosen and mutant.owner:  # e.g. pydantic's model_config
            chosen = _tests_reading((mutant.owner,), refs, cov)
    return [cov.tests[i] for i in sorted(chosen, key=lambda i: (cov.seconds[i], i))]


# A pytest plugin (`-p mutation.extra`) for the coverage run: a context per test.
_SECONDS: dict[str, float] = {}
_FAILED: set[str] = set()


def _switch_context(name: str) -> None:
    if (current := Coverage.current()) is not None:
        current.switch_context(name)


def pytest_runtest_logstart(nodeid: str) -> None:
    """Attribute the lines run from here on (setup, call, teardown) to this test."""
    _switch_context(nodeid)


def pytest_runtest_logfinish() -> None:
    """Stop attributing lines to the test that finished."""
    _switch_context("")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each test's phases; remember the tests that fail unmutated."""
    _SECONDS[report.nodeid] = _SECONDS.get(report.nodeid, 0.0) + report.duration
    if report.failed:
        _FAILED.add(report.nodeid)


def pytest_sessionfinish() -> None:
    """Hand the durations and failures over to the tool."""
    if path := os.environ.get(REPORT_ENV):
        Path(path).write_text(json.dumps({"seconds": _SECONDS, "failed": [*_FAILED]}))


_ACTIVE: set[subprocess.Popen[bytes]] = set()


def _run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float, log: str
) -> int | None:
    """The exit code, or None if timeout passed; its whole process group ends."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=sink, stderr=sink, start_new_session=True
        )
        _ACTIVE.add(process)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # and what tests left running
            process.wait()
            _ACTIVE.discard(process)


def _env(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != REPORT_ENV}
    env["PYTHONPATH"] = str(copy)
    # Never an mtime-checked pyc: a same-size mutant within a second could reuse it.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def prepare_copies(jobs: int) -> list[Path]:
    """A fresh, precompiled copy of the repo per worker, importing bank from itself."""
    OUT.mkdir(exist_ok=True)
    copies: list[Path] = []
    for k in range(jobs):
        source, dest = copies[0] if copies else ROOT, OUT / f"extra-worker-{k}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        for name in COPIED + COPIED_TOO:
            if (source / name).is_dir():
                shutil.copytree(source / name, dest / name, ignore=IGNORED)
            elif (source / name).is_file():
                shutil.copy2(source / name, dest / name)
        # Hash-checked pycs: reused while a module is unmutated, never otherwise.
        compiled = ["-m", "compileall", "-q", "--invalidation-mode", "checked-hash"]
        check = (
            "import bank, web, cli; print(bank.__file__, web.__file__, cli.__file__)"
        )
        for args in ([*compiled, "bank", "web", "cli"], ["-c", check]):
            found = subprocess.run(
                [sys.executable, *args],
                cwd=dest,
                env=_env(dest),
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout.split()
        if len(found) != 3 or not all(f.startswith(f"{dest}{os.sep}") for f in found):
            raise SystemExit(f"{dest}: bank, web and cli import from {found}")
        copies.append(dest)
    return copies


def _source_key(root: Path) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}".encode())
    paths = [p for d in REFERENCE_DIRS for p in (root / d).rglob("*") if p.is_file()]
    for path in sorted([*paths, root / "pyproject.toml"]):
        if "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _measure(
    copy: Path, tmp: str
) -> tuple[list[str], list[float], dict[str, dict[int, list[int]]]]:
    rcfile, report = Path(tmp, "coveragerc"), Path(tmp, "tests.json")
    log = OUT / "extra-coverage.log"
    sources = "".join(f"\n    {copy / d}" for d in REFERENCE_DIRS)
    rcfile.write_text(f"[run]\ndata_file = {tmp}/.coverage\nsource ={sources}\n")
    env = _env(copy) | {REPORT_ENV: str(report)}
    command = [sys.executable, "-m", "coverage", "run", f"--rcfile={rcfile}", "-m"]
    command += ["pytest", "-q", *FAST, "-p", "mutation.extra"]
    print(f"running the fast tests under coverage (log: {log})", flush=True)
    code = _run(command, copy, env, COVERAGE_TIMEOUT, str(log))
    if code not in (0, 1) or not report.exists():
        raise SystemExit(f"the coverage run failed (exit {code}), see {log}")
    outcome = json.loads(report.read_text())
    if failed := set(outcome["failed"]):
        print(f"never selected, as they fail unmutated: {sorted(failed)}")
    tests = sorted(
        t for t in outcome["seconds"] if t not in failed and SELF_TEST not in t
    )
    index = {test: i for i, test in enumerate(tests)}
    data = CoverageData(basename=f"{tmp}/.coverage")
    data.read()
    lines: dict[str, dict[int, list[int]]] = {}
    for filename in data.measured_files():
        by_line = lines.setdefault(Path(os.path.relpath(filename, copy)).as_posix(), {})
        for line, contexts in data.contexts_by_lineno(filename).items():
            if ids := sorted({index[c] for c in contexts if c in index}):
                by_line[line] = ids
    return tests, [float(outcome["seconds"][t]) for t in tests], lines


def measure_coverage(copy: Path) -> CoverageMap:
    """Each fast test's coverage, cached while sources and tests are unchanged."""
    cache, key = OUT / "extra-coverage.json", _source_key(copy)
    if cache.exists() and (saved := json.loads(cache.read_text()))["key"] == key:
        lines = {
            f: {int(n): t for n, t in b.items()} for f, b in saved["lines"].items()
        }
        return CoverageMap(saved["tests"], saved["seconds"], lines)
    with tempfile.TemporaryDirectory() as tmp:
        cov = CoverageMap(*_measure(copy, tmp))
    cache.write_text(json.dumps({"key": key, **vars(cov)}))
    return cov


def run_mutant(
    mutant: Mutant, copy: Path, source: str, tests: list[str], budget: float
) -> str:
    """killed, survived, timeout or no_tests: one mutant against its tests."""
    if not tests:
        return "no_tests"
    path = copy / mutant.file
    path.write_bytes(apply_mutant(source, mutant).encode())
    try:
        command = [sys.executable, "-m", "pytest", "-x", "-q", *FAST, *tests]
        code = _run(command, copy, _env(copy), budget, os.devnull)
    finally:
        path.write_bytes(source.encode())
    # Exit 5: pytest ran nothing (every selected test was deselected).
    return {None: "timeout", 0: "survived", 5: "no_tests"}.get(code, "killed")


def run_all(
    mutants: list[Mutant], copies: list[Path], refs: References, cov: CoverageMap
) -> list[dict[str, object]]:
    """Run the mutants, one per worker copy at a time; results in mutant order."""
    sources = python_files(copies[0], TARGET_DIRS)
    free: queue.Queue[Path] = queue.Queue()
    for copy in copies:
        free.put(copy)
    seconds_of = dict(zip(cov.tests, cov.seconds, strict=True))
    finished = itertools.count(1)

    def work(mutant: Mutant) -> dict[str, object]:
        tests = select_tests(mutant, refs, cov)
        copy, started = free.get(), time.monotonic()
        budget = min(PER_MUTANT_CAP, 30 + 10 * sum(seconds_of[t] for t in tests))
        try:
            status = run_mutant(mutant, copy, sources[mutant.file], tests, budget)
        finally:
            free.put(copy)
        print(f"[{next(finished)}/{len(mutants)}] {status:8} {mutant.id}", flush=True)
        took = round(time.monotonic() - started, 2)
        return {k: getattr(mutant, k) for k in REPORTED} | {
            "status": status,
            "tests_run": len(tests),
            "seconds": took,
        }

    pool = ThreadPoolExecutor(len(copies))
    try:
        return list(pool.map(work, mutants))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(_ACTIVE):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        raise
    finally:
        pool.shutdown()


def summary(results: list[dict[str, object]]) -> str:
    """Killed / survived / no_tests / timeout per module, and in all."""
    statuses = ("killed", "survived", "no_tests", "timeout")
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        for module in (str(result["module"]), "TOTAL"):
            counts[module][str(result["status"])] += 1
    rows = [f"{'module':36}" + "".join(f"{s:>10}" for s in statuses)]
    for module, count in sorted(counts.items(), key=lambda item: item[0] == "TOTAL"):
        rows.append(f"{module:36}" + "".join(f"{count[s]:10}" for s in statuses))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """List the mutants, or run them against their tests and write the results."""
    parser = argparse.ArgumentParser(
        prog="python -m mutation.extra", description=__doc__
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel workers (2)")
    parser.add_argument("--only", default="*", help="fnmatch on paths: web/errors.py")
    parser.add_argument("--list", action="store_true", help="list them, run nothing")
    args = parser.parse_args(argv)
    if args.list:
        mutants = collect_mutants(ROOT, args.only)
        for mutant in mutants:
            print(f"{mutant.id}  {mutant.file}:{mutant.line}  {mutant.description}")
        for module, count in sorted(Counter(m.module for m in mutants).items()):
            print(f"{count:6}  {module}")
        print(f"{len(mutants):6}  in all")
        return 0
    started = time.monotonic()
    copies = prepare_copies(max(1, args.jobs))
    mutants = collect_mutants(copies[0], args.only)
    cov = measure_coverage(copies[0])
    sources = python_files(copies[0], REFERENCE_DIRS)
    refs = build_references({r: s for r, s in sources.items() if r != SELF_TEST})
    print(f"{len(mutants)} mutants, {len(cov.tests)} tests, {len(copies)} workers")
    results = run_all(mutants, copies, refs, cov)
    # Earlier results of the files outside --only stay, so runs per file add up.
    path = OUT / "extra-results.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    kept = [r for r in earlier if not fnmatch.fnmatch(r["file"], args.only)]
    path.write_text(json.dumps(kept + results, indent=1) + "\n")
    print(summary(results))
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
