"""Settings: flags and environment variables, flags win, bad values name the setting."""

from __future__ import annotations

import dataclasses

import pytest

from py_producer.settings import Settings, parse_settings

ALL_ENV = {
    "SHMBRIDGE_PRODUCER_HOST": "0.0.0.0",
    "SHMBRIDGE_PRODUCER_PORT": "6001",
    "SHMBRIDGE_SHM_DIR": "/tmp/somewhere",
    "SHMBRIDGE_CHANNEL": "people",
    "SHMBRIDGE_SLOT_COUNT": "8",
    "SHMBRIDGE_SLOT_CAPACITY": "1048576",
    "SHMBRIDGE_MAX_COUNT": "5000",
    "SHMBRIDGE_LOG_LEVEL": "WARNING",
    "SHMBRIDGE_TEST_WRITE_DELAY_MS": "250",
    "SHMBRIDGE_CACHE_PAYLOAD": "1",
    "SHMBRIDGE_SIGNAL_SOCKET": "0",
    "SHMBRIDGE_SIGNAL_SPIN_US": "0",
    "SHMBRIDGE_SNAPSHOT": "off",
}


def test_defaults() -> None:
    settings = parse_settings([], {})
    assert settings == Settings()
    assert settings == Settings(
        host="127.0.0.1",
        port=5000,
        shm_dir="shared_memory_dir",
        channel="users",
        slot_count=16,
        slot_capacity=33_554_432,
        max_count=100_000,
        log_level="info",
        write_delay_ms=0,
        cache_payload=False,
        signal_socket=True,
        signal_spin_us=250,
        snapshot=True,
    )


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_every_setting_from_env() -> None:
    assert parse_settings([], ALL_ENV) == Settings(
        host="0.0.0.0",
        port=6001,
        shm_dir="/tmp/somewhere",
        channel="people",
        slot_count=8,
        slot_capacity=1_048_576,
        max_count=5000,
        log_level="warning",
        write_delay_ms=250,
        cache_payload=True,
        signal_socket=False,
        signal_spin_us=0,
        snapshot=False,
    )


def test_flags_win_over_env() -> None:
    argv = [
        "--host=127.0.0.2",
        "--port",
        "7001",
        "--shm-dir",
        "d",
        "--channel",
        "c",
        "--slot-count",
        "4",
        "--slot-capacity",
        "4096",
        "--max-count",
        "10",
        "--log-level",
        "debug",
        "--write-delay-ms",
        "5",
        "--no-cache-payload",
        "--signal-socket",
        "--signal-spin-us",
        "250",
        "--snapshot",
    ]
    assert parse_settings(argv, ALL_ENV) == Settings(
        host="127.0.0.2",
        port=7001,
        shm_dir="d",
        channel="c",
        slot_count=4,
        slot_capacity=4096,
        max_count=10,
        log_level="debug",
        write_delay_ms=5,
        cache_payload=False,
        signal_socket=True,
        signal_spin_us=250,
        snapshot=True,
    )
    assert parse_settings(["--cache-payload"], {}).cache_payload is True
    assert parse_settings(["--no-signal-socket", "--no-snapshot"], {}) == Settings(
        signal_socket=False, snapshot=False
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("33554432", 33_554_432), ("64MiB", 64 * 1024**2), ("512k", 512 * 1024), ("1G", 1024**3)],
)
def test_slot_capacity_forms(raw: str, expected: int) -> None:
    assert parse_settings(["--slot-capacity", raw], {}).slot_capacity == expected


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--port", "abc"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        ([], {"SHMBRIDGE_PRODUCER_PORT": "x"}, "SHMBRIDGE_PRODUCER_PORT"),
        (["--slot-count", "1"], {}, "--slot-count"),
        ([], {"SHMBRIDGE_SLOT_COUNT": "-3"}, "SHMBRIDGE_SLOT_COUNT"),
        (["--slot-capacity", "12 parsecs"], {}, "--slot-capacity"),
        ([], {"SHMBRIDGE_SLOT_CAPACITY": "0"}, "SHMBRIDGE_SLOT_CAPACITY"),
        (["--max-count", "-1"], {}, "--max-count"),
        ([], {"SHMBRIDGE_MAX_COUNT": "10000000"}, "SHMBRIDGE_MAX_COUNT"),
        (["--log-level", "loud"], {}, "--log-level"),
        ([], {"SHMBRIDGE_TEST_WRITE_DELAY_MS": "-1"}, "SHMBRIDGE_TEST_WRITE_DELAY_MS"),
        ([], {"SHMBRIDGE_CACHE_PAYLOAD": "maybe"}, "SHMBRIDGE_CACHE_PAYLOAD"),
        ([], {"SHMBRIDGE_SIGNAL_SOCKET": "maybe"}, "SHMBRIDGE_SIGNAL_SOCKET"),
        (["--signal-spin-us", "1001"], {}, "--signal-spin-us"),
        ([], {"SHMBRIDGE_SIGNAL_SPIN_US": "-5"}, "SHMBRIDGE_SIGNAL_SPIN_US"),
        ([], {"SHMBRIDGE_SNAPSHOT": "2"}, "SHMBRIDGE_SNAPSHOT"),
        (["--channel", "../etc"], {}, "--channel"),
        (["--host", ""], {}, "--host"),
        ([], {"SHMBRIDGE_SHM_DIR": ""}, "SHMBRIDGE_SHM_DIR"),
    ],
)
def test_bad_value_names_the_setting(
    argv: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv, env)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_help_shows_defaults_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--help"], {})
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "--port",
        "SHMBRIDGE_PRODUCER_PORT",
        "default 5000",
        "default 127.0.0.1",
        "default shared_memory_dir",
        "default users",
        "default 16",
        "default 33554432",
        "default 100000",
        "default info",
        "SHMBRIDGE_TEST_WRITE_DELAY_MS",
        "SHMBRIDGE_CACHE_PAYLOAD",
        "default off",
    ):
        assert needle in text
