"""Installing a built wheel (or the sdist) into a fresh virtualenv and using it there:
shared by test_wheel.py (the wheel of the running interpreter, in ``make test``) and
test_wheels.py (every wheel ``make wheels`` built, on each interpreter it serves)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

STEP_TIMEOUT = 180.0  # seconds; creating the venv, pip install, running the script

# Runs inside the fresh virtualenv: argv[1] is the venv's directory, argv[2] a part of
# the native module's file name that names its ABI (".cpython-312-", ".abi3.").
CHECK_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import stat
    import sys
    import sysconfig
    import tempfile
    from pathlib import Path

    import shmbridge

    venv = Path(sys.argv[1]).resolve()
    assert Path(sys.prefix).resolve() == venv, (sys.prefix, venv)
    package = Path(shmbridge.__file__).resolve().parent
    site_dirs = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    assert package.parent in site_dirs, (package, site_dirs)
    print(f"shmbridge {shmbridge.__version__} imported from {package}")

    for name in ("__init__.py", "bridge.py", "py.typed", "_native.pyi"):
        assert (package / name).is_file(), f"{name} missing from {package}"
    natives = sorted(p.name for p in package.glob("_native*.so"))
    assert len(natives) == 1 and sys.argv[2] in natives[0], (natives, sys.argv[2])
    print(f"installed files: __init__.py, bridge.py, py.typed, _native.pyi, {natives[0]}")

    users = [
        {"id": 1, "first_name": "Zo\\u00eb", "age": 33, "tags": ["a", "b"], "vip": True},
        {"id": 2, "first_name": "Ada", "bio": 'says "hi"\\nand\\tleaves', "manager": None},
    ]
    # orjson is not installed here: the compact stdlib encoding is the same bytes.
    expected = json.dumps(users, ensure_ascii=False, separators=(",", ":")).encode()
    assert shmbridge.dumps(users) == expected, shmbridge.dumps(users)
    print(f"dumps: {len(expected)} bytes, equal to json.dumps(compact, ensure_ascii=False)")

    with tempfile.TemporaryDirectory(prefix="shmbridge-wheel-") as private:
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
        with shmbridge.Channel(
            "wheel_test", private, slot_count=2, slot_capacity=64 * 1024
        ) as channel:
            path = channel.path
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            receipt = channel.write_json(0, 42, users)
            reader = shmbridge.Reader(path)
            data = reader.read_bytes(0, request_id=42)
            assert data == expected, data
            assert receipt.length == len(expected), receipt.length
            assert json.loads(data) == users
            try:
                reader.read_bytes(0, request_id=43)
            except shmbridge.WrongRequest:
                pass
            else:
                raise AssertionError("a read with the wrong request id succeeded")
            del reader
            print(
                f"round trip: write_json(slot 0, request 42) -> Reader.read_bytes: "
                f"{len(data)} bytes, identical; wrong request id refused; channel file {path}"
            )
        assert not os.path.exists(path), "the channel file outlived close()"
        with shmbridge.Bridge("wheel_bridge", private, slot_count=2, slot_capacity=4096) as bridge:
            bridge.handler("echo")(lambda params: dict(params))
            receipt, content_type = bridge.dispatch(0, 7, "echo", {"k": "v"})
            assert shmbridge.Reader(bridge.channel.path).read_json(0, 7) == {"k": "v"}
    print("channel closed and its file removed; Bridge dispatches")
    print("WHEEL OK")
    """
)


def isolated_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without anything that points Python or pip elsewhere."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in drop and not key.startswith(("PIP_", "SHMBRIDGE_"))
    }
    env.update(extra or {})
    return env


def run(
    args: Sequence[str | Path],
    *,
    timeout: float,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run to completion within ``timeout`` seconds; fail the test with the output otherwise.

    With ``check=False`` a non-zero exit is returned rather than failed on.
    """
    shown = " ".join(str(a) for a in args)
    try:
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout:.0f} s: {shown}\noutput so far:\n{exc.output!r}")
    if check and proc.returncode != 0:
        pytest.fail(
            f"exit {proc.returncode}: {shown}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def install_and_check(
    python: Path | str,
    package: Path,
    native_tag: str,
    tmp_path: Path,
) -> str:
    """Installs ``package`` (a wheel or the sdist) with ``pip --no-index`` into a fresh
    venv of ``python`` under ``tmp_path``, runs CHECK_SCRIPT there in isolated mode, and
    returns its output (which ends with WHEEL OK)."""
    venv = tmp_path / "fresh-venv"
    run([python, "-m", "venv", venv], timeout=STEP_TIMEOUT, cwd=tmp_path, env=isolated_env())
    venv_python = venv / "bin" / "python"
    run(
        [
            venv_python,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-input",
            "--no-cache-dir",
            package,
        ],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=isolated_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"}),
    )
    script = tmp_path / "check_wheel.py"
    script.write_text(CHECK_SCRIPT, encoding="utf-8")
    # -I: no PYTHON* variables, no user site, not even the script's directory on sys.path.
    result = run(
        [venv_python, "-I", script, venv, native_tag],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=isolated_env({"PYTHONDONTWRITEBYTECODE": "1"}),
    )
    assert result.stdout.rstrip().endswith("WHEEL OK"), result.stdout + result.stderr
    return result.stdout
