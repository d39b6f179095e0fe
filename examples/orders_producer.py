"""A complete producer without an HTTP server: a ``shmbridge.Bridge`` named ``orders``.

Handlers (called by a reader over the signal socket ``$SHMBRIDGE_DIR/orders.sock``):

- ``recent`` (param ``limit``: 0..1000, default 10): the newest orders, as JSON: a list
  of ``{"id", "customer": {"name", "city"}, "lines": [{"sku", "qty", "price"}], "placed"}``;
- ``prices`` (async; param ``n``: 0..100000, default 8): ``n`` little-endian f64 values
  ``i * 0.5``, raw bytes with content type ``application/x-f64le``.

It publishes a snapshot of 5 orders, prints ``ready`` and serves until SIGTERM or
SIGINT. The channel's directory is ``$SHMBRIDGE_DIR`` (default ``shared_memory_dir``).

    python examples/orders_producer.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import struct
import sys
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

import shmbridge

CUSTOMERS = (
    ("Ana Souza", "Lisboa"),
    ("Łukasz Nowak", "Kraków"),
    ("Jürgen Weiß", "München"),
    ("Chloé Martin", "Lyon"),
    ("Kenji Sato", "Tokyo"),
    ("Amara Okafor", "Lagos"),
    ("Sam Taylor", "Leeds"),
)
SKUS = ("A-100", "B-220", "C-310", "D-404", "E-512")
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def int_param(params: Mapping[str, str], name: str, default: int, hi: int) -> int:
    """Parameter ``name`` as an int in 0..hi; ValueError (answered 400) if it is not."""
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 7 or int(raw) > hi:
        raise ValueError(f"parameter {name!r} must be an integer in 0..{hi}, got {raw[:40]!r}")
    return int(raw)


def order(order_id: int) -> dict[str, Any]:
    name, city = CUSTOMERS[order_id % len(CUSTOMERS)]
    lines = [
        {
            "sku": SKUS[(order_id + i) % len(SKUS)],
            "qty": 1 + (order_id * 7 + i) % 5,
            "price": round(4.5 + ((order_id * 13 + i * 29) % 1000) / 8.0, 2),
        }
        for i in range(1 + order_id % 3)
    ]
    placed = EPOCH + dt.timedelta(minutes=17 * order_id)
    return {
        "id": order_id,
        "customer": {"name": name, "city": city},
        "lines": lines,
        "placed": placed,
    }


def recent_orders(limit: int) -> list[dict[str, Any]]:
    return [order(i) for i in range(1000, 1000 - limit, -1)]


def main() -> int:
    directory = os.environ.get("SHMBRIDGE_DIR", "shared_memory_dir")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with shmbridge.Bridge("orders", directory) as bridge:

        @bridge.handler("recent")
        def recent(params: Mapping[str, str]) -> object:
            return recent_orders(int_param(params, "limit", 10, 1000))

        @bridge.handler("prices")
        async def prices(params: Mapping[str, str]) -> object:
            n = int_param(params, "n", 8, 100_000)
            await asyncio.sleep(0)  # a coroutine: it runs on the bridge's asyncio loop
            body = struct.pack(f"<{n}d", *(i * 0.5 for i in range(n)))
            return shmbridge.Reply(body, content_type="application/x-f64le")

        bridge.serve()
        bridge.publish(recent_orders(5))
        print("ready", flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
