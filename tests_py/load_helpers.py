"""The Rust load tool ``shmbridge_load`` for the reliability tests: finding it, running it
and reading its report, and the users file it checks every body against.

The tool is taken from ``SHMBRIDGE_LOAD_BIN`` if set, else from next to the gateway binary
(``make gateway`` builds both into target/release/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import gateway_binary
from helpers import REPO_ROOT, clean_env


def load_binary() -> Path | None:
    """``SHMBRIDGE_LOAD_BIN``, else ``shmbridge_load`` next to the gateway binary."""
    explicit = os.environ.get("SHMBRIDGE_LOAD_BIN")
    if explicit:
        return Path(explicit)
    gateway = gateway_binary()
    candidate = gateway.parent / "shmbridge_load" if gateway is not None else None
    return candidate if candidate is not None and candidate.is_file() else None


#: Skip mark for tests that run the load tool.
NEEDS_LOAD = pytest.mark.skipif(
    load_binary() is None,
    reason="shmbridge_load not built (make gateway, or set SHMBRIDGE_LOAD_BIN)",
)


def write_users_file(path: Path, count: int) -> Path:
    """The users 1..``count`` as JSON lines at ``path``, written by the CLI the benchmark uses."""
    subprocess.run(
        [sys.executable, "-m", "py_producer.dump_users", "--count", str(count), "--out", path],
        cwd=REPO_ROOT,
        env=clean_env(),
        check=True,
        timeout=120,
    )
    return path


def load_command(
    url: str,
    users_file: Path,
    json_out: Path,
    *,
    paths: str,
    counts: str,
    concurrency: int,
    requests: int | None = None,
    duration: float | None = None,
    seed: int = 1,
) -> list[str]:
    binary = load_binary()
    assert binary is not None
    command = [
        str(binary),
        "--url",
        url,
        "--paths",
        paths,
        "--counts",
        counts,
        "--seed",
        str(seed),
        "--concurrency",
        str(concurrency),
        "--users-file",
        str(users_file),
        "--json-out",
        str(json_out),
        "--timeout-secs",
        "60",
    ]
    if requests is not None:
        command += ["--requests", str(requests)]
    if duration is not None:
        command += ["--duration-secs", str(duration)]
    return command


@dataclass
class LoadRun:
    """A load tool process started in the background."""

    proc: subprocess.Popen[str]
    json_out: Path

    def finish(self, timeout: float = 300.0) -> dict[str, Any]:
        """Wait for the run; its report, with the tool's output printed."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate(timeout=10)
            raise AssertionError(
                f"the load tool did not finish in {timeout} s:\n{stdout}\n{stderr}"
            ) from None
        print(stdout)
        # 0: no mismatch, 1: mismatches (reported and asserted on by the caller).
        assert self.proc.returncode in (0, 1), f"load tool failed:\n{stdout}\n{stderr}"
        report: dict[str, Any] = json.loads(self.json_out.read_text())
        assert (self.proc.returncode == 1) == (report["total_mismatches"] > 0)
        return report


def start_load(tmp_path: Path, url: str, users_file: Path, **options: Any) -> LoadRun:
    json_out = tmp_path / f"load-{time.monotonic_ns()}.json"
    command = load_command(url, users_file, json_out, **options)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    return LoadRun(proc, json_out)


def run_load(tmp_path: Path, url: str, users_file: Path, **options: Any) -> dict[str, Any]:
    return start_load(tmp_path, url, users_file, **options).finish()


def error_kinds(report: dict[str, Any]) -> dict[str, int]:
    """``"<status> <kind>"`` -> count, summed over every path."""
    kinds: dict[str, int] = {}
    for path in report["paths"].values():
        for kind, n in path["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    return kinds


def assert_never_mixed(report: dict[str, Any]) -> None:
    """No wrong body, no error outside the JSON shape, no broken connection."""
    assert report["total_mismatches"] == 0, report
    assert report["non_json_errors"] == 0, report
    assert report["transport_errors"] == 0, report
