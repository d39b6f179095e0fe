"""Helpers for the tests of the native module (``shmbridge._native``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import shmbridge

#: A small capacity keeps channel files tiny (it is rounded up to whole pages).
SMALL_CAPACITY = 64 * 1024


def private_dir(base: Path, name: str = "shm") -> Path:
    """A directory fit for channel files (mode 0700)."""
    path = base / name
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def make_channel(
    directory: Path,
    name: str = "test",
    *,
    slot_count: int = 4,
    slot_capacity: int = SMALL_CAPACITY,
    snapshot_slots: int = 2,
) -> shmbridge.Channel:
    return shmbridge.Channel(
        name,
        directory,
        slot_count=slot_count,
        slot_capacity=slot_capacity,
        snapshot_slots=snapshot_slots,
    )


def run_python(code: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (same venv, same import paths)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
