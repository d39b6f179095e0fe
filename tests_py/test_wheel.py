"""The release wheel installs into a fresh virtualenv and works there on its own.

``maturin build --release`` reuses the release build in target/ (``make test`` has just
made it with ``maturin develop --release``), so the build takes seconds; a cold build
takes minutes on 2 cores, hence the long timeout. The wheel must be for the running
CPython (e.g. cp311-cp311: not abi3, since the JSON writer reads the objects of its
version directly) and must carry the typing files. It is installed with
``pip --no-index`` (shmbridge has no runtime dependencies, and the metadata is checked
to say so) into a new virtualenv, where a script run in isolated mode (``python -I``,
from a temporary directory, so neither this repo's ``python/`` nor ``.venv`` can be
imported by mistake) uses it. ``pytest -s`` shows the wheel's name and the script's output.
"""

from __future__ import annotations

import re
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from wheel_helpers import STEP_TIMEOUT, install_and_check, run

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 900.0  # seconds; a warm build takes ~2 s, a cold one several minutes
# The running interpreter's ABI tag, e.g. cp311 (test_wheels.py covers the others).
ABI = f"cp{sys.version_info.major}{sys.version_info.minor}"


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
    build = run(command, timeout=BUILD_TIMEOUT, cwd=REPO_ROOT, check=False)
    if build.returncode != 0 and "target/maturin/" in build.stderr:
        # Two maturin runs at once (say `maturin develop` in another shell) share
        # target/maturin/, where each copies the built library: one can lose it. Once more.
        print(f"\nmaturin lost target/maturin/ to a concurrent run; retrying:\n{build.stderr}")
        build = run(command, timeout=BUILD_TIMEOUT, cwd=REPO_ROOT, check=False)
    if build.returncode != 0:
        pytest.fail(f"maturin build failed (exit {build.returncode}):\n{build.stderr[-4000:]}")
    build_seconds = time.monotonic() - started
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}\n{build.stderr[-2000:]}"
    wheel = wheels[0]
    print(f"\nwheel: {wheel.name} ({wheel.stat().st_size} bytes, built in {build_seconds:.1f} s)")
    assert re.fullmatch(rf"shmbridge-{re.escape(version)}-{ABI}-{ABI}-\w+\.whl", wheel.name), (
        f"not a wheel for this CPython ({ABI}): {wheel.name}"
    )

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"shmbridge-{version}.dist-info"
        tags = archive.read(f"{dist_info}/WHEEL").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    for name in ("shmbridge/__init__.py", "shmbridge/py.typed", "shmbridge/_native.pyi"):
        assert name in names, f"{name} is not in the wheel: {sorted(names)}"
    native_tag = f".cpython-{ABI[2:]}-"
    native = rf"shmbridge/_native{re.escape(native_tag)}[\w-]+\.so"
    assert [n for n in names if re.fullmatch(native, n)], sorted(names)
    assert re.search(rf"^Tag: {ABI}-{ABI}-", tags, re.MULTILINE), tags
    assert "Requires-Dist:" not in metadata, f"the wheel declares dependencies:\n{metadata}"

    output = install_and_check(sys.executable, wheel, native_tag, tmp_path)
    print(output, end="")
