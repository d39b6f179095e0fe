#!/usr/bin/env bash
# Starts the producer and the gateway (already built by `make run`), waits until
# both answer, prints curl lines to try, and stops both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${VENV:-.venv}/bin/python
GATEWAY=${SHMBRIDGE_GATEWAY_BIN:-target/release/rust_gateway}
PRODUCER_PORT=${SHMBRIDGE_PRODUCER_PORT:-5000}
GATEWAY_PORT=${SHMBRIDGE_GATEWAY_PORT:-8080}
export SHMBRIDGE_PRODUCER_URL=${SHMBRIDGE_PRODUCER_URL:-http://127.0.0.1:$PRODUCER_PORT}

pids=()
stop() {
    trap - EXIT INT TERM
    echo "stopping..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

wait_for() { # url name pid
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up; see its output above" >&2; exit 1; }
        sleep 0.1
    done
    echo "$2 did not answer $1 within 30 s" >&2
    exit 1
}

"$PY" -m py_producer --port "$PRODUCER_PORT" &
pids+=($!)
wait_for "http://127.0.0.1:$PRODUCER_PORT/healthz" producer "${pids[0]}"
"$GATEWAY" --port "$GATEWAY_PORT" &
pids+=($!)
wait_for "http://127.0.0.1:$GATEWAY_PORT/healthz" gateway "${pids[1]}"

cat <<MSG

shmbridge is up: producer on 127.0.0.1:$PRODUCER_PORT, gateway on 127.0.0.1:$GATEWAY_PORT. Try:

  curl 'http://127.0.0.1:$GATEWAY_PORT/api/users-via-api?count=2'     # REST: gateway -> producer JSON over HTTP
  curl 'http://127.0.0.1:$GATEWAY_PORT/api/users-via-shm?count=2'     # shared memory: same bytes, via the channel file
  curl 'http://127.0.0.1:$GATEWAY_PORT/api/users-via-api'             # no count: 100 users, as the original served
  curl 'http://127.0.0.1:$GATEWAY_PORT/api/users-via-snapshot?count=2' # the newest snapshot: no call to the producer
  curl 'http://127.0.0.1:$GATEWAY_PORT/api/users-via-shm?count=abc'   # a 400 with a JSON error
  curl 'http://127.0.0.1:$PRODUCER_PORT/api/users?count=2'            # the producer itself

Ctrl-C stops both.
MSG
wait -n "${pids[@]}"
