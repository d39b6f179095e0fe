#!/usr/bin/env bash
# `make test-versions`: the native module's tests (tests_py/test_native_*.py, the
# serializer's among them) on every supported CPython besides the main .venv's, and
# the abi3 build's module on every interpreter found, the main one included.
#
# Each interpreter gets its own virtualenv (.venv-3.12, ...) with the few packages
# those tests import (pinned in requirements-dev.txt). The builds share one target
# directory, target/py-versions: what does not depend on the interpreter (syn, serde,
# rustix...) is built once; pyo3 and the module are rebuilt for each interpreter, since
# pyo3's build script output changes. They use the cargo profile "quick-release"
# (opt-level 1, no LTO): they test behaviour, not speed, at a fraction of a release build.
#
# An interpreter that is not found is reported as SKIPPED, in a banner and again in
# the summary at the end; with REQUIRE_ALL_PYTHONS=1 a missing one fails the run.
#
# Settings (environment): PY_VERSIONS (default "3.12 3.13"), PYTHON_<major>_<minor>
# (an interpreter's path, e.g. PYTHON_3_12=/opt/python3.12/bin/python3.12),
# MAIN_PYTHON (default .venv/bin/python), REQUIRE_ALL_PYTHONS (default 0).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PY_VERSIONS=${PY_VERSIONS:-"3.12 3.13"}
MAIN_PYTHON=${MAIN_PYTHON:-.venv/bin/python}
REQUIRE_ALL_PYTHONS=${REQUIRE_ALL_PYTHONS:-0}
MATURIN=${MATURIN:-.venv/bin/maturin}
PROFILE=quick-release
TESTS=(tests_py/test_native_*.py)
# What tests_py/test_native_*.py and tests_py/conftest.py import, at the versions pinned
# for the main .venv.
PACKAGES=$(grep -E '^(pytest|pytest-timeout|orjson|httpx|hypothesis|numpy)==' requirements-dev.txt)

summary=()
failed=0

banner() {
    echo
    echo "================================================================================"
    echo "$*"
    echo "================================================================================"
}

# shellcheck source=scripts/find_python.sh
source scripts/find_python.sh

# A virtualenv at $2 for interpreter $1 with the test packages (kept between runs).
make_venv() {
    local python=$1 venv=$2
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import pytest, orjson, httpx, hypothesis, numpy' 2>/dev/null; then
        rm -rf "$venv"
        "$python" -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $PACKAGES
    fi
}

# Runs the native tests with interpreter $1; $2 names the run in the summary;
# extra environment as "NAME=value" words after it.
run_tests() {
    local python=$1 label=$2
    shift 2
    local started=$SECONDS
    echo "--- $label: pytest ${TESTS[*]}"
    if env "$@" "$python" -m pytest -q -p no:cacheprovider "${TESTS[@]}"; then
        summary+=("PASSED   $label ($((SECONDS - started)) s)")
    else
        summary+=("FAILED   $label")
        failed=1
    fi
}

# 1. Each other version: its own module (maturin develop into its venv), its tests.
found=("$MAIN_PYTHON")
for version in $PY_VERSIONS; do
    if ! python=$(find_python "$version"); then
        banner "SKIPPED: CPython $version not found (PYTHON_${version//./_}, python$version on PATH, ${PYENV_ROOT:-$HOME/.pyenv}/versions/$version.*): the native-module tests did NOT run on $version"
        summary+=("SKIPPED  CPython $version: interpreter not found")
        [[ "$REQUIRE_ALL_PYTHONS" == 1 ]] && failed=1
        continue
    fi
    banner "CPython $version ($python): build the native module, run its tests"
    venv=".venv-$version"
    make_venv "$python" "$venv"
    started=$SECONDS
    VIRTUAL_ENV="$REPO/$venv" "$MATURIN" develop --quiet --profile "$PROFILE" \
        --target-dir target/py-versions
    echo "--- built in $((SECONDS - started)) s"
    found+=("$venv/bin/python")
    run_tests "$venv/bin/python" "CPython $version, its own module"
done

# 2. The abi3 module: built once (for the oldest supported version, 3.11), run on
# every interpreter found, from a directory that shadows the develop install.
banner "abi3 module (feature \"abi3\"): build once, run the native tests on each interpreter"
abi3_dir="target/py-versions/abi3-package"
started=$SECONDS
rm -rf target/py-versions/abi3-wheels "$abi3_dir"
"$MATURIN" build --quiet --profile "$PROFILE" --features abi3 --target-dir target/py-versions \
    --interpreter "$MAIN_PYTHON" --out target/py-versions/abi3-wheels
echo "--- built in $((SECONDS - started)) s"
wheel=$(ls target/py-versions/abi3-wheels/*-abi3-*.whl)
mkdir -p "$abi3_dir"
"$MAIN_PYTHON" -m zipfile -e "$wheel" "$abi3_dir"
for python in "${found[@]}"; do
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    # The abi3 module, and no other, must be the one imported.
    PYTHONPATH="$REPO/$abi3_dir" "$python" -c '
import sys, shmbridge._native as native
assert native.__file__.endswith(".abi3.so"), native.__file__
assert native._direct_reads() == [], native._direct_reads()
print(f"abi3 module on {sys.version.split()[0]}: {native.__file__}")'
    run_tests "$python" "CPython $version, the abi3 module" "PYTHONPATH=$REPO/$abi3_dir"
done

banner "make test-versions: summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
