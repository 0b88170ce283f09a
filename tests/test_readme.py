"""The README's shell examples, run top to bottom against one fresh bank.

README.md's ```sh blocks are read in document order. A line starting with `$ `
is a command, continued over the next lines while a line ends with a backslash
or a quote is open (a trailing `# ...` is a shell comment and dropped); the
lines after it, up to the next `$ ` or the end of the block, are its documented
answer. One `bank serve` (two workers) on a fresh database answers every
`$ curl ...`, with localhost:8000 rewritten to the server's port: the real curl
binary when one is installed, otherwise the same request sent with http.client
(curl's -s, -i, -X, -H, -d/--data and the URL are supported; anything else is
refused). Every `$ bank ...` runs `.venv/bin/bank --db <that database>` with the
database's environment (the PostgreSQL schema comes in SQLALCHEMY_SCHEMA).

What is compared, after the placeholders below:

- curl: the status (the `# NNN` comment line before the body; with -i, the
  `HTTP/1.1 NNN Reason` line), every header shown (headers not shown are not
  checked), and the JSON body, which must be shown and equal. Other `#` lines
  are prose.
- bank: stdout and stderr together, then the exit status as one more line when
  the command ends in `; echo $?` (otherwise the status must be 0), line by
  line, after dropping blank lines and rich's border lines (only box-drawing
  characters) and collapsing runs of whitespace on both sides: a rich table
  compares cell by cell, however it is padded.

Placeholders: `…` (U+2026) in a JSON string stands for any text of at least
one character, so "…" is any string (never a number or null); a bare `…` where
a JSON value goes stands for any whole number; in a line of command output,
`…` is any text; a line that is only `…` is any number of lines.

Names: `<name>` (lower-case letters, digits, `_`) in an answer matches an id, 1+
letters, digits or `-_.:`, and names it: the first answer that shows it gives
its value, and from then on every `<name>` in a command or an answer is that
value (a command may use only a name an earlier answer gave). So a transfer id
the bank made can be posted, read and reversed by later examples.

Not run, by rule and never silently: a block whose nearest non-blank line
before it is `<!-- not run: <why> -->`, and the commands in NOT_RUN. Any other
```sh block without a `$` command fails the test, as does a `$` command that is
neither curl nor bank, or a `$ curl`/`$ bank` line outside a ```sh block.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from live_server import BANK_SCRIPT, REPO_ROOT, running_server

from web.testing import HOST

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from conftest import BankEnv

README = REPO_ROOT / "README.md"
PLACEHOLDER = "…"
NAME = re.compile(r"<([a-z][a-z0-9_]*)>")
NAMED_TEXT = r"[A-Za-z0-9_.:-]+"  # what a name stands for: an id
TOKEN = re.compile(f"{PLACEHOLDER}|{NAME.pattern}")
# A bare `…` as a JSON value, and the string it is read as: any whole number.
BARE_NUMBER = re.compile(r"(?<=[:\[,])(\s*)…(?=\s*[,}\]])")
ANY_NUMBER = "\u2026 a whole number \u2026"
NOT_RUN_MARKER = re.compile(r"<!-- not run: .+ -->")
# Commands that cannot run against the test's server, by their first words.
NOT_RUN = {
    ("bank", "serve"): "serves until stopped; this test runs a server of its own",
}
DOCUMENTED_ADDRESS = "localhost:8000"
REQUEST_SECONDS = 10
CLI_SECONDS = 60
STATUS_COMMENT = re.compile(r"#\s*(\d{3})\b")
STATUS_LINE = re.compile(r"HTTP/\S+ (\d{3})(?: .*)?")
HEADER_LINE = re.compile(r"([A-Za-z0-9-]+):\s*(.*)")
BORDER_LINE = re.compile(r"[\u2500-\u257f\s]*")
SHELL_OPERATORS = {";", "&", "&&", "|", "||", "<", ">", ">>", "(", ")"}
# Dropped from the CLI's environment: rich must print plain text, no colours.
COLOUR_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


class ReadmeFormatError(Exception):
    """README.md has an example this test cannot read."""


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, where it starts, its lines."""

    language: str
    first_line: int  # README line number of the block's first line of content
    lines: list[str]
    not_run: bool


@dataclass(frozen=True)
class Example:
    """One `$` command and the answer the README shows for it."""

    line: int  # README line number of the `$`
    source: str  # the command as written, continuation lines included
    argv: list[str]
    echo_status: bool  # ends in `; echo $?`
    answer: list[str]  # the documented answer, as written
    answer_line: int

    def describe(self) -> str:
        """Where and what, for a failure message."""
        return f"README.md line {self.line}: $ {self.source}"

    def bound(self, names: Mapping[str, str]) -> Example | None:
        """With the `<name>`s earlier answers gave replaced; None if one is missing."""
        source = bind(self.source, names)
        if NAME.search(source):
            return None
        words = split_command(source) or []
        return replace(
            self,
            argv=words[:-3] if self.echo_status else words,
            answer=[bind(line, names) for line in self.answer],
        )


@dataclass(frozen=True)
class ExpectedHttp:
    """The documented HTTP answer of a curl example."""

    status: int
    status_line: str | None  # shown with -i
    headers: list[tuple[str, str]]
    body: Any


@dataclass(frozen=True)
class CurlRequest:
    """The parts of a curl command line this test understands."""

    arguments: list[str]  # after `curl`, the URL rewritten to the test server
    method: str
    url: str
    headers: list[tuple[str, str]]
    data: str | None
    include: bool


@dataclass(frozen=True)
class HttpAnswer:
    """What the server answered."""

    status: int
    status_line: str
    headers: list[tuple[str, str]]
    body: str

    def render(self) -> str:
        """Status, headers and body, the body as JSON when it is."""
        shown = [
            self.status_line,
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        try:
            body = json.dumps(json.loads(self.body), ensure_ascii=False)
        except ValueError:
            body = self.body
        return "\n".join([*shown, "", body])


def fenced_blocks(text: str) -> Iterator[Block]:
    """Every fenced code block of a Markdown text, in order."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("```"):
            index += 1
            continue
        before = next((ln for ln in reversed(lines[:index]) if ln.strip()), "")
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise ReadmeFormatError(f"README.md line {index + 1}: unclosed block")
        yield Block(
            language=line[3:].strip(),
            first_line=index + 2,
            lines=lines[index + 1 : end],
            not_run=NOT_RUN_MARKER.fullmatch(before.strip()) is not None,
        )
        index = end + 1


def split_command(source: str) -> list[str] | None:
    """The words of a shell command (comments dropped); None while a quote is open."""
    lexer = shlex.shlex(
        re.sub(r"\\\n", " ", source), posix=True, punctuation_chars=True
    )
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


def read_examples(text: str) -> tuple[list[Example], list[str]]:
    """The examples to run, in order, and a line for each one not run and why."""
    examples: list[Example] = []
    not_run: list[str] = []
    for block in fenced_blocks(text):
        commands = [ln for ln in block.lines if ln.startswith("$ ")]
        if block.not_run:
            not_run.append(f"README.md line {block.first_line - 1}: a marked block")
            continue
        if block.language != "sh":
            for offset, line in enumerate(block.lines):
                if re.match(r"\$ (curl|bank)\b", line):
                    raise ReadmeFormatError(
                        f"README.md line {block.first_line + offset}: a shell "
                        "example outside a ```sh block"
                    )
            continue
        if not commands:
            raise ReadmeFormatError(
                f"README.md line {block.first_line - 1}: a ```sh block without "
                "`$` commands; precede it with <!-- not run: why --> if it is "
                "not meant to run"
            )
        examples += read_block(block, not_run)
    given: set[str] = set()
    for example in examples:
        missing = sorted(set(NAME.findall(example.source)) - given)
        if missing:
            raise ReadmeFormatError(
                f"{example.describe()}\nuses <{missing[0]}>, which no earlier "
                "answer names"
            )
        given |= set(NAME.findall("\n".join(example.answer)))
    return examples, not_run


def read_block(block: Block, not_run: list[str]) -> list[Example]:
    """The examples of one ```sh block."""
    examples: list[Example] = []
    lines = block.lines
    index = 0
    while index < len(lines):
        number = block.first_line + index
        if not lines[index].startswith("$ "):
            if lines[index].strip():
                raise ReadmeFormatError(
                    f"README.md line {number}: text before the block's first `$`"
                )
            index += 1
            continue
        source = lines[index][2:]
        while source.endswith("\\") or split_command(source) is None:
            index += 1
            if index == len(lines):
                raise ReadmeFormatError(f"README.md line {number}: unfinished command")
            source += "\n" + lines[index]
        index += 1
        answer_start = index
        while index < len(lines) and not lines[index].startswith("$ "):
            index += 1
        answer = lines[answer_start:index]
        while answer and not answer[-1].strip():
            answer.pop()
        # Names are bound when the example runs; for now, a word each.
        words = split_command(NAME.sub(r"\1", source)) or []
        echo_status = words[-3:] == [";", "echo", "$?"]
        if echo_status:
            words = words[:-3]
        if not words or SHELL_OPERATORS & set(words):
            raise ReadmeFormatError(
                f"README.md line {number}: only `; echo $?` may follow a command"
            )
        reason = NOT_RUN.get((words[0], words[1] if len(words) > 1 else ""))
        if reason is not None:
            not_run.append(f"README.md line {number}: {' '.join(words[:2])}: {reason}")
            continue
        if words[0] not in {"curl", "bank"}:
            raise ReadmeFormatError(
                f"README.md line {number}: `{words[0]}` is neither curl nor bank; "
                "add it to NOT_RUN or mark its block <!-- not run: why -->"
            )
        example = Example(
            number, source, words, echo_status, answer, block.first_line + answer_start
        )
        if words[0] == "curl":
            parse_curl(example, port=8000)
            expected_http(example)
        examples.append(example)
    return examples


def parse_curl(example: Example, port: int) -> CurlRequest:
    """The request of a curl example, aimed at 127.0.0.1:port."""
    arguments = example.argv[1:]
    rewritten: list[str] = []
    method: str | None = None
    url: str | None = None
    headers: list[tuple[str, str]] = []
    data: str | None = None
    include = False
    index = 0

    def value() -> str:
        if index + 1 >= len(arguments):
            raise ReadmeFormatError(
                f"{example.describe()}\n{arguments[index]}: no value"
            )
        return arguments[index + 1]

    while index < len(arguments):
        argument = arguments[index]
        taken = 1
        if argument in {"-X", "--request"}:
            method, taken = value(), 2
        elif argument in {"-H", "--header"}:
            name, colon, header_value = value().partition(":")
            if not colon:
                raise ReadmeFormatError(f"{example.describe()}\nbad header {value()!r}")
            headers.append((name.strip(), header_value.strip()))
            taken = 2
        elif argument in {"-d", "--data"}:
            if data is not None or value().startswith("@"):
                raise ReadmeFormatError(f"{example.describe()}\none inline -d only")
            data, taken = value(), 2
        elif argument in {"-s", "--silent", "-i", "--include"} or re.fullmatch(
            r"-[si]+", argument
        ):
            include = include or argument == "--include" or "i" in argument[1:]
        elif argument.startswith("-"):
            raise ReadmeFormatError(
                f"{example.describe()}\ncurl option {argument} is not supported here"
            )
        elif url is not None:
            raise ReadmeFormatError(f"{example.describe()}\nmore than one URL")
        else:
            if DOCUMENTED_ADDRESS not in argument:
                raise ReadmeFormatError(
                    f"{example.describe()}\nthe URL is not on {DOCUMENTED_ADDRESS}"
                )
            url = argument.replace(DOCUMENTED_ADDRESS, f"{HOST}:{port}")
            rewritten.append(url)
            index += 1
            continue
        rewritten += arguments[index : index + taken]
        index += taken
    if url is None:
        raise ReadmeFormatError(f"{example.describe()}\nno URL")
    return CurlRequest(
        rewritten,
        method or ("POST" if data is not None else "GET"),
        url,
        headers,
        data,
        include,
    )


def expected_http(example: Example) -> ExpectedHttp:
    """The status, headers and JSON body a curl example documents."""
    include = parse_curl(example, port=8000).include
    status: int | None = None
    status_line: str | None = None
    headers: list[tuple[str, str]] = []
    body_lines: list[str] = []
    for line in example.answer:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            match = STATUS_COMMENT.match(stripped)
            if match and status is None and not include:
                status = int(match.group(1))
            continue
        if body_lines or stripped[0] in "[{":
            body_lines.append(line)
            continue
        match = STATUS_LINE.fullmatch(stripped)
        if include and status is None and match:
            status, status_line = int(match.group(1)), stripped
            continue
        header = HEADER_LINE.fullmatch(stripped)
        if include and status is not None and header:
            headers.append((header.group(1), header.group(2)))
            continue
        raise ReadmeFormatError(
            f"{example.describe()}\nunexpected answer line {stripped!r}"
        )
    if status is None:
        shown = "an `HTTP/1.1 NNN Reason` line" if include else "a `# NNN` line"
        raise ReadmeFormatError(f"{example.describe()}\nno status: show {shown}")
    try:
        body = json.loads(BARE_NUMBER.sub(f'\\1"{ANY_NUMBER}"', "\n".join(body_lines)))
    except ValueError as error:
        raise ReadmeFormatError(
            f"{example.describe()}\nthe documented body is not JSON: {error}"
        ) from None
    return ExpectedHttp(status, status_line, headers, body)


def bind(text: str, names: Mapping[str, str]) -> str:
    """The text with each `<name>` that has a value replaced by it."""
    return NAME.sub(lambda found: names.get(found.group(1), found.group(0)), text)


def text_captures(expected: str, actual: str) -> dict[str, str] | None:
    """The values of expected's `<name>`s if actual matches it (`…`: any text)."""
    pattern: list[str] = []
    seen: set[str] = set()
    end = 0
    for token in TOKEN.finditer(expected):
        pattern.append(re.escape(expected[end : token.start()]))
        name = token.group(1)
        if name is None:
            pattern.append(".+?")
        elif name in seen:
            pattern.append(f"(?P={name})")
        else:
            seen.add(name)
            pattern.append(f"(?P<{name}>{NAMED_TEXT})")
        end = token.end()
    pattern.append(re.escape(expected[end:]))
    match = re.fullmatch("".join(pattern), actual, re.DOTALL)
    return None if match is None else match.groupdict()


def text_matches(expected: str, actual: str) -> bool:
    """Whether actual is expected with some text (1+ characters) for each `…`."""
    return text_captures(expected, actual) is not None


def json_matches(
    expected: Any, actual: Any, names: dict[str, str] | None = None
) -> bool:
    """Equal JSON values, where a string with `…` matches any string of its shape.

    The values of the `<name>`s found go into `names` (one name, one value).
    """
    found = {} if names is None else names
    if expected == ANY_NUMBER:
        return type(actual) is int
    if isinstance(expected, str):
        if not isinstance(actual, str):
            return False
        captured = text_captures(bind(expected, found), actual)
        found.update(captured or {})
        return captured is not None
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(json_matches(expected[key], actual[key], found) for key in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(
                json_matches(e, a, found) for e, a in zip(expected, actual, strict=True)
            )
        )
    return type(expected) is type(actual) and expected == actual


def normalised(lines: list[str]) -> list[str]:
    """Lines without blanks or table borders, each with its whitespace collapsed."""
    return [
        " ".join(line.split())
        for line in lines
        if line.strip() and not BORDER_LINE.fullmatch(line)
    ]


def lines_match(
    expected: list[str], actual: list[str], names: dict[str, str] | None = None
) -> bool:
    """Line by line, with `…` lines standing for any number of lines.

    The values of the `<name>`s found go into `names`.
    """
    wanted, got = normalised(expected), normalised(actual)

    @functools.cache
    def match(i: int, j: int) -> dict[str, str] | None:
        if i == len(wanted):
            return {} if j == len(got) else None
        if wanted[i] == PLACEHOLDER:
            tails = (match(i + 1, k) for k in range(j, len(got) + 1))
            return next((tail for tail in tails if tail is not None), None)
        here = text_captures(wanted[i], got[j]) if j < len(got) else None
        rest = None if here is None else match(i + 1, j + 1)
        if here is None or rest is None:
            return None
        if any(rest.get(name, value) != value for name, value in here.items()):
            return None
        return {**here, **rest}

    found = match(0, 0)
    if found is not None and names is not None:
        names.update(found)
    return found is not None


def send_with_curl(curl: str, request: CurlRequest) -> HttpAnswer:
    """Run the real curl (no ~/.curlrc, no proxy), with the headers included."""
    argv = [curl, "-q", "--include", "--noproxy", "*", "--max-time"]
    argv += [str(REQUEST_SECONDS), *request.arguments]
    completed = subprocess.run(
        argv, capture_output=True, timeout=REQUEST_SECONDS + 5, check=False
    )
    if completed.returncode != 0:
        return HttpAnswer(0, f"curl exited {completed.returncode}", [], "")
    raw = completed.stdout
    while True:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        if not 100 <= status < 200:
            break
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
    ]
    return HttpAnswer(status, status_line, headers, raw.decode(errors="replace"))


def send_with_http_client(request: CurlRequest) -> HttpAnswer:
    """The same request as curl would send it, through http.client."""
    parts = urlsplit(request.url if "://" in request.url else f"http://{request.url}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": "curl", "Accept": "*/*"}
    if request.data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers.update(request.headers)
    connection = http.client.HTTPConnection(
        parts.hostname or HOST, parts.port or 80, timeout=REQUEST_SECONDS
    )
    try:
        connection.request(
            request.method,
            path,
            body=None if request.data is None else request.data.encode(),
            headers=headers,
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    version = "HTTP/1.1" if response.version == 11 else "HTTP/1.0"
    return HttpAnswer(
        response.status,
        f"{version} {response.status} {response.reason}",
        response.getheaders(),
        body.decode(errors="replace"),
    )


def check_curl(
    example: Example, port: int, curl: str | None, names: dict[str, str]
) -> str | None:
    """Run one curl example; a description of the mismatch, or None.

    The values of the `<name>`s its answer gives go into `names`.
    """
    request = parse_curl(example, port)
    expected = expected_http(example)
    if curl is None:
        answer = send_with_http_client(request)
    else:
        answer = send_with_curl(curl, request)
    problems: list[str] = []
    found: dict[str, str] = {}
    if answer.status != expected.status:
        problems.append(f"status {answer.status}, not {expected.status}")
    if expected.status_line is not None and not text_matches(
        " ".join(expected.status_line.split()), " ".join(answer.status_line.split())
    ):
        problems.append(f"status line {answer.status_line!r}")
    for name, value in expected.headers:
        values = [v for n, v in answer.headers if n.lower() == name.lower()]
        captured = (text_captures(bind(value, found), v) for v in values)
        header_names = next((c for c in captured if c is not None), None)
        if header_names is None:
            problems.append(f"header {name}: {values or 'absent'}")
        found.update(header_names or {})
    try:
        body = json.loads(answer.body)
    except ValueError:
        problems.append("the body is not JSON")
    else:
        if not json_matches(expected.body, body, found):
            problems.append("the body differs")
    if not problems:
        names.update(found)
        return None
    return mismatch(example, "; ".join(problems), answer.render())


def check_cli(
    example: Example, db_env: BankEnv, workdir: Path, names: dict[str, str]
) -> str | None:
    """Run one `bank` example on the database; the mismatch, or None.

    The values of the `<name>`s its answer gives go into `names`.
    """
    argv = [str(BANK_SCRIPT), "--db", db_env["SQLALCHEMY_URL"], *example.argv[1:]]
    env = {**os.environ, **db_env, "NO_COLOR": "1", "TERM": "dumb"}
    for name in COLOUR_VARIABLES:
        env.pop(name, None)
    completed = subprocess.run(
        argv,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=CLI_SECONDS,
        check=False,
    )
    output = completed.stdout.decode(errors="replace").splitlines()
    if example.echo_status:
        output.append(str(completed.returncode))
    elif completed.returncode != 0:
        return mismatch(example, f"exit status {completed.returncode}", output)
    if lines_match(example.answer, output, names):
        return None
    return mismatch(example, "the output differs", output)


def mismatch(example: Example, problem: str, actual: str | list[str]) -> str:
    """A failure message: where, the command, what was expected and what came."""
    shown = actual if isinstance(actual, str) else "\n".join(actual)
    expected = "\n".join(example.answer)
    return (
        f"{example.describe()}\n{problem}\n"
        f"--- expected (README.md line {example.answer_line}):\n{expected}\n"
        f"--- actual:\n{shown}"
    )


def test_the_readme_examples_are_all_readable() -> None:
    examples, not_run = read_examples(README.read_text())

    kinds = [example.argv[0] for example in examples]
    assert kinds.count("curl") >= 20
    assert kinds.count("bank") >= 15
    assert any("bank serve" in line for line in not_run)
    assert json_matches({"id": "…", "n": 1}, {"id": "0b1c", "n": 1})
    assert not json_matches({"id": "…"}, {"id": None})
    assert json_matches({"n": ANY_NUMBER}, {"n": 7})
    assert not json_matches({"n": ANY_NUMBER}, {"n": "7"})
    assert (
        BARE_NUMBER.sub(r'\1"#"', '{"a": …, "b": [1, …]}')
        == '{"a": "#", "b": [1, "#"]}'
    )

    assert not json_matches({"n": 1}, {"n": True})
    assert not json_matches({"id": "0b1c…"}, {"id": "9f00"})
    assert lines_match(["a", "…", "│ x │ … │"], ["a", "b", "c", "│ x  │ 2026 │"])
    assert not lines_match(["a", "b"], ["a", "c"])
    names: dict[str, str] = {}
    assert json_matches({"id": "<t>", "of": "<t>"}, {"id": "9f-1", "of": "9f-1"}, names)
    assert names == {"t": "9f-1"}
    assert not json_matches({"id": "<t>", "of": "<t>"}, {"id": "9f", "of": "9e"})
    assert not json_matches({"id": "<t>"}, {"id": "not an id"})
    assert lines_match(["<u> moved", "…", "of <u>"], ["x.1 moved", "y", "of x.1"])
    assert not lines_match(["<u> moved", "of <u>"], ["x.1 moved", "of x.2"])


@pytest.mark.slow
def test_the_readme_examples_run_top_to_bottom(db_env: BankEnv, tmp_path: Path) -> None:
    """Every example, in document order, on one fresh bank per database."""
    examples, _ = read_examples(README.read_text())
    curl = shutil.which("curl")
    failures: list[str] = []
    names: dict[str, str] = {}  # the `<name>`s answers have given
    started = time.perf_counter()
    with running_server(db_env, tmp_path) as server:
        for unbound in examples:
            example = unbound.bound(names)
            failure: str | None
            if example is None:
                failure = (
                    f"{unbound.describe()}\nnot run: a name it uses was not given "
                    "(the example that shows it failed)"
                )
            elif example.argv[0] == "curl":
                failure = check_curl(example, server.port, curl, names)
            else:
                failure = check_cli(example, db_env, tmp_path, names)
            if failure is not None:
                failures.append(failure)
    seconds = time.perf_counter() - started
    if failures:
        pytest.fail(
            f"{len(failures)} of {len(examples)} README examples do not answer "
            f"as documented ({seconds:.1f} s):\n\n" + "\n\n".join(failures),
            pytrace=False,
        )
