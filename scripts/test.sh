#!/usr/bin/env bash
# `make test`: every test and check, in two lanes side by side once the venv and the
# native module are in place:
#   lane 1: the release gateway and tools (`make gateway`), then pytest (`make test-python`);
#   lane 2: `make test-rust`, `make test-versions`, `make lint`.
# On two cores this is about a sixth quicker than one after the other: pytest leaves a
# core idle while it waits on the services it starts, and each build ends on crates
# that cargo cannot spread over two. pytest runs with the other lane's builds keeping the
# machine busy, as `make soak` runs it on purpose.
#
# Lane 2 writes to a log, printed whole when both lanes are done; the run fails if either
# lane does. TEST_SERIAL=1 runs the lanes one after the other instead, each to the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
lane1=(gateway test-python)
lane2=(test-rust test-versions lint)
# Seconds since the start, for the lanes' ends (lane 2's is printed by its own shell).
export TEST_STARTED_AT
TEST_STARTED_AT=$(date +%s)
elapsed() { echo "$(($(date +%s) - TEST_STARTED_AT)) s"; }
export -f elapsed

# Both lanes need these; neither installs into .venv after this.
$MAKE --no-print-directory develop

if [[ "${TEST_SERIAL:-0}" == 1 ]]; then
    $MAKE --no-print-directory "${lane1[@]}" "${lane2[@]}"
    echo "make test: passed in $(elapsed)"
    exit 0
fi

mkdir -p target
log=target/test-lane2.log
# In a process group of its own (setsid), so that it can be stopped as a whole: a
# failure or Ctrl-C in lane 1 must not leave lane 2 building on its own.
setsid bash -c 'rc=0; "$@" || rc=$?; echo "lane 2 ended at $(elapsed)"; exit $rc' \
    lane2 "$MAKE" --no-print-directory "${lane2[@]}" >"$log" 2>&1 &
lane2_pid=$!
trap 'kill -- -"$lane2_pid" 2>/dev/null || true' EXIT

lane1_rc=0
$MAKE --no-print-directory "${lane1[@]}" || lane1_rc=$?
echo "lane 1 ended at $(elapsed)"
lane2_rc=0
wait "$lane2_pid" || lane2_rc=$?
trap - EXIT

echo
echo "================================================================================"
echo "make ${lane2[*]} (run beside the above; its log, $log):"
echo "================================================================================"
cat "$log"
echo
echo "make test: lane 1 (${lane1[*]}) exit $lane1_rc; lane 2 (${lane2[*]}) exit $lane2_rc;" \
    "$(elapsed) in all"
if ((lane1_rc != 0 || lane2_rc != 0)); then
    echo "make test: FAILED"
    exit 1
fi
echo "make test: passed"
