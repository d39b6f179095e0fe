"""The services' ``--help``, read once for every test that checks settings against it
(test_docs: docs/configuration.md; test_deploy: deploy/).

- The producer's argparse help ends each setting with ``[env X; default Y]``.
- The gateway's clap long help gives ``[env: X=]``, ``[default: Y]`` and the possible
  values, listed (``- value: what``) or inline (``[possible values: a, b]``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest
from gateway_helpers import gateway_binary
from helpers import REPO_ROOT, clean_env, run_producer

FLAG = re.compile(r"--[a-z][a-z0-9-]*")

# A wide terminal keeps both parsers' help from wrapping inside an entry.
WIDE = {"COLUMNS": "1000", "RUST_LOG": ""}


@dataclass(frozen=True)
class Option:
    """One flag as a ``--help`` text (or a docs table row) describes it."""

    flag: str
    env: str | None
    default: str | None
    text: str
    #: The values it accepts, when the help lists them.
    values: tuple[str, ...] = ()


def producer_help() -> str:
    """``python -m py_producer --help``."""
    result = run_producer("--help", env=WIDE)
    assert result.returncode == 0, result.stderr
    return result.stdout


def gateway_help() -> str:
    """``rust_gateway --help`` of the built gateway (skips the test if there is none)."""
    binary = gateway_binary()
    if binary is None or not binary.is_file():
        pytest.skip("rust_gateway not built (make gateway, or set SHMBRIDGE_GATEWAY_BIN)")
    return run_help([str(binary)])


def run_help(command: list[str]) -> str:
    """``COMMAND --help``'s text, in a wide terminal; the test fails if it fails."""
    done = subprocess.run(
        [*command, "--help"],
        cwd=REPO_ROOT,
        env=clean_env(WIDE),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{command} --help failed:\n{done.stderr}"
    return done.stdout


def parse_producer_help(text: str) -> dict[str, Option]:
    """The flags of argparse's help, by flag."""
    section = text.split("options:", 1)[1]
    options: dict[str, Option] = {}
    starts = [m.start() for m in re.finditer(r"^  -", section, flags=re.MULTILINE)]
    for begin, end in zip(starts, [*starts[1:], len(section)], strict=True):
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


def parse_gateway_help(text: str) -> dict[str, Option]:
    """The flags of clap's long help, by flag."""
    section = text.split("Options:", 1)[1]
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
        options[match.group(1)] = Option(
            match.group(1),
            env.group(1) if env else None,
            default.group(1) if default else None,
            " ".join(body.split()),
            tuple(values),
        )
    assert "--port" in options, f"cannot read the gateway's --help:\n{text}"
    return options


def by_variable(options: dict[str, Option]) -> dict[str, Option]:
    """The options read from a ``SHMBRIDGE_*`` variable, by variable."""
    return {o.env: o for o in options.values() if o.env and o.env.startswith("SHMBRIDGE_")}
