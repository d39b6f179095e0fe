"""The channel file's life cycle as seen from Python: creation rules, the lock,
stale files of crashed producers, and removal."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import shmbridge
from native_helpers import make_channel, private_dir, run_python
from shmbridge import Reader


def test_file_is_private_and_removed_on_close(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    ch = make_channel(directory)
    path = Path(ch.path)
    assert path.parent == directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size > 0
    ch.close()
    assert not path.exists()
    ch.close()  # idempotent
    with pytest.raises(shmbridge.ChannelClosed, match="closed"):
        ch.write_json(0, 1, {})
    with pytest.raises(shmbridge.ChannelClosed):
        ch.reserve(0, 1, 1)


def test_context_manager_removes_the_file(tmp_path: Path) -> None:
    with make_channel(private_dir(tmp_path)) as ch:
        path = Path(ch.path)
        assert path.exists()
    assert ch.closed
    assert not path.exists()


def test_missing_directory_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "dir"
    with make_channel(directory):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_world_writable_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o1777)
    with pytest.raises(shmbridge.ShmError, match="world-writable"):
        make_channel(directory)
    assert list(directory.iterdir()) == []


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = private_dir(tmp_path, "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(shmbridge.ShmError, match="symbolic link"):
        make_channel(link)


def test_symlinked_channel_path_is_refused(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    target = tmp_path / "target"
    target.write_bytes(b"do not touch")
    (directory / "test.shm").symlink_to(target)
    with pytest.raises(shmbridge.ShmError, match="symbolic link"):
        make_channel(directory)
    assert target.read_bytes() == b"do not touch"
    with pytest.raises(shmbridge.ShmError, match="symbolic link"):
        Reader(directory / "test.shm")


def test_a_second_channel_on_a_live_path_is_in_use(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    with make_channel(directory) as first:
        first.write_bytes(0, 1, b"mine")
        with pytest.raises(shmbridge.ChannelInUse, match="in use by a running producer"):
            make_channel(directory)
        assert Reader(first.path).read_bytes(0, 1) == b"mine"


def test_a_channel_held_by_another_process_is_in_use(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    code = f"""
import shmbridge, sys
ch = shmbridge.Channel("test", {str(directory)!r}, slot_count=2, slot_capacity=8192)
print("ready", flush=True)
sys.stdin.readline()
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(shmbridge.ChannelInUse):
            make_channel(directory)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The child exited normally: its channel (dropped at exit) removed the file.
    assert not (directory / "test.shm").exists()


@pytest.mark.parametrize("death", ["os._exit", "SIGKILL"])
def test_a_stale_file_of_a_crashed_producer_is_replaced(tmp_path: Path, death: str) -> None:
    directory = private_dir(tmp_path)
    ending = "os._exit(0)" if death == "os._exit" else "os.kill(os.getpid(), signal.SIGKILL)"
    result = run_python(
        f"""
        import os, signal, shmbridge
        ch = shmbridge.Channel("test", {str(directory)!r}, slot_count=2, slot_capacity=8192)
        ch.write_json(0, 1, {{"old": True}})
        print(ch.epoch, flush=True)
        {ending}
        """
    )
    if death == "SIGKILL":
        assert result.returncode == -signal.SIGKILL
    else:
        assert result.returncode == 0, result.stderr
    old_epoch = int(result.stdout.strip())
    stale = directory / "test.shm"
    assert stale.exists()  # nobody cleaned up
    old_reader = Reader(stale)
    assert old_reader.epoch == old_epoch
    assert not old_reader.producer_alive()
    with make_channel(directory) as ch:
        assert ch.epoch != old_epoch
        assert not old_reader.is_current()
        fresh = Reader(ch.path)
        assert fresh.epoch == ch.epoch
        assert fresh.producer_alive()
        with pytest.raises(shmbridge.SlotEmpty):
            fresh.read_bytes(0)  # the old content was not trusted or kept


def test_closed_channel_can_be_recreated(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    first = make_channel(directory)
    epoch = first.epoch
    first.close()
    with make_channel(directory) as second:
        assert second.epoch != epoch
