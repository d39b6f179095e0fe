"""``python -m py_producer.dump_users --count N --out FILE``: the users as JSON lines.

Writes one compact JSON user per line, ids 1..N in order, exactly as the producer
serializes them. The expected gateway body for any count ``c <= N`` is then
``b"[" + b",".join(first c lines) + b"]"``, byte for byte ``expected_users_json(c)``;
the load tool ``shmbridge_load --users-file FILE`` checks every response against it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from py_producer.users import USER_HARD_CAP, make_user


def write_users_file(path: Path, count: int) -> None:
    """Write users 1..count to ``path`` (atomically: a temporary file, then a rename)."""
    if not 0 <= count <= USER_HARD_CAP:
        raise ValueError(f"count must be in 0..{USER_HARD_CAP}, got {count}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as out:
        for user_id in range(1, count + 1):
            out.write(orjson.dumps(make_user(user_id)))
            out.write(b"\n")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m py_producer.dump_users",
        description="Write the producer's users 1..COUNT as one compact JSON object per line.",
    )
    parser.add_argument(
        "--count", type=int, required=True, help=f"users to write (0..{USER_HARD_CAP})"
    )
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    args = parser.parse_args(argv)
    try:
        write_users_file(args.out, args.count)
    except (ValueError, OSError) as exc:
        print(f"dump_users: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
