"""``write_json`` against ``orjson.dumps`` + ``write_bytes`` on each CPython, with the
wheels ``make wheels`` put in dist/: the table in docs/python-versions.md.

For each interpreter found (scripts/find_python.sh) and each wheel that serves it (its
own and the abi3 one), a venv under target/bench-venvs gets orjson (the version pinned
in requirements-dev.txt) and the wheel; scripts/version_bench.py runs there. Each cell
is the median over ``--runs`` runs of each run's median, in µs; lower is better.
Usage: ``.venv/bin/python scripts/bench_versions.py [--runs 3] [--md-out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from find_python import find_python

REPO = Path(__file__).resolve().parent.parent
VERSIONS = ("3.11", "3.12", "3.13")


def bench(python: str, wheel: Path, venv: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    pins = (REPO / "requirements-dev.txt").read_text(encoding="utf-8")
    orjson = re.search(r"^orjson==\S+", pins, re.MULTILINE)
    assert orjson
    if not venv.exists():
        subprocess.run([python, "-m", "venv", venv], check=True)
    pip: list[str | Path] = [
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    pin: str = orjson.group(0)
    subprocess.run([*pip, pin], check=True)
    reinstall: list[str | Path] = [*pip, "--force-reinstall", "--no-deps", "--no-index", wheel]
    subprocess.run(reinstall, check=True)
    command: list[str | Path] = [
        venv / "bin" / "python",
        "-I",
        REPO / "scripts" / "version_bench.py",
    ]
    command += ["--runs", str(args.runs), "--users", args.users]
    # -I keeps the repo's python/ (and its .so) off sys.path: the wheel's module is used.
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd="/").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", default="1000,100000")
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    parser.add_argument("--md-out", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.users.split(",")]
    header = ["CPython", "wheel", "direct reads"]
    for n in counts:
        header += [f"write_json, {n:,} users", f"orjson + write_bytes, {n:,}", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for version in VERSIONS:
        python = find_python(version)
        if python is None:
            print(f"SKIPPED: CPython {version} not found", file=sys.stderr)
            lines.append(
                f"| {version} | not found here | | " + " | ".join([""] * 3 * len(counts)) + " |"
            )
            continue
        abi = "cp" + version.replace(".", "")
        for kind, pattern in ((abi, f"*-{abi}-{abi}-*.whl"), ("abi3", "*-cp311-abi3-*.whl")):
            (wheel,) = sorted(args.dist.glob(pattern))
            rows = bench(python, wheel, REPO / "target" / "bench-venvs" / f"{version}-{kind}", args)
            cells = [rows[0]["python"], kind, ", ".join(rows[0]["direct_reads"]) or "none (C API)"]
            for n in counts:
                ours = statistics.median(r[f"write_json@{n}"] for r in rows)
                theirs = statistics.median(r[f"orjson+write_bytes@{n}"] for r in rows)
                cells += [f"{ours:,.0f} µs", f"{theirs:,.0f} µs", f"{ours / theirs:.2f}"]
            line = "| " + " | ".join(cells) + " |"
            print(line, file=sys.stderr, flush=True)
            lines.append(line)
    table = "\n".join(lines)
    print(table)
    if args.md_out:
        args.md_out.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
