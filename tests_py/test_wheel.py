"""The release wheel installs into a fresh virtualenv and works there on its own.

``maturin build --release`` reuses the release build in target/ (``make test`` has just
made it with ``maturin develop --release``), so the build takes seconds; a cold build
takes minutes on 2 cores, hence the long timeout. The wheel must be for CPython 3.11
(cp311-cp311: not abi3, since the JSON writer reads CPython 3.11's objects directly) and
must carry the typing files. It is installed with
``pip --no-index`` (shmbridge has no runtime dependencies, and the metadata is checked
to say so) into a new virtualenv, where a script run in isolated mode (``python -I``,
from a temporary directory, so neither this repo's ``python/`` nor ``.venv`` can be
imported by mistake) uses it. ``pytest -s`` shows the wheel's name and the script's output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 900.0  # seconds; a warm build takes ~2 s, a cold one several minutes
STEP_TIMEOUT = 180.0  # seconds; creating the venv, pip install, running the script

# Runs inside the fresh virtualenv: argv[1] is the venv's directory.
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

    for name in ("__init__.py", "py.typed", "_native.pyi"):
        assert (package / name).is_file(), f"{name} missing from {package}"
    natives = sorted(p.name for p in package.glob("_native*.so"))
    assert len(natives) == 1 and ".cpython-311-" in natives[0], natives
    print(f"installed files: __init__.py, py.typed, _native.pyi, {natives[0]}")

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
    print("channel closed and its file removed")
    print("WHEEL OK")
    """
)


def _isolated_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without anything that points Python or pip elsewhere."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in drop and not key.startswith(("PIP_", "SHMBRIDGE_"))
    }
    env.update(extra or {})
    return env


def _run(
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


def _maturin() -> Path:
    for candidate in (
        REPO_ROOT / ".venv" / "bin" / "maturin",
        Path(sys.executable).with_name("maturin"),
    ):
        if candidate.is_file():
            return candidate
    pytest.fail("maturin not found in .venv/bin (run `make venv`: it is in requirements-dev.txt)")


@pytest.mark.timeout(BUILD_TIMEOUT + 4 * STEP_TIMEOUT)
def test_release_wheel_installs_and_works_in_a_fresh_venv(tmp_path: Path) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = project["version"]
    assert not project.get("dependencies"), "shmbridge gained runtime dependencies: drop --no-index"

    out = tmp_path / "dist"
    command: list[str | Path] = [
        _maturin(),
        "build",
        "--release",
        "--out",
        out,
        "--interpreter",
        sys.executable,
    ]
    started = time.monotonic()
    build = _run(command, timeout=BUILD_TIMEOUT, cwd=REPO_ROOT, check=False)
    if build.returncode != 0 and "target/maturin/" in build.stderr:
        # Two maturin runs at once (say `maturin develop` in another shell) share
        # target/maturin/, where each copies the built library: one can lose it. Once more.
        print(f"\nmaturin lost target/maturin/ to a concurrent run; retrying:\n{build.stderr}")
        build = _run(command, timeout=BUILD_TIMEOUT, cwd=REPO_ROOT, check=False)
    if build.returncode != 0:
        pytest.fail(f"maturin build failed (exit {build.returncode}):\n{build.stderr[-4000:]}")
    build_seconds = time.monotonic() - started
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}\n{build.stderr[-2000:]}"
    wheel = wheels[0]
    print(f"\nwheel: {wheel.name} ({wheel.stat().st_size} bytes, built in {build_seconds:.1f} s)")
    assert re.fullmatch(rf"shmbridge-{re.escape(version)}-cp311-cp311-\w+\.whl", wheel.name), (
        f"not a wheel for CPython 3.11: {wheel.name}"
    )

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"shmbridge-{version}.dist-info"
        tags = archive.read(f"{dist_info}/WHEEL").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    for name in ("shmbridge/__init__.py", "shmbridge/py.typed", "shmbridge/_native.pyi"):
        assert name in names, f"{name} is not in the wheel: {sorted(names)}"
    native = r"shmbridge/_native\.cpython-311-[\w-]+\.so"
    assert [n for n in names if re.fullmatch(native, n)], sorted(names)
    assert re.search(r"^Tag: cp311-cp311-", tags, re.MULTILINE), tags
    assert "Requires-Dist:" not in metadata, f"the wheel declares dependencies:\n{metadata}"

    venv = tmp_path / "fresh-venv"
    _run(
        [sys.executable, "-m", "venv", venv],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=_isolated_env(),
    )
    python = venv / "bin" / "python"
    _run(
        [python, "-m", "pip", "install", "--no-index", "--no-input", "--no-cache-dir", wheel],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=_isolated_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"}),
    )
    script = tmp_path / "check_wheel.py"
    script.write_text(CHECK_SCRIPT, encoding="utf-8")
    # -I: no PYTHON* variables, no user site, not even the script's directory on sys.path.
    result = _run(
        [python, "-I", script, venv],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=_isolated_env({"PYTHONDONTWRITEBYTECODE": "1"}),
    )
    print(result.stdout, end="")
    assert result.stdout.rstrip().endswith("WHEEL OK"), result.stdout + result.stderr
