"""The end-to-end benchmark behind `make bench`.

Starts the release producer and gateway, then for each mode (fresh + full validation,
and transport only: cached payload + no validation), each count, each concurrency and
each path, runs the Rust load tool `shmbridge_load` for a warm-up and a fixed-duration
closed loop that checks every response body. Repeats the whole matrix `--runs` times,
interleaving the paths, and reports medians (with the spread) side by side.

Two datasets (`--datasets`): `users` (flat records; the paths of `--paths`, each body
checked against a dump of the users) and `profiles` (nested objects, lists and floats,
about 2.4 KB each, at most 5,000; the paths of `--profile-paths`, each body checked
against the producer's own `GET /api/profiles?count=N`, fetched once per count). For
profiles the shared-memory path is the bridge route: there is no profiles-via-shm.

Writes results/bench.json, results/bench.md and results/bench.svg.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from binaries import REPO, add_binary_flags, chosen_binaries
from services import PY, Services

# memory: the gateway serving the snapshot it holds, with no look at the channel: the
# ceiling for any path, since every path shares that last leg to the client.
# bridge: GET /api/bridge/users, the generic handler route calling the same handler as
# shm-uds (the same bytes), so the two rows compare the route's cost.
PATHS = ["api", "shm-http", "shm-uds", "bridge", "snapshot", "memory"]
# Paths whose load-tool endpoint is not /api/users-via-NAME.
LOAD_PATHS = {"bridge": "/api/bridge/users"}
# The profiles rows: where each path's load goes (gateway or producer) and its endpoint.
# api: the gateway's REST route, which fetches the producer's GET /api/profiles (the
# baseline, as api is for users); bridge: GET /api/bridge/profiles, the handler
# `profiles` over the shared-memory channel and the Unix-socket signal (the profiles'
# only shared-memory path); producer-rest, not run by default: the producer's own
# endpoint with no gateway in front, to see the REST hop's latency from outside.
PROFILE_PATHS = {
    "api": ("gateway", "/api/profiles-via-api"),
    "bridge": ("gateway", "/api/bridge/profiles"),
    "producer-rest": ("producer", "/api/profiles"),
}
DEFAULT_PROFILE_PATHS = ["api", "bridge"]
# py_producer.profiles.MAX_PROFILES: larger counts are asked for as this many.
MAX_PROFILES = 5000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_load(
    load: Path,
    base: str,
    path: str,
    count: int,
    conc: int,
    secs: float,
    expected: list[str],
    svc: Services,
) -> dict[str, Any]:
    """One warm-up + measured loop; also the CPU each process spent per request (warm-up
    included in both the time and the count), which says where a path's time goes."""
    cpu_before = (
        cpu_seconds(svc.producer.pid),
        cpu_seconds(svc.gateway.pid),
        children_cpu_seconds(),
    )
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            str(load),
            "--url",
            base,
            "--paths",
            path,
            "--counts",
            str(count),
            "--concurrency",
            str(conc),
            "--duration-secs",
            str(secs),
            "--warmup-secs",
            "1",
            *expected,
            "--json-out",
            out.name,
        ]
        # Exit code 1 only means mismatches, which the report counts; anything else
        # (bad arguments, a crash) leaves no report, and the run must stop loudly.
        done = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        text = Path(out.name).read_text()
        if done.returncode not in (0, 1) or not text:
            sys.exit(f"shmbridge_load failed (exit {done.returncode}): {' '.join(cmd)}")
        report = json.loads(text)
    cpu_after = (
        cpu_seconds(svc.producer.pid),
        cpu_seconds(svc.gateway.pid),
        children_cpu_seconds(),
    )
    stats = report["paths"][path]
    answered = report["requests"] + report.get("warmup", {}).get("requests", 0)
    per_request = [
        (after - before) * 1e6 / max(answered, 1)
        for before, after in zip(cpu_before, cpu_after, strict=True)
    ]
    # The load tool's requests_per_sec counts every answer, errors included; a path
    # answering 503 fast must not look fast, so the rate here is of ok responses only
    # (the latencies are of ok responses too). Mismatches (200s with a wrong body) are
    # not ok; they are counted over the warm-up as well (total_mismatches).
    elapsed = report["elapsed_secs"]
    return {
        "rps": stats["ok"] / elapsed if elapsed > 0 else 0.0,
        "p50_us": stats["latency_us"]["p50"],
        "p99_us": stats["latency_us"]["p99"],
        "requests": stats["requests"],
        "errors": stats["errors"] + stats["transport_errors"],
        "mismatches": report["total_mismatches"],
        "cpu_us_producer": per_request[0],
        "cpu_us_gateway": per_request[1],
        "cpu_us_client": per_request[2],
    }


def load_target(dataset: str, path: str, svc: Services) -> tuple[str, str]:
    """The base URL and the load tool's path of one row."""
    if dataset == "profiles":
        where, endpoint = PROFILE_PATHS[path]
        port = svc.gport if where == "gateway" else svc.pport
        return f"http://127.0.0.1:{port}", endpoint
    return f"http://127.0.0.1:{svc.gport}", LOAD_PATHS.get(path, path)


def concurrencies_for(count: int, wanted: list[int]) -> list[int]:
    # 50 clients each holding a 29 MB body never finish inside a short window;
    # the largest size runs at 1 and 4 clients (the issue's own target uses 4).
    return [c if c <= 4 else 4 for c in wanted] if count >= 100_000 else wanted


def median_cell(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("rps", "p50_us", "p99_us", "cpu_us_producer", "cpu_us_gateway", "cpu_us_client"):
        values = [s[key] for s in samples]
        out[key] = statistics.median(values)
        out[f"{key}_spread"] = [min(values), max(values)]
    out["errors"] = sum(s["errors"] for s in samples)
    out["mismatches"] = sum(s["mismatches"] for s in samples)
    out["requests"] = sum(s["requests"] for s in samples)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Medians of {results['runs']} runs of {results['duration_secs']:g} s each "
        f"({results['machine']}); req/s counts ok responses only. CPU µs/req: CPU time "
        "each process spent per request answered, warm-up included; client is the load tool."
    ]
    tables = [(mode, "users", "api", cells) for mode, cells in results["modes"].items()]
    tables += [
        (f"profiles, {mode}", "profiles", "api", cells)
        for mode, cells in results.get("profiles", {}).items()
    ]
    for title, unit, baseline, cells in tables:
        lines.append(f"\n### {title}\n")
        lines.append(
            f"| {unit} | clients | path | req/s | p50 ms | p99 ms | errors "
            "| vs REST req/s | vs REST p50 | CPU µs/req producer | gateway | client |"
        )
        lines.append("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, cell in cells.items():
            count, conc, path = key.split("/")
            rest = cells.get(f"{count}/{conc}/{baseline}")
            speed = f"{cell['rps'] / rest['rps']:.1f}x" if rest and rest["rps"] else "-"
            p50 = f"{rest['p50_us'] / cell['p50_us']:.1f}x" if rest and cell["p50_us"] else "-"
            lines.append(
                f"| {count} | {conc} | {path} | {cell['rps']:.0f} | {cell['p50_us'] / 1000:.3f} | "
                f"{cell['p99_us'] / 1000:.3f} | {cell['errors'] + cell['mismatches']} "
                f"| {speed} | {p50} | {cell['cpu_us_producer']:.0f} | {cell['cpu_us_gateway']:.0f} "
                f"| {cell['cpu_us_client']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def svg_chart(results: dict[str, Any], mode: str) -> str:
    """Two log-log panels (p50 latency and req/s against users per response), one line per path."""
    import math

    cells = results["modes"][mode]
    colors = {
        "api": "#d62728",
        "shm-http": "#1f77b4",
        "shm-uds": "#2ca02c",
        "bridge": "#17becf",
        "snapshot": "#9467bd",
        "memory": "#7f7f7f",
    }
    width, height, pad = 460, 320, 55
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height + 40}" '
        'font-family="sans-serif" font-size="11">'
    ]
    for panel, (metric, title) in enumerate(
        [("p50_us", "p50 latency (ms), 1 client"), ("rps", "requests/s, 1 client")]
    ):
        x0 = panel * width
        series: dict[str, list[tuple[int, float]]] = {}
        for key, cell in cells.items():
            count, conc, path = key.split("/")
            if conc == "1" and cell[metric] > 0:
                value = cell[metric] / 1000 if metric == "p50_us" else cell[metric]
                series.setdefault(path, []).append((int(count), value))
        values = [v for pts in series.values() for _, v in pts] or [1.0]
        lo, hi = math.log10(min(values)), math.log10(max(values))
        hi = hi if hi > lo else lo + 1
        xs = [c for pts in series.values() for c, _ in pts] or [2]
        xlo, xhi = math.log10(min(xs)), math.log10(max(xs))
        xhi = xhi if xhi > xlo else xlo + 1

        def px(
            c: int,
            v: float,
            xlo: float = xlo,
            xhi: float = xhi,
            lo: float = lo,
            hi: float = hi,
            x0: int = x0,
        ) -> tuple[float, float]:
            x = x0 + pad + (math.log10(c) - xlo) / (xhi - xlo) * (width - 2 * pad)
            y = height - pad + 20 - (math.log10(v) - lo) / (hi - lo) * (height - 2 * pad)
            return x, y

        parts.append(
            f'<text x="{x0 + width / 2}" y="16" text-anchor="middle">{title} [{mode}]</text>'
        )
        # The frame encloses the plotted range (y from px's top, 75, to its bottom, 285)
        # with 10 px to spare each side; the legend sits above it, under the title.
        parts.append(
            f'<rect x="{x0 + pad}" y="{height - pad + 10 - (height - 2 * pad)}" '
            f'width="{width - 2 * pad}" height="{height - 2 * pad + 20}" '
            'fill="none" stroke="#888"/>'
        )
        for c in sorted(set(xs)):
            x, _ = px(c, 10**lo)
            parts.append(f'<text x="{x}" y="{height - 18}" text-anchor="middle">{c}</text>')
        for v in (10**lo, 10 ** ((lo + hi) / 2), 10**hi):
            _, y = px(min(xs), v)
            parts.append(f'<text x="{x0 + pad - 4}" y="{y + 4}" text-anchor="end">{v:.3g}</text>')
        parts.append(
            f'<text x="{x0 + width / 2}" y="{height}" text-anchor="middle">'
            "users per response (log)</text>"
        )
        for i, (path, pts) in enumerate(sorted(series.items())):
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (px(c, v) for c, v in sorted(pts)))
            color = colors.get(path, "#333")
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
            parts.append(f'<text x="{x0 + pad + 8 + 80 * i}" y="40" fill="{color}">{path}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured loop")
    parser.add_argument("--counts", default="2,100,1000,10000,100000")
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--paths", default=",".join(PATHS), help="the users rows' paths")
    parser.add_argument(
        "--datasets", default="users,profiles", help="users, profiles or both (default)"
    )
    parser.add_argument(
        "--profile-paths",
        default=",".join(DEFAULT_PROFILE_PATHS),
        help=f"the profiles rows' paths, of {', '.join(PROFILE_PATHS)} "
        f"(default: {','.join(DEFAULT_PROFILE_PATHS)})",
    )
    parser.add_argument("--modes", default="fresh,transport")
    parser.add_argument("--out", default=str(REPO / "results"))
    parser.add_argument(
        "--signal-spin-us",
        type=int,
        default=None,
        help="both services' --signal-spin-us (default: theirs, 250)",
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        help="an extra gateway flag, e.g. --gateway-arg=--producer-timeout-ms=2000 (repeatable)",
    )
    add_binary_flags(parser)
    args = parser.parse_args()
    gateway, load = chosen_binaries(args)
    counts = [int(c) for c in args.counts.split(",")]
    wanted = [int(c) for c in args.concurrency.split(",")]
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in ("users", "profiles")] + [
        p for p in args.profile_paths.split(",") if p not in PROFILE_PATHS
    ]
    if unknown:
        parser.error(f"unknown dataset or profile path: {', '.join(unknown)}")
    rows = {
        "users": (args.paths.split(","), counts),
        "profiles": (
            args.profile_paths.split(","),
            sorted({min(c, MAX_PROFILES) for c in counts}),
        ),
    }
    rows = {d: r for d, r in rows.items() if d in datasets}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}; noisy: compare ratios",
        "runs": args.runs,
        "duration_secs": args.duration,
        "signal_spin_us": args.signal_spin_us,
        "gateway_args": args.gateway_arg,
        "modes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users.jsonl"
        if "users" in rows:
            subprocess.run(
                [
                    str(PY),
                    "-m",
                    "py_producer.dump_users",
                    "--count",
                    str(max(counts)),
                    "--out",
                    str(users),
                ],
                cwd=REPO,
                check=True,
            )
        for mode in args.modes.split(","):
            shm_dir = Path(tmp) / f"shm-{mode}"
            shm_dir.mkdir(mode=0o700)
            samples: dict[str, dict[str, list[dict[str, Any]]]] = {d: {} for d in rows}
            with Services(
                gateway, mode, shm_dir, max(counts), args.signal_spin_us, args.gateway_arg
            ) as svc:
                expected = {
                    "users": ["--users-file", str(users)],
                    "profiles": ["--expected-url", f"http://127.0.0.1:{svc.pport}/api/profiles"],
                }
                total = args.runs * sum(
                    len(concurrencies_for(c, wanted)) * len(paths)
                    for paths, cs in rows.values()
                    for c in cs
                )
                done = 0
                for run in range(args.runs):
                    for dataset, (paths, dataset_counts) in rows.items():
                        for count in dataset_counts:
                            for conc in sorted(set(concurrencies_for(count, wanted))):
                                # Rotate the path order per run so no path always goes first.
                                for path in paths[run % len(paths) :] + paths[: run % len(paths)]:
                                    base, load_path = load_target(dataset, path, svc)
                                    cell = run_load(
                                        load,
                                        base,
                                        load_path,
                                        count,
                                        conc,
                                        args.duration,
                                        expected[dataset],
                                        svc,
                                    )
                                    key = f"{count}/{conc}/{path}"
                                    samples[dataset].setdefault(key, []).append(cell)
                                    done += 1
                                    print(
                                        f"[{mode} {done}/{total}] run {run + 1} {dataset}={count} "
                                        f"clients={conc} {path}: {cell['rps']:.0f} req/s, "
                                        f"p50 {cell['p50_us'] / 1000:.3f} ms, "
                                        f"p99 {cell['p99_us'] / 1000:.3f} ms, "
                                        f"errors {cell['errors']}, "
                                        f"mismatches {cell['mismatches']}",
                                        file=sys.stderr,
                                        flush=True,
                                    )
            for dataset, (paths, _) in rows.items():

                def order(key: str, paths: list[str] = paths) -> tuple[int, int, int]:
                    count, conc, path = key.split("/")
                    return int(count), int(conc), paths.index(path)

                ordered = sorted(samples[dataset].items(), key=lambda kv: order(kv[0]))
                cells = {key: median_cell(s) for key, s in ordered}
                if dataset == "users":
                    results["modes"][mode] = cells
                else:
                    results.setdefault("profiles", {})[mode] = cells
    table = markdown(results)
    (out_dir / "bench.json").write_text(json.dumps(results, indent=2))
    (out_dir / "bench.md").write_text(table)
    written = "bench.json, bench.md"
    if results["modes"]:
        first = next(iter(results["modes"]))
        (out_dir / "bench.svg").write_text(svg_chart(results, first))
        written += ", bench.svg"
    print(table)
    print(f"wrote {out_dir}/{written}")


if __name__ == "__main__":
    main()
