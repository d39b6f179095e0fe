"""JSON serializer microbench (`make microbench-json`): ``shmbridge.dumps`` against
``orjson.dumps`` and the stdlib's ``json.dumps`` on many shapes of data.

Every shape is checked first (shmbridge's bytes must be orjson's), then timed: each round
times the three serializers one after the other (the order rotated each round), each over
enough calls to take about a millisecond; the table gives the median time per call over
the rounds, and the ratio shmbridge / orjson of those medians (below 1: shmbridge is
faster). The garbage collector is paused while timing. Results go to stdout (markdown),
``--md-out`` and ``--json-out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shmbridge

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def producer_users(n: int) -> list[Any]:
    from py_producer.users import build_users

    return build_users(n)


def original_users(n: int) -> list[Any]:
    """Users shaped like the original service's: a nested address with float
    coordinates, lists, education and work history."""
    rng = random.Random(7)
    return [
        {
            "id": i,
            "name": f"User {i}",
            "email": f"user{i}@example.com",
            "age": 20 + i % 50,
            "active": i % 3 == 0,
            "score": rng.uniform(0, 100),
            "address": {
                "street": f"{i} Main Street",
                "city": rng.choice(["Springfield", "Shelbyville", "Ogdenville"]),
                "zip": f"{10000 + i % 90000}",
                "coordinates": {"lat": rng.uniform(-90, 90), "lng": rng.uniform(-180, 180)},
            },
            "tags": rng.sample(["a", "b", "c", "d", "e", "f"], 3),
            "education": [
                {"school": "State University", "degree": "BSc", "year": 2000 + i % 20},
            ],
            "work_history": [
                {"company": f"Company {j}", "title": "Engineer", "years": j + 1.5} for j in range(2)
            ],
        }
        for i in range(n)
    ]


def geojson_points(n: int) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of points: a short list of floats in each
    feature's geometry, among dicts and strs."""
    rng = random.Random(11)
    features = [
        {
            "type": "Feature",
            "geometry": {
                "type": "Point",
                "coordinates": [round(rng.uniform(-180, 180), 6), round(rng.uniform(-90, 90), 6)],
            },
            "properties": {"name": f"place {i}", "population": rng.randrange(10**6)},
        }
        for i in range(n)
    ]
    return {"type": "FeatureCollection", "features": features}


@dataclasses.dataclass
class Item:
    id: int
    name: str
    price: float


def _held_twice(strings: list[str]) -> dict[str, list[str]]:
    """The same str objects in two lists: each is referenced twice."""
    return {"a": strings, "b": list(strings)}


def _repeated(values: list[str], n: int) -> list[str]:
    """`n` items, each one of the same few str objects (category-like values)."""
    return [values[i % len(values)] for i in range(n)]


def shapes() -> dict[str, Callable[[], Any]]:
    """Each shape's name and a function that builds it (so one can be built alone)."""
    rng = random.Random(42)
    n = 50_000
    key_lengths = [1, 4, 8, 16, 24, 32, 48, 64]
    return {
        "floats, short (50k, 2 decimals)": lambda: [
            round(rng.uniform(0, 1000), 2) for _ in range(n)
        ],
        "floats, long (50k random())": lambda: [rng.random() for _ in range(n)],
        "floats, negative (50k)": lambda: [-rng.uniform(0, 1e6) for _ in range(n)],
        "floats, exponents (50k, 1e-300..1e300)": lambda: [
            rng.uniform(1, 10) * 10.0 ** rng.randint(-300, 300) for _ in range(n)
        ],
        "floats with ints among them (50k, one in ten whole)": lambda: [
            rng.randrange(1000) if i % 10 == 0 else round(rng.uniform(0, 1000), 2) for i in range(n)
        ],
        "ints and floats alternating (50k)": lambda: [
            rng.randrange(1000) if i % 2 else round(rng.uniform(0, 1000), 2) for i in range(n)
        ],
        "ints, small (50k, 0..999)": lambda: [rng.randrange(1000) for _ in range(n)],
        "ints, 64-bit edges (50k)": lambda: [
            rng.choice([2**63 - 1 - rng.randrange(100), -(2**63) + rng.randrange(100), 2**64 - 1])
            for _ in range(n)
        ],
        "ints, negative (50k)": lambda: [-rng.randrange(10**9) for _ in range(n)],
        "bools and None (20k [True, False, None])": lambda: [
            [True, False, None] for _ in range(20_000)
        ],
        "nested dicts (20k, 3 levels)": lambda: [
            {"a": {"b": {"c": i, "d": "x"}, "e": [i, i + 1]}, "f": None} for i in range(20_000)
        ],
        "nested lists (20k, 4 levels)": lambda: [[[[i, i + 1]], [i]] for i in range(20_000)],
        "GeoJSON points (10k features)": lambda: geojson_points(10_000),
        "coordinate pairs (20k [lng, lat], 6 decimals)": lambda: [
            [round(rng.uniform(-180, 180), 6), round(rng.uniform(-90, 90), 6)]
            for _ in range(20_000)
        ],
        "strings, ASCII (50k)": lambda: [f"ascii string number {i}" for i in range(n)],
        "strings, non-ASCII with escapes (50k)": lambda: [
            f'héllo "wörld" {i}\n日本' for i in range(n)
        ],
        "strings, short (50k, 2-3 bytes)": lambda: [f"s{i % 100}" for i in range(n)],
        "strings, short non-ASCII (50k, 4-5 bytes of UTF-8)": lambda: [
            f"名{i % 100}" for i in range(n)
        ],
        "strings held twice (2 lists of the same 25k)": lambda: _held_twice(
            [f"ascii string number {i}" for i in range(n // 2)]
        ),
        "strings, 10 values repeated (50k)": lambda: _repeated(
            [f"category-{k}" for k in range(10)], n
        ),
        "lists of 3 short strings (20k)": lambda: [
            [f"a{i}", f"b{i}", f"c{i}"] for i in range(20_000)
        ],
        "dict keys of 1 to 64 bytes (2k dicts x 16)": lambda: [
            {("k" * length) + str(j): j for length in key_lengths for j in range(2)}
            for _ in range(2000)
        ],
        "list of 200k ints": lambda: list(range(200_000)),
        "list of 100k small dicts": lambda: [{"id": i, "ok": True} for i in range(100_000)],
        "small object (one dict of 5)": lambda: {
            "id": 1,
            "name": "x",
            "ok": True,
            "v": 1.5,
            "t": None,
        },
        "tiny list [1, 2, 3]": lambda: [1, 2, 3],
        "datetimes, UUIDs (10k each)": lambda: (
            [
                dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i * 7919)
                for i in range(10_000)
            ]
            + [uuid.UUID(int=rng.getrandbits(128)) for _ in range(10_000)]
        ),
        "dataclasses (20k)": lambda: [Item(i, f"item {i}", i * 0.5) for i in range(20_000)],
        "project users (1,000)": lambda: producer_users(1000),
        "project users (100,000)": lambda: producer_users(100_000),
        "original-service users (1,000)": lambda: original_users(1000),
        # numpy shapes: orjson with OPT_SERIALIZE_NUMPY (see `orjson_dumps`).
        "numpy float64 (1M)": lambda: np.random.default_rng(1).uniform(-1e3, 1e3, 1_000_000),
        "numpy int64 (100k)": lambda: np.random.default_rng(2).integers(-(10**12), 10**12, 100_000),
        "numpy float64 2-D (1000x100)": lambda: np.random.default_rng(3).random((1000, 100)),
        "numpy int32 2-D (1000x100)": lambda: np.arange(100_000, dtype=np.int32).reshape(1000, 100),
        "numpy float32 (100k)": lambda: np.random.default_rng(4).random(100_000, dtype=np.float32),
        "numpy bool (100k)": lambda: np.random.default_rng(5).random(100_000) < 0.5,
        "numpy datetime64[s] (10k)": lambda: (
            np.datetime64("2020-01-01T00:00:00") + np.arange(10_000) * np.timedelta64(7919, "s")
        ),
        "numpy scalars (10k int64 and float32)": lambda: [
            x for i in range(5000) for x in (np.int64(i), np.float32(i / 3))
        ],
    }


NUMPY = orjson.OPT_SERIALIZE_NUMPY


def orjson_dumps(name: str) -> Callable[[Any], bytes]:
    """orjson's call for a shape: with OPT_SERIALIZE_NUMPY for the numpy ones only (so
    the others time the plain call a user makes)."""
    if name.startswith("numpy"):
        return lambda value: orjson.dumps(value, option=NUMPY)
    return orjson.dumps


def stdlib_dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=json_default)
    return text.encode()


def json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.ndarray | np.generic):
        return value.astype(str).tolist() if value.dtype.kind == "M" else value.tolist()
    raise TypeError(type(value).__name__)


def calls_for(fn: Callable[[], object], target_s: float) -> int:
    """How many calls take about `target_s` (at least 1)."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(target_s / once))


def time_shape(
    name: str, value: Any, rounds: int, target_s: float, stdlib: bool = True
) -> dict[str, float]:
    orjson_way = orjson_dumps(name)
    ways: dict[str, Callable[[], object]] = {
        "shmbridge": lambda: shmbridge.dumps(value),
        "orjson": lambda: orjson_way(value),
    }
    if stdlib:
        ways["json"] = lambda: stdlib_dumps(value)
    calls = {name: calls_for(fn, target_s) for name, fn in ways.items()}
    samples: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, n = ways[name], calls[name]
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter_ns() - start) / n / 1000)
    result = {name: statistics.median(values) for name, values in samples.items()}
    # Each round times both side by side, so its ratio is steadier than the medians' ratio
    # when the machine's speed drifts; the middle half of those ratios shows the spread.
    pairs = zip(samples["shmbridge"], samples["orjson"], strict=True)
    ratios = [ours / theirs for ours, theirs in pairs]
    if len(ratios) >= 2:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        result["ratio_q1"], result["ratio_q3"] = q1, q3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="rounds per shape (median)")
    parser.add_argument("--target-ms", type=float, default=2.0, help="time per sample")
    parser.add_argument("--only", default="", help="run the shapes whose name contains this")
    parser.add_argument(
        "--no-stdlib",
        action="store_true",
        help="leave the stdlib's json out (its column stays empty): a shorter run",
    )
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--md-out", type=Path)
    args = parser.parse_args()

    all_shapes = {k: build() for k, build in shapes().items() if args.only.lower() in k.lower()}
    results: dict[str, dict[str, float]] = {}
    for name, value in all_shapes.items():
        if shmbridge.dumps(value) != orjson_dumps(name)(value):
            raise SystemExit(f"{name}: shmbridge's bytes differ from orjson's")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    gc.disable()
    try:
        for name, value in all_shapes.items():
            target_s = args.target_ms / 1000
            results[name] = time_shape(name, value, args.rounds, target_s, not args.no_stdlib)
            r = results[name]
            print(f"{name}: {r['shmbridge']:.2f} / {r['orjson']:.2f} us", file=sys.stderr)
    finally:
        gc.enable()

    lines = [
        f"JSON serializers, median us per call over {args.rounds} rounds "
        f"({platform.python_version()}, orjson {orjson.__version__}, "
        f"shmbridge {shmbridge.__version__}; {started}, load average {load:.1f} at the start; "
        "a noisy 2-core machine shared with other builds). The last column is the middle "
        "half of the rounds' own ratios (each round times both side by side).",
        "",
        "| shape | shmbridge us | orjson us | json us | shmbridge / orjson | per round, q1-q3 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratio = r["shmbridge"] / r["orjson"]
        stdlib = f"{r['json']:.1f}" if "json" in r else ""
        spread = f"{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}" if "ratio_q1" in r else ""
        lines.append(
            f"| {name} | {r['shmbridge']:.2f} | {r['orjson']:.2f} | {stdlib} | {ratio:.2f} "
            f"| {spread} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md_out:
        args.md_out.parent.mkdir(parents=True, exist_ok=True)
        args.md_out.write_text(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"rounds": args.rounds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
