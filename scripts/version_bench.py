"""``write_json(users)`` against ``write_bytes(orjson.dumps(users))`` on the running
interpreter: one JSON line per run on stdout (``scripts/bench_versions.sh`` runs it on
each CPython and builds the table in docs/python-versions.md).

Both ways write the producer's users into slot 0 of a channel in a private directory
under /dev/shm, interleaved within each round (order rotated, GC paused while timing,
as in scripts/microbench.py); each run reports the median of its rounds, in µs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import shmbridge
from shmbridge import _native

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from microbench import interleaved, load_users  # noqa: E402


def two_ways(channel: shmbridge.Channel, users: list[Any]) -> dict[str, Callable[[], object]]:
    request = iter(range(1, 1 << 62))

    def write_json() -> object:
        return channel.write_json(0, next(request), users)

    def orjson_write_bytes() -> object:
        return channel.write_bytes(0, next(request), orjson.dumps(users), encoding="json")

    return {"write_json": write_json, "orjson+write_bytes": orjson_write_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", default="1000,100000", help="user counts, comma-separated")
    parser.add_argument("--rounds-small", type=int, default=300, help="rounds at <= 10,000 users")
    parser.add_argument("--rounds-large", type=int, default=30, help="rounds above 10,000 users")
    parser.add_argument("--runs", type=int, default=3, help="runs; each reports its medians")
    args = parser.parse_args()
    counts = [int(n) for n in args.users.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="shmbridge-vbench-", dir="/dev/shm") as private,
        shmbridge.Channel("vbench", private, slot_count=1, slot_capacity=64 << 20) as channel,
    ):
        for run in range(args.runs):
            row: dict[str, object] = {
                "python": sys.version.split()[0],
                "module": Path(_native.__file__).name,
                "direct_reads": _native._direct_reads(),
                "orjson": orjson.__version__,
                "run": run,
            }
            for n in counts:
                users = load_users(n)
                assert shmbridge.dumps(users) == orjson.dumps(users)
                ways = two_ways(channel, users)
                rounds = args.rounds_small if n <= 10_000 else args.rounds_large
                samples = interleaved(ways, rounds, warmup=max(3, rounds // 10))
                for name, values in samples.items():
                    row[f"{name}@{n}"] = statistics.median(values) / 1000
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
