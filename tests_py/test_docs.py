"""The docs cannot drift from the code.

- docs/configuration.md's two tables are checked against each service's ``--help``:
  every flag there is documented, every documented flag exists, and each one's
  environment variable and default agree.
- docs/design.md's signal frame tables are checked against the byte map in
  src/wire.rs (the frames' version 2).
- Every ```python block in README.md and docs/python-api.md runs, each in a fresh
  namespace with a temporary working directory.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_helpers import gateway_binary
from helpers import REPO_ROOT, clean_env, run_producer

from py_producer import native

CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"
DESIGN = REPO_ROOT / "docs" / "design.md"
WIRE_RS = REPO_ROOT / "src" / "wire.rs"
BENCHMARK = REPO_ROOT / "docs" / "benchmark.md"
BENCH_RESULTS = REPO_ROOT / "results" / "bench.md"
SNIPPET_FILES = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "python-api.md"]

FLAG = re.compile(r"--[a-z][a-z0-9-]*")
ENV = re.compile(r"\b(?:SHMBRIDGE_[A-Z0-9_]+|RUST_LOG)\b")


@dataclass(frozen=True)
class Option:
    """One flag as a `--help` text or a docs table row describes it."""

    flag: str
    env: str | None
    default: str | None
    text: str


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


# --- the producer: argparse ------------------------------------------------------------


def producer_options() -> dict[str, Option]:
    """Flags of ``python -m py_producer --help``, with ``[env X; default Y]``."""
    # A wide terminal keeps argparse from wrapping each option's help.
    result = run_producer("--help", env={"COLUMNS": "1000"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    section = text.split("options:", 1)[1]
    options: dict[str, Option] = {}
    entry_starts = [m.start() for m in re.finditer(r"^  -", section, flags=re.MULTILINE)]
    for begin, end in zip(entry_starts, [*entry_starts[1:], len(section)], strict=True):
        entry = section[begin:end]
        spec = re.split(r"\s{2,}", entry.strip(), maxsplit=1)[0]
        body = " ".join(entry.split())
        meta = re.search(r"\[env (\w+); default ([^\]]+)\]", body)
        for flag in FLAG.findall(spec):
            options[flag] = Option(
                flag,
                meta.group(1) if meta else None,
                meta.group(2).strip() if meta else None,
                body,
            )
    assert "--port" in options, f"cannot read the producer's --help:\n{text}"
    return options


def test_producer_flags_are_documented() -> None:
    assert_agree("producer", producer_options(), documented("Producer"))


# --- the gateway: clap -----------------------------------------------------------------


def gateway_options() -> dict[str, Option]:
    """Flags of ``rust_gateway --help`` (clap's long help), with ``[env: X=]``,
    ``[default: Y]`` and the possible values."""
    binary = gateway_binary()
    if binary is None or not binary.is_file():
        pytest.skip(
            "rust_gateway not built (cargo build --release -p rust_gateway, "
            "or set SHMBRIDGE_GATEWAY_BIN)"
        )
    result = subprocess.run(
        [str(binary), "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Options:", 1)[1]
    options: dict[str, Option] = {}
    entry = re.compile(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", flags=re.MULTILINE)
    starts = list(entry.finditer(section))
    for match, end in zip(starts, [m.start() for m in starts[1:]] + [len(section)], strict=True):
        body = section[match.start() : end]
        env = re.search(r"\[env: (\w+)=", body)
        default = re.search(r"\[default: ([^\]]*)\]", body)
        values = re.findall(r"^\s+- (\w+):", body, flags=re.MULTILINE)
        listed = re.search(r"\[possible values: ([^\]]*)\]", body)
        if listed:
            values += [value.strip() for value in listed.group(1).split(",")]
        option = Option(
            match.group(1),
            env.group(1) if env else None,
            default.group(1) if default else None,
            " ".join(values),
        )
        options[option.flag] = option
    assert "--port" in options, f"cannot read the gateway's --help:\n{result.stdout}"
    return options


def test_gateway_flags_are_documented() -> None:
    helped = gateway_options()
    docs = documented("Gateway")
    assert_agree("gateway", helped, docs)
    for flag, option in helped.items():
        for value in option.text.split():
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
