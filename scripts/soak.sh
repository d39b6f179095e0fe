#!/usr/bin/env bash
# Runs every test (cargo's and pytest's) SOAK_RUNS times in a row while busy loops keep
# every core loaded, and stops at the first failure. A race that passes on an idle
# machine shows here. Run after `make build` (the Makefile's `soak` target does both).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${SOAK_RUNS:-10}
logs=$(mktemp -d /tmp/shmbridge-soak.XXXXXX)
hogs=()
stop_hogs() { kill "${hogs[@]}" 2>/dev/null || true; }
trap stop_hogs EXIT
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    hogs+=($!)
done
echo "soak: $runs runs with $(nproc) busy loops; logs in $logs"
for run in $(seq "$runs"); do
    started=$SECONDS
    if make --no-print-directory test-rust test-python >"$logs/run-$run.log" 2>&1; then
        echo "soak: run $run passed in $((SECONDS - started)) s: $(grep -E '^[0-9]+ passed' "$logs/run-$run.log" | tail -1)"
    else
        echo "soak: run $run FAILED after $((SECONDS - started)) s; the end of its log:"
        tail -n 80 "$logs/run-$run.log"
        exit 1
    fi
done
echo "soak: $runs of $runs runs passed"
