"""Every wheel ``make wheels`` built into dist/, installed into a fresh venv of each
interpreter it serves, does a round trip (write a slot, read it back); the sdist builds
and does the same; an unsupported interpreter is refused with a message naming the
supported ones.

Run by ``make wheels`` (or ``make test-wheels`` after it), not by ``make test``: the
sdist is a release build from source (minutes on 2 cores, less when target/sdist is
warm). An interpreter that is not found is a skip whose reason says so (``-rs``).
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pytest
from wheel_helpers import STEP_TIMEOUT, install_and_check, isolated_env, run

from scripts.find_python import find_python

pytestmark = pytest.mark.wheels

REPO_ROOT = Path(__file__).resolve().parent.parent
DIST = REPO_ROOT / os.environ.get("DIST", "dist")
VERSIONS = ("3.11", "3.12", "3.13")
SDIST_BUILD_TIMEOUT = 1800.0  # seconds: a cold release build, on a busy machine
PLATFORM = re.compile(r"manylinux_2_17_x86_64\.manylinux2014_x86_64|manylinux2014_x86_64")


def python_or_skip(version: str) -> str:
    python = find_python(version)
    if python is None:
        pytest.skip(f"SKIPPED: CPython {version} not found (scripts/find_python.sh)")
    return python


def one_wheel(pattern: str) -> Path:
    wheels = sorted(DIST.glob(pattern))
    assert len(wheels) == 1, f"expected one {pattern} in {DIST} (run make wheels): {wheels}"
    wheel = wheels[0]
    with zipfile.ZipFile(wheel) as archive:
        tags = archive.read("shmbridge-0.1.0.dist-info/WHEEL").decode()
        metadata = archive.read("shmbridge-0.1.0.dist-info/METADATA").decode()
    assert PLATFORM.search(wheel.name), f"not a manylinux2014 x86_64 wheel: {wheel.name}"
    assert "manylinux_2_17_x86_64" in tags or "manylinux2014_x86_64" in tags, tags
    assert "Requires-Python: >=3.11" in metadata, metadata
    return wheel


@pytest.mark.timeout(4 * STEP_TIMEOUT)
@pytest.mark.parametrize("version", VERSIONS)
def test_the_wheel_for_each_version_round_trips(version: str, tmp_path: Path) -> None:
    python = python_or_skip(version)
    abi = "cp" + version.replace(".", "")
    wheel = one_wheel(f"shmbridge-*-{abi}-{abi}-*.whl")
    output = install_and_check(python, wheel, f".cpython-{abi[2:]}-", tmp_path)
    print(f"\n{wheel.name} on {python}:\n{output}", end="")


@pytest.mark.timeout(4 * STEP_TIMEOUT)
@pytest.mark.parametrize("version", VERSIONS)
def test_the_abi3_wheel_round_trips_on_each_version(version: str, tmp_path: Path) -> None:
    python = python_or_skip(version)
    wheel = one_wheel("shmbridge-*-cp311-abi3-*.whl")
    output = install_and_check(python, wheel, ".abi3.", tmp_path)
    print(f"\n{wheel.name} on {python}:\n{output}", end="")


@pytest.mark.timeout(SDIST_BUILD_TIMEOUT + 4 * STEP_TIMEOUT)
def test_the_sdist_builds_with_cargo_and_round_trips(tmp_path: Path) -> None:
    """pip builds the sdist with the maturin pinned in requirements-dev.txt (installed
    into the fresh venv first, from the package index), and cargo; target/sdist keeps
    the build between runs."""
    sdists = sorted(DIST.glob("shmbridge-*.tar.gz"))
    assert len(sdists) == 1, f"expected one sdist in {DIST} (run make wheels): {sdists}"
    python = find_python("3.11") or "python3"
    pins = (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    match = re.search(r"^maturin==\S+", pins, re.MULTILINE)
    assert match, "requirements-dev.txt pins no maturin"
    venv = tmp_path / "builder"
    run([python, "-m", "venv", venv], timeout=STEP_TIMEOUT, cwd=tmp_path, env=isolated_env())
    run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", match.group(0)],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=isolated_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"}),
    )
    # Build a wheel from the sdist in the builder venv, then install that wheel afresh.
    out = tmp_path / "built"
    env = isolated_env(
        {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "CARGO_TARGET_DIR": str(REPO_ROOT / "target/sdist")}
    )
    run(
        [
            *(venv / "bin" / "python", "-m", "pip", "wheel", "--no-index", "--no-build-isolation"),
            *("--no-deps", "--wheel-dir", out, sdists[0]),
        ],
        timeout=SDIST_BUILD_TIMEOUT,
        cwd=tmp_path,
        env=env,
    )
    (wheel,) = sorted(out.glob("*.whl"))
    output = install_and_check(python, wheel, ".cpython-311-", tmp_path)
    print(f"\n{sdists[0].name} -> {wheel.name}:\n{output}", end="")


@pytest.mark.timeout(4 * STEP_TIMEOUT)
def test_an_older_python_is_refused_naming_the_supported_versions(tmp_path: Path) -> None:
    python = python_or_skip("3.10")
    wheel = one_wheel("shmbridge-*-cp311-abi3-*.whl")
    run([python, "-m", "venv", tmp_path / "venv"], timeout=STEP_TIMEOUT, cwd=tmp_path)
    pip = run(
        [tmp_path / "venv" / "bin" / "python", "-m", "pip", "install", "--no-index", wheel],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=isolated_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"}),
        check=False,
    )
    assert pip.returncode != 0 and "is not a supported wheel" in pip.stderr, pip.stderr
    # Copied in by hand anyway, the package refuses to import, naming what it supports.
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "copied")
    imported = run(
        [python, "-c", "import shmbridge"],
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
        env=isolated_env({"PYTHONPATH": str(tmp_path / "copied")}),
        check=False,
    )
    assert imported.returncode != 0, imported.stdout
    assert "shmbridge supports CPython 3.11, 3.12 and 3.13" in imported.stderr, imported.stderr
    print(f"\npip: {pip.stderr.strip().splitlines()[-1]}")
    print(f"import: {imported.stderr.strip().splitlines()[-1]}")
