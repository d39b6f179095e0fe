"""pytest setup shared by tests_py: import paths and a producer-process fixture."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
for path in (str(REPO_ROOT), str(TESTS_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

from helpers import ProducerHandle, start_producer  # noqa: E402


@pytest.fixture
def producer_factory(tmp_path: Path) -> Iterator[Callable[..., ProducerHandle]]:
    """Start producers with ``producer_factory(**settings)``; all are stopped at teardown."""
    started: list[ProducerHandle] = []

    def start(**settings: Any) -> ProducerHandle:
        handle = start_producer(tmp_path, **settings)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
