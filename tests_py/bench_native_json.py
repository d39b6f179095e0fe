"""Benchmark: ``Channel.write_json(users)`` against ``write_bytes(orjson.dumps(users))``.

Run it on a release build (``maturin develop --release``)::

    .venv/bin/python tests_py/bench_native_json.py [--counts 1000 100000] [--repeat N]

Both paths end with the same bytes in the slot (checked before timing). The two
are timed interleaved, round after round, and medians are reported, since a small
shared machine is noisy. Not collected by pytest (the file name does not start
with ``test_``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import shmbridge


def make_users(count: int) -> list[dict[str, Any]]:
    """The producer's users if importable, else rows of the same shape and size."""
    try:
        from py_producer.users import build_users
    except ImportError:
        return [
            {
                "id": i,
                "first_name": "Chloé",
                "last_name": "Fernández",
                "email": f"chloe.fernandez{i}@example.org",
                "age": 18 + (i * 37) % 73,
                "address": f"{i} Maple Street, Springfield, 12345, USA",
                "phone": f"+1-555-{(i * 7919) % 10000:04d}",
                "company": "Initech",
                "job_title": "Senior Data Engineer",
                "bio": "Enjoys hiking, chess and open source; writes about databases.",
            }
            for i in range(count)
        ]
    return build_users(count)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def bench(count: int, repeat: int, directory: Path) -> dict[str, float]:
    users = make_users(count)
    size = len(orjson.dumps(users))
    capacity = max(1 << 20, 2 * size)
    with shmbridge.Channel(
        f"bench{count}", directory, slot_count=2, slot_capacity=capacity, snapshot_slots=0
    ) as ch:
        reader = shmbridge.Reader(ch.path)
        # Same bytes both ways, and warm mappings.
        ch.write_bytes(0, 1, orjson.dumps(users))
        ch.write_json(1, 1, users)
        assert reader.read_bytes(0) == reader.read_bytes(1) == orjson.dumps(users)

        rid = 1

        def via_orjson() -> None:
            ch.write_bytes(0, rid, orjson.dumps(users))

        def via_write_json() -> None:
            ch.write_json(1, rid, users)

        def orjson_only() -> None:
            orjson.dumps(users)

        def dumps_only() -> None:
            shmbridge.dumps(users)

        cases: dict[str, Callable[[], None]] = {
            "write_bytes(orjson.dumps)": via_orjson,
            "write_json": via_write_json,
            "orjson.dumps alone": orjson_only,
            "shmbridge.dumps alone": dumps_only,
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, fn in cases.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
            rid += 1
    print(f"\n{count} users, {size} bytes of JSON, {repeat} rounds (medians, ms):")
    result = {name: median_ms(s) for name, s in samples.items()}
    for name, value in result.items():
        print(f"  {name:28s} {value:9.3f}")
    ratio = result["write_bytes(orjson.dumps)"] / result["write_json"]
    print(f"  write_json is {ratio:.2f}x the speed of write_bytes(orjson.dumps(...))")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeat", type=int, default=0, help="rounds (default: by size)")
    parser.add_argument("--dir", type=Path, default=None, help="channel directory (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        directory = args.dir or Path(tmp)
        for count in args.counts:
            repeat = args.repeat or max(7, min(301, 300_000 // max(count, 1)))
            bench(count, repeat, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
