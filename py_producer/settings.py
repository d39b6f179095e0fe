"""Producer settings: each one is a command-line flag and an environment variable.

A flag wins over its environment variable, which wins over the built-in default.
A bad value stops the program at start with a message naming the flag or the variable.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from py_producer.users import USER_HARD_CAP

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
MAX_SLOT_COUNT = 4096


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    shm_dir: str = "shared_memory_dir"
    channel: str = "users"
    slot_count: int = 16
    slot_capacity: int = 33_554_432
    max_count: int = 100_000
    log_level: str = "info"
    write_delay_ms: int = 0
    cache_payload: bool = False
    signal_socket: bool = True
    signal_spin_us: int = 250
    snapshot: bool = True


class SettingError(ValueError):
    """A setting has a bad value; the message names the setting."""


# --- value parsers: each takes the raw text and returns the value or raises ValueError ---


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        text = raw.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", text):
            raise ValueError(f"must be an integer in {lo}..{hi}")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"must be in {lo}..{hi}")
        return value

    return parse


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}
MAX_SLOT_CAPACITY = 4 * 1024**3
#: Snapshot ring slots: readers copying an older snapshot are not overwritten at once.
SNAPSHOT_RING = 4
#: Where a user raises the slot capacity: added to "too large" errors by the producer
#: (the library's own messages name no setting of this app).
SLOT_CAPACITY_SETTING = "--slot-capacity / SHMBRIDGE_SLOT_CAPACITY"


def parse_size(raw: str) -> int:
    """Bytes: a plain integer, or an integer with a binary unit (64MiB, 512k, 1G)."""
    match = re.fullmatch(r"\s*([0-9]{1,19})\s*([a-zA-Z]*)\s*", raw)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("must be a size in bytes, e.g. 33554432 or 32MiB")
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not 1 <= value <= MAX_SLOT_CAPACITY:
        raise ValueError(f"must be in 1..{MAX_SLOT_CAPACITY} bytes")
    return value


def parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def parse_log_level(raw: str) -> str:
    text = raw.strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return text


def parse_nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


def parse_channel_name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", raw):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
    return raw


@dataclass(frozen=True)
class _Spec:
    field: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    is_bool: bool = False


SPECS: tuple[_Spec, ...] = (
    _Spec("host", "--host", "SHMBRIDGE_PRODUCER_HOST", parse_nonempty, "address to listen on"),
    _Spec("port", "--port", "SHMBRIDGE_PRODUCER_PORT", _int_in(0, 65535), "TCP port to listen on"),
    _Spec(
        "shm_dir",
        "--shm-dir",
        "SHMBRIDGE_SHM_DIR",
        parse_nonempty,
        "directory of the channel file (created with mode 0700 if missing)",
        metavar="DIR",
    ),
    _Spec("channel", "--channel", "SHMBRIDGE_CHANNEL", parse_channel_name, "channel name"),
    _Spec(
        "slot_count",
        "--slot-count",
        "SHMBRIDGE_SLOT_COUNT",
        _int_in(2, MAX_SLOT_COUNT),
        "number of request slots; the last one is reserved for hand calls",
        metavar="N",
    ),
    _Spec(
        "slot_capacity",
        "--slot-capacity",
        "SHMBRIDGE_SLOT_CAPACITY",
        parse_size,
        "bytes one slot can hold: the largest payload (plain integer, or with KiB/MiB/GiB)",
        metavar="BYTES",
    ),
    _Spec(
        "max_count",
        "--max-count",
        "SHMBRIDGE_MAX_COUNT",
        _int_in(0, USER_HARD_CAP),
        "number of users held at start, and the largest count accepted",
        metavar="N",
    ),
    _Spec(
        "log_level",
        "--log-level",
        "SHMBRIDGE_LOG_LEVEL",
        parse_log_level,
        f"log level ({'/'.join(LOG_LEVELS)}); 'warning' silences the per-request lines",
        metavar="LEVEL",
    ),
    _Spec(
        "write_delay_ms",
        "--write-delay-ms",
        "SHMBRIDGE_TEST_WRITE_DELAY_MS",
        _int_in(0, 600_000),
        "test hook: sleep this many ms before each shared-memory write (slow producer)",
        metavar="MS",
    ),
    _Spec(
        "cache_payload",
        "--cache-payload",
        "SHMBRIDGE_CACHE_PAYLOAD",
        parse_bool,
        "cache the serialized payload per (count, data version)",
        is_bool=True,
    ),
    _Spec(
        "signal_socket",
        "--signal-socket",
        "SHMBRIDGE_SIGNAL_SOCKET",
        parse_bool,
        "also take write requests on the Unix socket <shm-dir>/<channel>.sock "
        "(the gateway's fastest signal)",
        is_bool=True,
    ),
    _Spec(
        "signal_spin_us",
        "--signal-spin-us",
        "SHMBRIDGE_SIGNAL_SPIN_US",
        _int_in(0, 1000),
        "after answering on the signal socket, poll for the next request this many "
        "microseconds before sleeping, when no other request is running (0: never)",
        metavar="US",
    ),
    _Spec(
        "snapshot",
        "--snapshot",
        "SHMBRIDGE_SNAPSHOT",
        parse_bool,
        "publish all users as a snapshot at start and on every data change "
        "(served by the gateway's /api/users-via-snapshot)",
        is_bool=True,
    ),
)


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m py_producer",
        description=(
            "shmbridge producer: serves deterministic users over REST (/api/users) and "
            "writes them into a shared-memory channel (/api/write-to-shm). "
            "Every setting is a flag or an environment variable; a flag wins."
        ),
    )
    for spec in SPECS:
        help_text = (
            f"{spec.help} [env {spec.env}; default {_default_text(getattr(defaults, spec.field))}]"
        )
        if spec.is_bool:
            parser.add_argument(
                spec.flag,
                dest=spec.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                spec.flag,
                dest=spec.field,
                default=None,
                metavar=spec.metavar or spec.field.upper(),
                help=help_text,
            )
    return parser


def resolve(namespace: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from parsed flags and the environment; raises SettingError on a bad value."""
    values: dict[str, Any] = {}
    for spec in SPECS:
        flag_value = getattr(namespace, spec.field)
        if flag_value is not None:
            if spec.is_bool:
                values[spec.field] = bool(flag_value)
                continue
            source, raw = spec.flag, str(flag_value)
        elif spec.env in environ:
            source, raw = spec.env, environ[spec.env]
        else:
            continue
        try:
            values[spec.field] = spec.parse(raw)
        except ValueError as exc:
            raise SettingError(f"invalid {source} value {raw!r}: {exc}") from None
    return Settings(**values)


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Parse flags (default: sys.argv) and environment (default: os.environ).

    Exits with status 2 and a usage message on a bad flag or value, like argparse.
    """
    parser = build_parser()
    namespace = parser.parse_args(argv)
    try:
        return resolve(namespace, os.environ if environ is None else environ)
    except SettingError as exc:
        parser.error(str(exc))
