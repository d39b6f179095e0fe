"""``find_python(version)``: the interpreter scripts/find_python.sh finds for a CPython
version, for the Python that needs one (scripts/bench_versions.py, run as a script,
imports it from its own directory; tests_py/test_wheels.py as ``scripts.find_python``
with the repository root on sys.path). The shell function stays the one rule.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

FIND_PYTHON_SH = Path(__file__).resolve().with_name("find_python.sh")


def find_python(version: str) -> str | None:
    """The interpreter for ``version`` (e.g. "3.12"), or None if none is found."""
    proc = subprocess.run(
        ["bash", "-c", 'source "$1" && find_python "$2"', "-", str(FIND_PYTHON_SH), version],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None
