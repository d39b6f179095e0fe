"""The query parameters both serving paths read (REST and the Bridge handlers), and the
error a bad one raises: below the app and the bridge, so that neither imports the other
for them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from py_producer.profiles import MAX_PROFILES

_INT_RE = re.compile(r"-?[0-9]{1,19}")


class ApiError(Exception):
    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail


def _shorten(raw: str, limit: int = 40) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "..."


def int_param(params: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    """The query parameter ``name`` as an int in lo..hi; None if absent; ApiError if bad."""
    raw = params.get(name)
    if raw is None:
        return None
    if not _INT_RE.fullmatch(raw):
        raise ApiError(
            400,
            "invalid_parameter",
            f"query parameter '{name}' must be an integer in {lo}..{hi}, got {_shorten(raw)!r}",
        )
    value = int(raw)
    if not lo <= value <= hi:
        raise ApiError(
            400,
            "invalid_parameter",
            f"query parameter '{name}' must be in {lo}..{hi}, got {value}",
        )
    return value


#: Users served when a request names no ``count``: what the original service served
#: (its curl lines and its load test ask without one). The gateway has the same default.
DEFAULT_COUNT = 100


def count_param(params: Mapping[str, str], users: int) -> int:
    """The ``count`` query parameter in 0..users; absent, ``DEFAULT_COUNT`` (at most ``users``)."""
    value = int_param(params, "count", 0, users)
    return min(DEFAULT_COUNT, users) if value is None else value


def profiles_param(params: Mapping[str, str]) -> int:
    """The ``count`` query parameter in 0..MAX_PROFILES; absent, ``DEFAULT_COUNT``."""
    value = int_param(params, "count", 0, MAX_PROFILES)
    return DEFAULT_COUNT if value is None else value
