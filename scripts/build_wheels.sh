#!/usr/bin/env bash
# `make wheels`: manylinux2014 (glibc 2.17) x86_64 wheels for each supported CPython
# found here (3.11 from the main .venv, 3.12 and 3.13 as scripts/test_versions.sh finds
# them), the abi3 wheel (CPython 3.11 and later, C API only), and the sdist, in dist/.
# maturin links with zig (`--zig`, the ziglang package) against glibc 2.17's symbols,
# so no manylinux container is needed; `auditwheel show` then reports each wheel's tag.
#
# The release builds share target/wheels (dependencies are built once; pyo3 is rebuilt
# per interpreter). Settings (environment): as scripts/test_versions.sh (PY_VERSIONS,
# PYTHON_<major>_<minor>, MAIN_PYTHON, REQUIRE_ALL_PYTHONS), and DIST (default dist).
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSIONS=${PY_VERSIONS:-"3.12 3.13"}
MAIN_PYTHON=${MAIN_PYTHON:-.venv/bin/python}
REQUIRE_ALL_PYTHONS=${REQUIRE_ALL_PYTHONS:-0}
DIST=${DIST:-dist}
BIN=$(dirname "$MAIN_PYTHON")
TARGET_DIR=target/wheels
COMPAT=(--zig --compatibility manylinux2014)

# shellcheck source=scripts/find_python.sh
source scripts/find_python.sh

"$MAIN_PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-wheels.txt
# maturin runs zig as `python3 -m ziglang`: the venv's python3, which has it.
PATH="$(cd "$BIN" && pwd):$PATH"
export PATH

interpreters=(--interpreter "$MAIN_PYTHON")
skipped=()
for version in $PY_VERSIONS; do
    if python=$(find_python "$version"); then
        interpreters+=(--interpreter "$python")
    else
        echo
        echo "================================================================================"
        echo "SKIPPED: CPython $version not found: no wheel for $version is built"
        echo "================================================================================"
        skipped+=("$version")
    fi
done

rm -rf "$DIST"
mkdir -p "$DIST"
started=$SECONDS
"$BIN/maturin" build --release "${COMPAT[@]}" --target-dir "$TARGET_DIR" --out "$DIST" \
    "${interpreters[@]}"
"$BIN/maturin" build --release "${COMPAT[@]}" --target-dir "$TARGET_DIR" --out "$DIST" \
    --features abi3 --interpreter "$MAIN_PYTHON"
"$BIN/maturin" sdist --out "$DIST"
echo "--- built in $((SECONDS - started)) s"

status=0
reports="$TARGET_DIR/auditwheel"
mkdir -p "$reports"
for wheel in "$DIST"/*.whl; do
    echo
    echo "--- auditwheel show $(basename "$wheel")"
    report="$reports/$(basename "$wheel").txt"
    "$BIN/auditwheel" show "$wheel" | tee "$report"
    # The wheel must be consistent with manylinux2014 (glibc 2.17) on x86_64.
    if ! tr '\n' ' ' < "$report" | grep -q 'consistent with the following platform tag: *"manylinux_2_17_x86_64"'; then
        echo "FAILED: $(basename "$wheel") is not consistent with manylinux_2_17_x86_64"
        status=1
    fi
done
echo
echo "--- $DIST:"
ls -l "$DIST"
if ((${#skipped[@]})); then
    echo "SKIPPED: no wheel for CPython ${skipped[*]} (interpreter not found)"
    [[ "$REQUIRE_ALL_PYTHONS" == 1 ]] && status=1
fi
exit "$status"
