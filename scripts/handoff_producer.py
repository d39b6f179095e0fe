"""The Python side of the handoff microbench (tools/examples/handoff.rs).

Creates a channel in a private temp directory under /dev/shm (memory-backed), serves its
signal socket with the native listener (``Channel.serve_uds``, polling as the producer
does: ``--signal-spin-us``), and answers each request
frame (version 2, any handler name) by writing a cached bytes object into the slot with
``write_bytes``. The call's parameter ``count`` (what the gateway's users call sends)
names the payload size in bytes (one of ``--sizes``), so one process serves every size.
Prints one JSON line ``{"channel": ..., "socket": ...}`` once it listens, then serves
until its standard input closes (the Rust side owns its life).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import shmbridge

CHUNK = b'{"id":1,"first_name":"Ada","email":"ada@example.com","age":36},'


def filler(size: int) -> bytes:
    """``size`` bytes of JSON-looking filler."""
    return (CHUNK * (size // len(CHUNK) + 1))[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="2,250000", help="payload sizes in bytes, comma-separated"
    )
    parser.add_argument("--slot-capacity", type=int, default=1 << 20)
    parser.add_argument(
        "--signal-spin-us",
        type=int,
        default=int(os.environ.get("SHMBRIDGE_SIGNAL_SPIN_US", "250")),
        help="serve_uds(spin_us=...): as python -m py_producer (SHMBRIDGE_SIGNAL_SPIN_US, 250)",
    )
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",") if part]
    payloads = {size: filler(size) for size in sizes}

    with (
        tempfile.TemporaryDirectory(prefix="shmbridge-handoff-", dir="/dev/shm") as directory,
        shmbridge.Channel(
            "handoff", directory, slot_count=4, slot_capacity=args.slot_capacity
        ) as channel,
    ):

        def handler(
            slot: int, request_id: int, name: str, params: dict[str, str]
        ) -> shmbridge.Receipt:
            size = params.get("count", "")
            data = payloads.get(int(size)) if size.isdigit() else None
            if data is None:
                raise ValueError(f"no cached payload of {size!r} bytes (sizes: {sizes})")
            return channel.write_bytes(slot, request_id, data)

        socket_path = channel.serve_uds(handler, spin_us=args.signal_spin_us)
        print(json.dumps({"channel": channel.path, "socket": socket_path}), flush=True)
        # Blocks without the GIL until the Rust side closes our stdin.
        sys.stdin.buffer.read()


if __name__ == "__main__":
    main()
