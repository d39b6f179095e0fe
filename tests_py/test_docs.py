"""The docs cannot drift from the code.

- docs/configuration.md's two tables are checked against each service's ``--help``:
  every flag there is documented, every documented flag exists, and each one's
  environment variable and default agree.
- docs/design.md's signal frame tables are checked against the byte map in
  src/wire.rs (the frames' version 2).
- Every ```python block in README.md and docs/python-api.md runs, each in a fresh
  namespace with a temporary working directory; a block marked
  ``<!-- excerpt: PATH -->`` (and every ```rust block) is a verbatim run of lines of a
  file that the tests build and run.
- Every command of a ```bash or ```sh block in README.md and docs/*.md names a make
  target that exists, or a program that exists with flags its ``--help`` lists; the
  README's curl lines run against a real producer and gateway.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_helpers import gateway_binary, start_services
from help_helpers import (
    FLAG,
    Option,
    gateway_help,
    parse_gateway_help,
    parse_producer_help,
    producer_help,
    run_help,
)
from helpers import REPO_ROOT

from py_producer import native

CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"
DESIGN = REPO_ROOT / "docs" / "design.md"
WIRE_RS = REPO_ROOT / "src" / "wire.rs"
BENCHMARK = REPO_ROOT / "docs" / "benchmark.md"
BENCH_RESULTS = REPO_ROOT / "results" / "bench.md"
SNIPPET_FILES = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "python-api.md"]

ENV = re.compile(r"\b(?:SHMBRIDGE_[A-Z0-9_]+|RUST_LOG)\b")


# --- docs/configuration.md ------------------------------------------------------------


def documented(heading: str) -> dict[str, Option]:
    """The rows of the first table under the ``## heading...`` section, by flag."""
    lines = CONFIGURATION.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"## {heading}")]
    assert starts, f"docs/configuration.md has no section '## {heading}'"
    rows: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    assert len(rows) > 2, f"no table under '## {heading}'"
    options: dict[str, Option] = {}
    for row in rows[2:]:  # the header and the |---| line
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a row needs 4 cells (flag, variable, default, what): {row}"
        flag_cell, env_cell, default_cell, text = cells
        flags = FLAG.findall(flag_cell)
        assert flags, f"no flag in row: {row}"
        envs = ENV.findall(env_cell)
        assert len(envs) <= 1, f"one variable per row: {row}"
        for flag in flags:
            assert flag not in options, f"{flag} is documented twice"
            options[flag] = Option(
                flag, envs[0] if envs else None, default_cell or None, f"{default_cell} {text}"
            )
    return options


def assert_agree(service: str, helped: dict[str, Option], docs: dict[str, Option]) -> None:
    missing = sorted(set(helped) - set(docs))
    assert not missing, f"{service}: flags in --help but not in docs/configuration.md: {missing}"
    unknown = sorted(set(docs) - set(helped))
    assert not unknown, f"{service}: flags in docs/configuration.md but not in --help: {unknown}"
    for flag, option in helped.items():
        row = docs[flag]
        assert row.env == option.env, (
            f"{service} {flag}: --help says variable {option.env}, the docs {row.env}"
        )
        if option.default is None:
            continue
        assert row.default is not None, f"{service} {flag}: the docs give no default"
        assert f"`{option.default}`" in row.default, (
            f"{service} {flag}: --help says default {option.default!r}, the docs {row.default!r}"
        )


# --- the services' --help ----------------------------------------------------------------


def test_producer_flags_are_documented() -> None:
    assert_agree("producer", parse_producer_help(producer_help()), documented("Producer"))


def test_gateway_flags_are_documented() -> None:
    helped = parse_gateway_help(gateway_help())
    docs = documented("Gateway")
    assert_agree("gateway", helped, docs)
    for flag, option in helped.items():
        for value in option.values:
            assert f"`{value}`" in docs[flag].text, (
                f"gateway {flag}: the docs do not name its value `{value}`"
            )


# --- the signal frames --------------------------------------------------------------


Field = tuple[int, str, str]


def frames_in_code() -> dict[str, list[Field]]:
    """(offset, name, type) of each field in src/wire.rs's byte map comment."""
    frames: dict[str, list[Field]] = {}
    current: list[Field] | None = None
    for line in WIRE_RS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("//!"):
            continue
        text = line[3:].strip()
        if text.startswith(("request:", "response:")):
            current = frames.setdefault(text.split(":")[0], [])
            continue
        field = re.match(r"(\d+)\s+(\w+)\s+(\[[^\]]*\]|\w+)", text)
        if field and current is not None:
            current.append((int(field.group(1)), field.group(2), field.group(3)))
        elif not text:
            current = None
    assert set(frames) == {"request", "response"}, f"cannot read src/wire.rs: {frames}"
    return frames


def frames_in_docs() -> dict[str, list[Field]]:
    """(offset, name, type) of each row of design.md's frame tables."""
    frames: dict[str, list[Field]] = {}
    current: list[Field] | None = None
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        if line.startswith(("Request, ", "Response, ")):
            current = frames.setdefault(line.split(",")[0].lower(), [])
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if current is not None and line.startswith("|") and cells[0].isdigit():
            current.append((int(cells[0]), cells[1], cells[2]))
        elif current is not None and current and not line.startswith("|"):
            current = None
    return frames


def test_design_frame_tables_match_the_code() -> None:
    assert frames_in_docs() == frames_in_code()


# --- the benchmark's table ------------------------------------------------------------


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_benchmark_page_has_the_latest_results() -> None:
    """docs/benchmark.md's full table is results/bench.md's, as the last run wrote it."""
    page = BENCHMARK.read_text(encoding="utf-8")
    assert "### The full table" in page, "docs/benchmark.md lost its '### The full table'"
    section = page.split("### The full table", 1)[1].split("\n## ", 1)[0]
    assert table_lines(section) == table_lines(BENCH_RESULTS.read_text(encoding="utf-8")), (
        "docs/benchmark.md's full table differs from results/bench.md: copy the new tables"
    )


# --- snippets --------------------------------------------------------------------------


EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->")


def code_blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """The fenced code blocks of a markdown file: (line, language, code, excerpt source).

    A block right after a line ``<!-- excerpt: PATH -->`` is an excerpt of that file
    (one that is compiled and run elsewhere), not a program of its own."""
    blocks: list[tuple[int, str, str, str | None]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    inside: tuple[int, str, str | None] | None = None
    body: list[str] = []
    previous = ""
    for number, line in enumerate(lines, start=1):
        if inside is None and line.startswith("```") and line.strip() != "```":
            marker = EXCERPT.fullmatch(previous.strip())
            inside, body = (number, line.strip()[3:], marker[1] if marker else None), []
        elif inside is not None and line.strip() == "```":
            blocks.append((inside[0], inside[1], "\n".join(body) + "\n", inside[2]))
            inside = None
        elif inside is not None:
            body.append(line)
        if line.strip():
            previous = line
    assert inside is None, f"{path.name}: a code block opened on line {inside[0]} never ends"
    return blocks


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a markdown file that are programs, with their lines."""
    return [
        (line, code)
        for line, language, code, source in code_blocks(path)
        if language == "python" and source is None
    ]


def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


EXCERPTS = [
    pytest.param(path, line, code, source, id=f"{path.relative_to(REPO_ROOT)}:{line}")
    for path in SNIPPET_FILES
    for line, language, code, source in code_blocks(path)
    if source is not None or language == "rust"
]


@pytest.mark.parametrize(("path", "line", "code", "source"), EXCERPTS)
def test_excerpts_are_taken_from_files_that_run(
    path: Path, line: int, code: str, source: str | None
) -> None:
    """Rust blocks and marked excerpts are verbatim runs of lines of a file the tests
    build and run (the orders example), so they cannot drift from working code."""
    assert source is not None, (
        f"{path.name}:{line}: a rust block must be an excerpt (<!-- excerpt: PATH --> above it)"
    )
    wanted = stripped_lines(code)
    have = stripped_lines((REPO_ROOT / source).read_text(encoding="utf-8"))
    runs = (have[i : i + len(wanted)] for i in range(len(have) - len(wanted) + 1))
    assert wanted and any(run == wanted for run in runs), (
        f"{path.name}:{line}: the block is not a verbatim excerpt of {source}"
    )


SNIPPETS = [
    pytest.param(path, line, code, id=f"{path.relative_to(REPO_ROOT)}:{line}")
    for path in SNIPPET_FILES
    for line, code in python_blocks(path)
]


def test_every_snippet_file_has_snippets() -> None:
    for path in SNIPPET_FILES:
        assert python_blocks(path), f"{path.name} has no ```python block"


@pytest.mark.skipif(native.load()[0] is None, reason="native module shmbridge not built")
@pytest.mark.parametrize(("path", "line", "code"), SNIPPETS)
def test_snippet_runs(
    path: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snippets make their own temporary directories; the working directory is a
    # fresh one too, so a snippet that forgot cannot touch the repository's files.
    assert "shared_memory_dir" not in code, (
        f"{path.name}:{line}: a snippet must use a temporary directory, not shared_memory_dir"
    )
    monkeypatch.chdir(tmp_path)
    compiled = compile(code, f"{path.name}:{line}", "exec")
    exec(compiled, {"__name__": "__snippet__"})


# --- shell blocks ----------------------------------------------------------------------

DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELLS = ("bash", "sh")


def shell_commands(path: Path) -> list[tuple[int, list[str]]]:
    """Each command of the ```bash and ```sh blocks of a markdown file, as words, with its
    block's line: continued lines joined, comments, ``VAR=value`` prefixes and a final
    ``&`` dropped."""
    commands: list[tuple[int, list[str]]] = []
    for line, language, code, source in code_blocks(path):
        if language not in SHELLS or source is not None:
            continue
        for text in code.replace("\\\n", " ").splitlines():
            words = shlex.split(text, comments=True)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                words.pop(0)
            if words and words[-1] == "&":
                words.pop()
            if words:
                commands.append((line, words))
    return commands


def target_dir() -> Path:
    return REPO_ROOT / os.environ.get("CARGO_TARGET_DIR", "target")


def help_of(words: list[str]) -> str | None:
    """The ``--help`` text of the program a command runs (None: it takes no flags here)."""
    program, *rest = words
    if program.startswith("target/release/"):
        binary = target_dir() / program.removeprefix("target/")
        if not binary.is_file():
            pytest.skip(f"{program} not built (make build)")
        command = [str(binary)]
    elif program.endswith("/python"):
        if rest[0] == "-m":
            command = [sys.executable, "-m", rest[1]]
        else:
            assert (REPO_ROOT / rest[0]).is_file(), f"{rest[0]}: no such file"
            command = [sys.executable, str(REPO_ROOT / rest[0])]
    else:
        return None
    if not FLAG.search(" ".join(rest)):
        return None
    return run_help(command)


def assert_flags_in(words: list[str], helped: str, what: str) -> None:
    for word in words:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert re.search(rf"{re.escape(flag)}\b", helped), f"{what}: {flag} is not in --help"


MAKEFILE = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")

COMMANDS = [
    pytest.param(words, id=f"{path.relative_to(REPO_ROOT)}:{line}:{words[0]}")
    for path in DOC_FILES
    for line, words in shell_commands(path)
    if words[0] != "curl"
]


@pytest.mark.parametrize("words", COMMANDS)
def test_shell_commands_name_what_exists(words: list[str]) -> None:
    """Every command of the docs' shell blocks asks for what exists: a make target of the
    Makefile (and the bench's flags), or a program built or in the tree, with flags its
    ``--help`` lists. The commands that start services are run by the tests that start
    the same ones (test_e2e, test_example_orders; the curl lines below)."""
    if words[0] == "make":
        for word in words[1:]:
            name, equals, value = word.partition("=")
            if not equals:
                assert re.search(rf"^{re.escape(name)}:", MAKEFILE, re.M), f"no make target {name}"
            elif name == "BENCH_ARGS":
                bench = run_help([sys.executable, str(REPO_ROOT / "scripts" / "bench.py")])
                assert_flags_in(shlex.split(value), bench, "bench.py")
        return
    helped = help_of(words)
    if helped is not None:
        assert_flags_in(words[1:], helped, words[0])


def readme_curl_lines() -> list[list[str]]:
    """The README's curl lines against the services ``make run`` starts."""
    return [
        words
        for _, words in shell_commands(REPO_ROOT / "README.md")
        if words[0] == "curl" and any(":8080/" in w or ":5000/" in w for w in words)
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.skipif(native.load()[0] is None, reason="native module shmbridge not built")
@pytest.mark.skipif(gateway_binary() is None, reason="rust_gateway not built")
def test_readme_curl_lines_answer(tmp_path: Path) -> None:
    """The README's curl lines, run as written against a producer and a gateway started
    as ``make run`` starts them (on free ports instead of 5000 and 8080): each answers
    JSON, 200, or the 400 its comment announces."""
    lines = readme_curl_lines()
    assert len(lines) >= 5, lines
    producer, gateway = start_services(tmp_path)
    with producer, gateway:
        for words in lines:
            args = [
                w.replace("http://127.0.0.1:8080", gateway.url).replace(
                    "http://127.0.0.1:5000", producer.url
                )
                for w in words
            ]
            done = subprocess.run(
                [*args, "--silent", "--show-error", "--write-out", "\n%{http_code}"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"{' '.join(words)}: {done.stderr}"
            body, _, status = done.stdout.rpartition("\n")
            expected = 400 if "count=abc" in " ".join(words) else 200
            assert int(status) == expected, f"{' '.join(words)}: {status} {body[:300]}"
            json.loads(body)
