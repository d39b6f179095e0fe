"""The serializer against orjson on each CPython, with the wheels ``make wheels`` put in
dist/: the tables of docs/python-versions.md, "Speed by version".

For each interpreter found (scripts/find_python.sh) and each wheel that serves it (its
own and the abi3 one), a venv under target/bench-venvs gets orjson and numpy (the
versions pinned in requirements-dev.txt) and the wheel. An interpreter that is not found
is reported as SKIPPED. Two parts (``--parts``):

- ``users``: ``write_json`` against ``orjson.dumps`` + ``write_bytes`` with the producer's
  users (scripts/version_bench.py). Each cell is the median over ``--runs`` runs of each
  run's median, in µs; lower is better. The table goes to stdout and ``--md-out``.
- ``shapes``: ``shmbridge.dumps`` against ``orjson.dumps`` on every shape of
  scripts/microbench_json.py (``--rounds`` rounds each, the stdlib's json left out),
  with each version's own wheel, and the abi3 one on the versions of ``--abi3-on``;
  ``--runs`` runs, each going over every wheel in turn. The table (a row per shape, a
  column per wheel and interpreter, in each cell the median of the runs' ratios
  shmbridge / orjson: below 1 is faster) goes to ``--shapes-md-out``, the medians of
  every run to ``--shapes-json-out``. ``make microbench-versions`` runs this part (``make wheels``
  first).

Usage: ``.venv/bin/python scripts/bench_versions.py [--runs 3] [--md-out FILE]``;
``.venv/bin/python scripts/bench_versions.py --parts shapes --rounds 5``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from find_python import find_python

REPO = Path(__file__).resolve().parent.parent
VERSIONS = ("3.11", "3.12", "3.13")
PINNED = ("orjson", "numpy")
SHAPES_MD = REPO / "results" / "microbench-json-versions.md"
SHAPES_JSON = REPO / "results" / "microbench-json-versions.json"


@dataclass(frozen=True)
class Target:
    """One wheel on one interpreter: ``kind`` is the version's tag (cp312) or abi3."""

    version: str
    python: str
    kind: str
    wheel: Path

    @property
    def venv(self) -> Path:
        return REPO / "target" / "bench-venvs" / f"{self.version}-{self.kind}"

    @property
    def label(self) -> str:
        return f"{self.kind} on {self.version}"


def banner(text: str) -> None:
    line = "=" * 80
    print(f"\n{line}\n{text}\n{line}", file=sys.stderr, flush=True)


def pins() -> list[str]:
    """The requirements-dev.txt pins of the packages the benchmarks import."""
    text = (REPO / "requirements-dev.txt").read_text(encoding="utf-8")
    found = []
    for name in PINNED:
        pin = re.search(rf"^{name}==\S+", text, re.MULTILINE)
        if pin is None:
            raise SystemExit(f"requirements-dev.txt pins no {name}")
        found.append(pin.group(0))
    return found


def find_wheel(dist: Path, kind: str) -> Path:
    pattern = "*-cp311-abi3-*.whl" if kind == "abi3" else f"*-{kind}-{kind}-*.whl"
    wheels = sorted(dist.glob(pattern))
    if len(wheels) != 1:
        raise SystemExit(
            f"{len(wheels)} wheels match {dist}/{pattern}, need one: run `make wheels` first"
        )
    return wheels[0]


def targets(dist: Path, abi3_on: set[str] | None) -> tuple[list[Target], list[str]]:
    """Each wheel on each interpreter found (abi3 only on the versions in ``abi3_on``,
    every one if None), and the versions not found."""
    found: list[Target] = []
    skipped: list[str] = []
    for version in VERSIONS:
        python = find_python(version)
        if python is None:
            banner(f"SKIPPED: CPython {version} not found: its wheels are not benchmarked")
            skipped.append(version)
            continue
        own = "cp" + version.replace(".", "")
        found.append(Target(version, python, own, find_wheel(dist, own)))
        if abi3_on is None or version in abi3_on:
            found.append(Target(version, python, "abi3", find_wheel(dist, "abi3")))
    return found, skipped


def prepare(target: Target) -> Path:
    """The target's venv with the pinned packages and the wheel; its python."""
    python = target.venv / "bin" / "python"
    if not python.exists():
        subprocess.run([target.python, "-m", "venv", target.venv], check=True)
    pip: list[str | Path] = [python, "-m", "pip", "install", "--quiet"]
    pip.append("--disable-pip-version-check")
    subprocess.run([*pip, *pins()], check=True)
    reinstall: list[str | Path] = [*pip, "--force-reinstall", "--no-deps", "--no-index"]
    subprocess.run([*reinstall, target.wheel], check=True)
    return python


def run_in(python: Path, script: str, *flags: str) -> str:
    # -I keeps the repo's python/ (and its .so) off sys.path: the wheel's module is used.
    command: list[str | Path] = [python, "-I", REPO / "scripts" / script, *flags]
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd="/").stdout


def bench_users(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    python = prepare(target)
    out = run_in(python, "version_bench.py", "--runs", str(args.runs), "--users", args.users)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def users_table(found: list[Target], skipped: list[str], args: argparse.Namespace) -> str:
    counts = [int(n) for n in args.users.split(",")]
    header = ["CPython", "wheel", "direct reads"]
    for n in counts:
        header += [f"write_json, {n:,} users", f"orjson + write_bytes, {n:,}", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    empty = " | ".join([""] * 3 * len(counts))
    for version in VERSIONS:
        if version in skipped:
            lines.append(f"| {version} | not found here | | {empty} |")
        for target in (t for t in found if t.version == version):
            rows = bench_users(target, args)
            reads = ", ".join(rows[0]["direct_reads"]) or "none (C API)"
            cells = [rows[0]["python"], target.kind, reads]
            for n in counts:
                ours = statistics.median(r[f"write_json@{n}"] for r in rows)
                theirs = statistics.median(r[f"orjson+write_bytes@{n}"] for r in rows)
                cells += [f"{ours:,.0f} µs", f"{theirs:,.0f} µs", f"{ours / theirs:.2f}"]
            line = "| " + " | ".join(cells) + " |"
            print(line, file=sys.stderr, flush=True)
            lines.append(line)
    return "\n".join(lines)


# What the shapes part asks each venv besides the timings: the interpreter's version and
# what its module reads directly (the layout check runs at the first serialization).
ABOUT = (
    "import json, sys, shmbridge; from shmbridge import _native; shmbridge.dumps([{'a': 1}]);"
    "print(json.dumps({'python': sys.version.split()[0], 'direct_reads': _native._direct_reads()}))"
)


def about(python: Path) -> dict[str, Any]:
    out = subprocess.run(
        [python, "-I", "-c", ABOUT], check=True, capture_output=True, text=True, cwd="/"
    )
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def shapes_once(python: Path, out: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One run of scripts/microbench_json.py: each shape's median µs per call."""
    flags = ["--rounds", str(args.rounds), "--target-ms", str(args.target_ms), "--no-stdlib"]
    if args.only:
        flags += ["--only", args.only]
    run_in(python, "microbench_json.py", *flags, "--json-out", str(out))
    results: dict[str, dict[str, float]] = json.loads(out.read_text(encoding="utf-8"))["results"]
    return results


def shapes_table(columns: list[dict[str, Any]], skipped: list[str]) -> str:
    header = ["shape"] + [f"{c['wheel']} on {c['python']}" for c in columns]
    reads = ["*direct reads*"] + [", ".join(c["direct_reads"]) or "none" for c in columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(columns),
        "| " + " | ".join(reads) + " |",
    ]
    names = list(dict.fromkeys(name for c in columns for name in c["ratio"]))
    for name in names:
        cells = [name] + [f"{c['ratio'][name]:.2f}" if name in c["ratio"] else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    slower = ["*slower than orjson (ratio > 1)*"]
    for column in columns:
        ratios = column["ratio"].values()
        slower.append(f"{sum(ratio > 1 for ratio in ratios)} of {len(ratios)}")
    lines.append("| " + " | ".join(slower) + " |")
    for version in skipped:
        lines.append(f"\nSKIPPED: CPython {version} was not found here.")
    return "\n".join(lines)


def run_shapes(args: argparse.Namespace) -> None:
    abi3_on = None if args.abi3_on == "all" else set(args.abi3_on.split(","))
    found, skipped = targets(args.dist, abi3_on)
    started = time.monotonic()
    pythons = [prepare(target) for target in found]
    columns = [
        {"wheel": t.kind, **about(p), "runs": []} for t, p in zip(found, pythons, strict=True)
    ]
    # Run after run, every wheel in turn: a stretch of heavy load on this shared machine
    # then spoils one run of each wheel rather than all the runs of one.
    for run in range(args.runs):
        for target, python, column in zip(found, pythons, columns, strict=True):
            began = time.monotonic()
            column["runs"].append(shapes_once(python, target.venv / "microbench-json.json", args))
            took = time.monotonic() - began
            print(f"run {run + 1}/{args.runs}, {target.label}: {took:.0f} s", file=sys.stderr)
    for column in columns:
        # Each run's ratio is measured side by side (rounds interleaved); a cell is their median.
        runs: list[dict[str, dict[str, float]]] = column["runs"]
        column["ratio"] = {
            name: statistics.median(r[name]["shmbridge"] / r[name]["orjson"] for r in runs)
            for name in runs[0]
        }
    load = os.getloadavg()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"shmbridge.dumps / orjson.dumps per shape (scripts/microbench_json.py: each run the "
        f"median of {args.rounds} interleaved rounds of about {args.target_ms:g} ms; a cell "
        f"is the median of {args.runs} runs' ratios), each wheel of dist/ in a venv of its "
        f"interpreter; below 1 is faster than orjson. {when}, load average {load[0]:.2f} "
        f"{load[1]:.2f} {load[2]:.2f} at the end, {time.monotonic() - started:.0f} s in all."
    )
    table = shapes_table(columns, skipped)
    print(table)
    args.shapes_md_out.parent.mkdir(parents=True, exist_ok=True)
    args.shapes_md_out.write_text(f"{intro}\n\n{table}\n", encoding="utf-8")
    report = {"date": when, "load": load, "rounds": args.rounds, "runs": args.runs}
    report.update(target_ms=args.target_ms, skipped=skipped, columns=columns)
    args.shapes_json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if skipped:
        banner(f"SKIPPED: CPython {', '.join(skipped)} not found: no column for it")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts",
        default="users",
        help="what to run, comma-separated: users (the default), shapes, or users,shapes",
    )
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="the wheels")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median), both parts")
    users = parser.add_argument_group("users")
    users.add_argument("--users", default="1000,100000", help="user counts, comma-separated")
    users.add_argument("--md-out", type=Path, help="the users table, as markdown")
    shapes = parser.add_argument_group("shapes")
    shapes.add_argument("--rounds", type=int, default=5, help="rounds per shape and run")
    shapes.add_argument("--target-ms", type=float, default=5.0, help="time per sample")
    shapes.add_argument("--only", default="", help="the shapes whose name contains this")
    shapes.add_argument(
        "--abi3-on",
        default="all",
        help="the versions the abi3 wheel runs on besides each version's own wheel: "
        "comma-separated (e.g. 3.13), or all (the default)",
    )
    shapes.add_argument("--shapes-md-out", type=Path, default=SHAPES_MD, help="markdown out")
    shapes.add_argument("--shapes-json-out", type=Path, default=SHAPES_JSON, help="json out")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"users", "shapes"}:
        parser.error(f"--parts: users, shapes or both, not {args.parts!r}")
    if "users" in parts:
        found, skipped = targets(args.dist, None)
        table = users_table(found, skipped, args)
        print(table)
        if args.md_out:
            args.md_out.write_text(table + "\n", encoding="utf-8")
    if "shapes" in parts:
        run_shapes(args)


if __name__ == "__main__":
    main()
