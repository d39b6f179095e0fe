"""Collects the three microbenches of `make microbench` into results/microbench.md and .json.

Inputs: the handoff example's JSON (``--handoff``), criterion's estimates for
benches/slot.rs (``--criterion-dir``, i.e. ``<target>/criterion``) and the Python writer
microbench's JSON (``--python``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

SIZES = [(2, 600), (100, 29_000), (1_000, 290_000), (10_000, 2_900_000), (100_000, 29_000_000)]
SLOT_FUNCTIONS = ["memcpy", "write", "read", "xxh3"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def criterion_results(directory: Path) -> dict[str, Any]:
    """Per size and function: median ns per iteration and its 95 % confidence bounds."""
    out: dict[str, Any] = {}
    for users, size in SIZES:
        row: dict[str, Any] = {"bytes": size}
        for function in SLOT_FUNCTIONS:
            path = directory / f"users_{users}" / function / "new" / "estimates.json"
            if not path.exists():
                continue
            median = json.loads(path.read_text())["median"]
            interval = median["confidence_interval"]
            row[function] = {
                "median_ns": median["point_estimate"],
                "low_ns": interval["lower_bound"],
                "high_ns": interval["upper_bound"],
            }
        out[str(users)] = row
    return out


def gbps(size: int, ns: float) -> float:
    return size / ns


def handoff_lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"{doc['iterations']:,} timed handoffs per row in {doc['blocks']} interleaved blocks "
        f"after {doc['warmup']:,} warm-up ones; microseconds, timed on the Rust side.",
        "",
        "| client | payload | p50 | p90 | p99 | max | p50 per block (min-max) | read step p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in doc["rows"]:
        lines.append(
            f"| {row['client_name']} | {row['payload_bytes']:,} B | {row['p50_us']:.1f} | "
            f"{row['p90_us']:.1f} | {row['p99_us']:.1f} | {row['max_us']:.0f} | "
            f"{row['block_p50_min_us']:.1f}-{row['block_p50_max_us']:.1f} | "
            f"{row['read_p50_us']:.1f} |"
        )
    lines.append("")
    return lines


def slot_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "Median GB/s (10^9 bytes/s) of criterion's samples; in brackets the bounds of its "
        "95 % confidence interval of the median.",
        "",
        "| users | payload | memcpy | write | read | xxh3 alone | write / memcpy | read / memcpy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for users, row in results.items():
        size = row["bytes"]
        if not all(f in row for f in SLOT_FUNCTIONS):
            continue

        def cell(function: str, size: int = size, row: dict[str, Any] = row) -> str:
            r = row[function]
            return (
                f"{gbps(size, r['median_ns']):.1f} "
                f"[{gbps(size, r['high_ns']):.1f}-{gbps(size, r['low_ns']):.1f}]"
            )

        memcpy = row["memcpy"]["median_ns"]
        lines.append(
            f"| {int(users):,} | {size:,} B | {cell('memcpy')} | {cell('write')} | "
            f"{cell('read')} | {cell('xxh3')} | {memcpy / row['write']['median_ns']:.2f} | "
            f"{memcpy / row['read']['median_ns']:.2f} |"
        )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handoff", type=Path, required=True)
    parser.add_argument("--criterion-dir", type=Path, required=True)
    parser.add_argument("--python", type=Path, required=True)
    parser.add_argument("--python-markdown", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, default=Path("results/microbench.md"))
    parser.add_argument("--out-json", type=Path, default=Path("results/microbench.json"))
    args = parser.parse_args()

    handoff = json.loads(args.handoff.read_text())
    slot = criterion_results(args.criterion_dir)
    python = json.loads(args.python.read_text())
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": python.get("python"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    md = [
        "# Microbenchmarks",
        "",
        f"{machine['date']}, {machine['cpu']}, {machine['cores']} cores, Linux "
        f"{machine['kernel']}, Python {machine['python']}. Written by `make microbench`. "
        "The machine is shared and noisy (other builds and tests run on its 2 cores): "
        "read the medians, the spreads and the side-by-side ratios, not single numbers.",
        "",
        "## 1. Handoff, Rust -> Python -> Rust (`tools/examples/handoff.rs`)",
        "",
        "The Rust side sends the 32-byte signal frame over the Unix socket; the producer's "
        "native listener calls a Python handler that writes a cached bytes object into the "
        "slot (`write_bytes`); the answer comes back; the Rust side copies the slot out "
        "(`ChannelReader::read_slot`: request id and checksum checked). The 2-byte rows are "
        'the signal round trip alone; "read step" is the copy-out part of each handoff.',
        "",
        *handoff_lines(handoff),
        "## 2. Slot write and read vs memcpy (`benches/slot.rs`, criterion)",
        "",
        "The channel file is in /dev/shm (tmpfs). `write` = `ChannelWriter::write_bytes` "
        "(copy + xxh3 + publish), `read` = `ChannelReader::read_slot` into a reused Vec "
        "(checks + volatile copy + xxh3 of the copy), `memcpy` = `copy_from_slice` into a "
        "preallocated Vec, `xxh3` = the checksum alone.",
        "",
        *slot_lines(slot),
        "## 3. Python writer (`scripts/microbench.py`)",
        "",
        args.python_markdown.read_text().rstrip(),
        "",
    ]
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text("\n".join(md) + "\n")
    doc = {"machine": machine, "handoff": handoff, "slot": slot, "python": python}
    args.out_json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out_md} and {args.out_json}")


if __name__ == "__main__":
    main()
