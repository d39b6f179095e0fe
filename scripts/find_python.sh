# shellcheck shell=bash
# Sourced by scripts/test_versions.sh and scripts/build_wheels.sh, and by
# scripts/find_python.py for the Python scripts and tests: find_python VERSION prints
# the interpreter for VERSION (e.g. 3.12): $PYTHON_3_12 if set, else python3.12 on
# PATH, else the newest pyenv build of it; only one that runs and reports that version.
# It fails if none does.
find_python() {
    local version=$1 var candidate root
    var="PYTHON_${version//./_}"
    root=${PYENV_ROOT:-$HOME/.pyenv}
    local candidates=()
    if [[ -n "${!var:-}" ]]; then
        candidates+=("${!var}")
    fi
    candidate=$(command -v "python$version" 2>/dev/null || true)
    if [[ -n "$candidate" ]]; then
        candidates+=("$candidate")
    fi
    while IFS= read -r candidate; do
        candidates+=("$candidate")
    done < <(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V -r)
    for candidate in "${candidates[@]}"; do
        if [[ $("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$version" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
