"""Python writer microbench (part of `make microbench`).

1. Getting N users from Python objects into shared memory, at 1,000 and 100,000 users:
   median and p99 over many rounds, the ways interleaved within each round (order rotated):
   - ``write_bytes(orjson.dumps(users))`` into a channel slot;
   - ``write_json(users)`` (serialized in Rust straight into the slot);
   - ``reserve(n)``, fill the memoryview from ``orjson.dumps`` bytes, commit on exit;
   - ``orjson.dumps`` + copy into a ``multiprocessing.shared_memory.SharedMemory`` buffer;
   - ``json.dumps(...).encode()`` + the same copy (the stdlib, compact separators);
   - ``orjson.dumps`` alone, for reference (what every orjson row above pays).
2. Bandwidth: ``write_bytes`` of 25 MB into a warm channel slot against a plain copy of the
   same bytes into a warm preallocated buffer (``memoryview(dst)[:] = src``), and into a
   warm ``SharedMemory`` buffer; GB/s and the ratio write_bytes / memcpy (target >= 0.70).

The channel lives in a private temp directory under /dev/shm (memory-backed, like the
producer's), and ``SharedMemory`` is in /dev/shm too. The garbage collector is paused while
timing. Results go to stdout (markdown), ``--md-out`` and ``--json-out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import orjson
import shmbridge

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SLOT_CAPACITY = 32 << 20
BANDWIDTH_BYTES = 25_000_000


def load_users(n: int) -> list[Any]:
    """The producer's users when importable, else look-alike dicts of the same shape."""
    try:
        from py_producer.users import build_users
    except ImportError:
        return [
            {
                "id": i,
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "email": f"user{i}@example.com",
                "age": 18 + i % 60,
                "address": {"street": f"{i} Main St", "city": "Springfield", "zip": "12345"},
                "phone": "+1-555-0100",
                "company": "Example Corp",
                "job_title": "Engineer",
                "bio": "Writes software and reads about it. " * 3,
            }
            for i in range(1, n + 1)
        ]
    return list(build_users(n))


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    rank = math.ceil(q * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def summary(samples_ns: list[int]) -> dict[str, float]:
    values = sorted(s / 1e6 for s in samples_ns)
    return {
        "median_ms": quantile(values, 0.5),
        "p10_ms": quantile(values, 0.1),
        "p90_ms": quantile(values, 0.9),
        "p99_ms": quantile(values, 0.99),
        "min_ms": values[0],
        "max_ms": values[-1],
    }


def interleaved(
    ways: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> dict[str, list[int]]:
    """Runs every way once per round, rotating the order; returns durations in ns."""
    names = list(ways)
    samples: dict[str, list[int]] = {name: [] for name in names}
    for _ in range(warmup):
        for name in names:
            ways[name]()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                fn = ways[name]
                start = time.perf_counter_ns()
                fn()
                samples[name].append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return samples


class Bench:
    """A warm channel slot, a warm SharedMemory buffer and a request id counter."""

    def __init__(self, channel: shmbridge.Channel, shm: shared_memory.SharedMemory) -> None:
        self.channel = channel
        self.shm = shm
        self.request_id = 0

    def next_id(self) -> int:
        self.request_id += 1
        return self.request_id

    def users_ways(self, users: list[Any]) -> dict[str, Callable[[], object]]:
        channel, buf = self.channel, self.shm.buf
        assert buf is not None

        def write_bytes_orjson() -> object:
            return channel.write_bytes(0, self.next_id(), orjson.dumps(users), encoding="json")

        def write_json() -> object:
            return channel.write_json(0, self.next_id(), users)

        def reserve_fill_commit() -> object:
            data = orjson.dumps(users)
            reservation = channel.reserve(0, self.next_id(), len(data))
            with reservation as view:
                view[:] = data
            return reservation.receipt

        def shared_memory_orjson() -> object:
            data = orjson.dumps(users)
            buf[: len(data)] = data
            return None

        def shared_memory_json() -> object:
            data = json.dumps(users, separators=(",", ":"), ensure_ascii=False).encode()
            buf[: len(data)] = data
            return None

        def orjson_only() -> object:
            return orjson.dumps(users)

        return {
            "write_bytes(orjson.dumps(users))": write_bytes_orjson,
            "write_json(users)": write_json,
            "reserve(n) + fill view + commit": reserve_fill_commit,
            "orjson.dumps + copy into SharedMemory": shared_memory_orjson,
            "json.dumps().encode() + copy into SharedMemory": shared_memory_json,
            "orjson.dumps alone (reference)": orjson_only,
        }

    def bandwidth_ways(self, src: bytes) -> dict[str, Callable[[], object]]:
        channel, buf = self.channel, self.shm.buf
        assert buf is not None
        dst = bytearray(len(src))
        dst_view = memoryview(dst)
        dst_view[:] = src  # touch every page once: warm

        def write_bytes() -> object:
            return channel.write_bytes(1, self.next_id(), src)

        def memcpy_private() -> object:
            dst_view[:] = src
            return None

        def memcpy_shared_memory() -> object:
            buf[: len(src)] = src
            return None

        return {
            "write_bytes (channel slot)": write_bytes,
            "memcpy into bytearray": memcpy_private,
            "memcpy into SharedMemory": memcpy_shared_memory,
        }


def users_table(results: dict[str, Any]) -> list[str]:
    lines = []
    for users, block in results.items():
        lines.append(
            f"**{int(users):,} users** ({block['payload_bytes']:,} bytes of JSON, "
            f"{block['rounds']} rounds)"
        )
        lines.append("")
        lines.append("| way | median ms | p99 ms | p10-p90 ms | vs write_bytes(orjson) |")
        lines.append("|---|---:|---:|---:|---:|")
        base = block["ways"]["write_bytes(orjson.dumps(users))"]["median_ms"]
        for name, s in block["ways"].items():
            lines.append(
                f"| `{name}` | {s['median_ms']:.3f} | {s['p99_ms']:.3f} | "
                f"{s['p10_ms']:.3f}-{s['p90_ms']:.3f} | {s['median_ms'] / base:.2f}x |"
            )
        lines.append("")
    return lines


def bandwidth_table(block: dict[str, Any]) -> list[str]:
    size = block["bytes"]
    lines = [
        f"**{size / 1e6:.0f} MB copy** ({block['rounds']} rounds; GB/s = 10^9 bytes/s)",
        "",
        "| way | median GB/s | p10-p90 GB/s | median ms |",
        "|---|---:|---:|---:|",
    ]
    for name, s in block["ways"].items():
        lines.append(
            f"| {name} | {size / s['median_ms'] / 1e6:.2f} | "
            f"{size / s['p90_ms'] / 1e6:.2f}-{size / s['p10_ms'] / 1e6:.2f} | "
            f"{s['median_ms']:.3f} |"
        )
    lines.append("")
    lines.append(
        f"write_bytes / memcpy into bytearray: **{block['ratio_of_medians']:.2f}** "
        f"(ratio of medians; per-round ratios p10-p50-p90: "
        f"{block['round_ratio_p10']:.2f}-{block['round_ratio_p50']:.2f}-"
        f"{block['round_ratio_p90']:.2f}; target >= 0.70)"
    )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="1000,100000", help="user counts, comma-separated")
    parser.add_argument("--rounds-small", type=int, default=400, help="rounds at <= 10,000 users")
    parser.add_argument("--rounds-large", type=int, default=60, help="rounds above 10,000 users")
    parser.add_argument("--bandwidth-rounds", type=int, default=200)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--md-out", type=Path, help="also write the markdown tables here")
    args = parser.parse_args()
    counts = [int(part) for part in args.users.split(",") if part]

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "users": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="shmbridge-microbench-", dir="/dev/shm") as directory,
        shmbridge.Channel(
            "microbench", directory, slot_count=2, slot_capacity=SLOT_CAPACITY, snapshot_slots=1
        ) as channel,
    ):
        shm = shared_memory.SharedMemory(create=True, size=SLOT_CAPACITY)
        try:
            buf = shm.buf
            assert buf is not None
            buf[:] = bytes(SLOT_CAPACITY)  # warm: every page touched once
            bench = Bench(channel, shm)
            for count in counts:
                users = load_users(count)
                rounds = args.rounds_small if count <= 10_000 else args.rounds_large
                ways = bench.users_ways(users)
                samples = interleaved(ways, rounds, warmup=max(3, rounds // 20))
                out["users"][str(count)] = {
                    "payload_bytes": len(orjson.dumps(users)),
                    "rounds": rounds,
                    "ways": {name: summary(s) for name, s in samples.items()},
                }
                del users, ways
                print(f"{count} users: done", file=sys.stderr, flush=True)

            src = (orjson.dumps(load_users(1000)) * (BANDWIDTH_BYTES // 250_000 + 1))[
                :BANDWIDTH_BYTES
            ]
            ways = bench.bandwidth_ways(src)
            samples = interleaved(ways, args.bandwidth_rounds, warmup=10)
            write = samples["write_bytes (channel slot)"]
            memcpy = samples["memcpy into bytearray"]
            per_round = sorted(m / w for w, m in zip(write, memcpy, strict=True))
            summaries = {name: summary(s) for name, s in samples.items()}
            out["bandwidth"] = {
                "bytes": BANDWIDTH_BYTES,
                "rounds": args.bandwidth_rounds,
                "ways": summaries,
                "ratio_of_medians": summaries["memcpy into bytearray"]["median_ms"]
                / summaries["write_bytes (channel slot)"]["median_ms"],
                "round_ratio_p10": quantile(per_round, 0.1),
                "round_ratio_p50": quantile(per_round, 0.5),
                "round_ratio_p90": quantile(per_round, 0.9),
            }
            del buf
        finally:
            shm.close()
            shm.unlink()

    lines = [*users_table(out["users"]), *bandwidth_table(out["bandwidth"])]
    print("\n".join(lines))
    if args.md_out is not None:
        args.md_out.parent.mkdir(parents=True, exist_ok=True)
        args.md_out.write_text("\n".join(lines) + "\n")
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
