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

from helpers import SERVICE_LOGS, ProducerHandle, start_producer  # noqa: E402

#: How much of the end of each service log a failed test shows.
LOG_TAIL = 6000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test shows the ends of the logs of the services it started."""
    report = yield
    if report.failed:
        for path in SERVICE_LOGS:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                text = f"(unreadable: {exc})"
            report.sections.append((f"service log {path.name}", text[-LOG_TAIL:]))
    return report


@pytest.fixture(autouse=True)
def _forget_service_logs() -> None:
    """Each test shows only the logs of its own services."""
    SERVICE_LOGS.clear()


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
