# shmbridge: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
GATEWAY_BIN := target/release/rust_gateway

.PHONY: help venv develop gateway example build run test test-python test-rust test-versions lint bench microbench \
	microbench-json microbench-versions wheels test-wheels soak recovery request-cost clean

help:
	@echo "make run    build everything, start the producer and the gateway, print curl lines"
	@echo "make test   build everything and run every test and check"
	@echo "make test-versions  the native module's tests on CPython 3.12, 3.13 and the abi3 build (part of make test)"
	@echo "make wheels  manylinux2014 wheels for 3.11, 3.12, 3.13 and abi3, and an sdist, into dist/; checks them"
	@echo "make bench  the benchmark (see README)"
	@echo "make microbench  handoff, slot and Python writer microbenchmarks -> results/microbench.md"
	@echo "make soak   every test SOAK_RUNS (10) times in a row with every core kept busy"
	@echo "make recovery  20 producer SIGKILLs under load, shm recovery times -> results/recovery.md"
	@echo "make microbench-json  shmbridge.dumps vs orjson vs json on many shapes -> results/microbench-json.md"
	@echo "make request-cost  instructions per request of the producer and the gateway, under callgrind"
	@echo "make microbench-versions  those shapes, shmbridge.dumps vs orjson, with each wheel of make wheels (run that first) -> results/microbench-json-versions.md"

$(PY):
	python3 -m venv $(VENV)

venv: $(PY) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Stale extension modules from an older build would shadow the new one.
develop: venv
	rm -f python/shmbridge/*.so
	$(VENV)/bin/maturin develop --release --quiet

# The gateway, the load tool the reliability tests and `make bench` drive (tools/), and the
# example service on shmbridge::client (tests_py/test_example_orders.py runs it), all in
# target/release/. One cargo run: the three share one feature resolution, so the crates
# they have in common (axum, tokio, serde_json...) are built once, not once per binary.
RELEASE_BINS := cargo build --release -p rust_gateway -p shmbridge_tools -p orders_service --bins
gateway:
	$(RELEASE_BINS)

example:
	$(RELEASE_BINS)

build: develop gateway

run: build
	scripts/run.sh

# Two lanes side by side after `make develop`: gateway + pytest, and cargo test +
# test-versions + lint (scripts/test.sh; TEST_SERIAL=1 runs them one after the other).
test:
	MAKE="$(MAKE)" scripts/test.sh

test-python:
	SHMBRIDGE_GATEWAY_BIN=$(abspath $(GATEWAY_BIN)) $(PY) -m pytest -q --durations=15 tests_py

test-rust:
	cargo test --workspace
	# The bindings' own unit tests (the JSON writer's) need the `python` feature.
	cargo test -p shmbridge --features python --lib

# The native module's tests on the other supported interpreters (each one missing is
# reported as SKIPPED), and the abi3 build's on all of them: scripts/test_versions.sh.
test-versions: venv
	scripts/test_versions.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p shmbridge --all-targets --features python -- -D warnings
	cargo clippy -p shmbridge --all-targets --features abi3 -- -D warnings
	$(VENV)/bin/ruff check python py_producer tests_py scripts examples
	$(VENV)/bin/ruff format --check python py_producer tests_py scripts examples
	$(VENV)/bin/mypy python/shmbridge py_producer scripts examples
	$(PY) -m mypy.stubtest shmbridge._native

# BENCH_ARGS, e.g. "--runs 1 --duration 2 --paths api,shm-http": see scripts/bench.py --help.
bench: build
	$(PY) scripts/bench.py $(BENCH_ARGS)

# About 4 minutes: the handoff (Rust -> Python listener -> Rust), criterion's slot
# write/read vs memcpy (benches/slot.rs), the Python writer microbench; then the report.
MICRO_TARGET := $(or $(CARGO_TARGET_DIR),target)
MICRO_TMP := results/tmp
microbench: develop
	cargo build --release -p shmbridge_tools --example handoff
	mkdir -p $(MICRO_TMP)
	$(MICRO_TARGET)/release/examples/handoff --python $(PY) --json-out $(MICRO_TMP)/microbench-handoff.json
	cargo bench -p shmbridge --bench slot
	$(PY) scripts/microbench.py --json-out $(MICRO_TMP)/microbench-python.json --md-out $(MICRO_TMP)/microbench-python.md
	$(PY) scripts/microbench_report.py --handoff $(MICRO_TMP)/microbench-handoff.json \
		--criterion-dir $(MICRO_TARGET)/criterion --python $(MICRO_TMP)/microbench-python.json \
		--python-markdown $(MICRO_TMP)/microbench-python.md --out-md results/microbench.md --out-json results/microbench.json

# Reliability: the suite again and again on a loaded machine (about 10 x 10 minutes),
# and the producer killed under load (about 5 minutes). See docs/design.md, Failures.
soak: build
	scripts/soak.sh

# A few minutes: each service under callgrind in turn, its instructions per request
# (scripts/request_cost.py --help; e.g. REQUEST_COST_ARGS="--count 100").
request-cost: build
	$(PY) scripts/request_cost.py $(REQUEST_COST_ARGS)

recovery: build
	$(PY) scripts/kill_recovery.py $(RECOVERY_ARGS)

# manylinux2014 (glibc 2.17) x86_64 wheels, one per CPython found (3.11, 3.12, 3.13) and
# the abi3 one, and the sdist, in dist/; auditwheel shows each; then test-wheels.
wheels: venv
	scripts/build_wheels.sh
	$(MAKE) test-wheels

# Installs each wheel in dist/ into a fresh venv of each interpreter it serves, and the
# sdist into one (a build from source), and does a round trip (tests_py/test_wheels.py).
test-wheels: venv
	$(PY) -m pytest -q -s -rs -m wheels tests_py/test_wheels.py

# A few minutes: every shape of data through shmbridge.dumps, orjson.dumps and json.dumps
# (medians of JSON_ROUNDS rounds); scripts/microbench_json.py --help.
JSON_ROUNDS ?= 15
microbench-json: develop
	$(PY) scripts/microbench_json.py --rounds $(JSON_ROUNDS) \
		--md-out results/microbench-json.md --json-out results/microbench-json.json

# About 5 minutes: the shapes of microbench-json, shmbridge.dumps / orjson.dumps, with each
# wheel in dist/ in a venv of its interpreter (cp311, cp312, cp313, and abi3 on each; a
# version not found is SKIPPED). Run `make wheels` first: this uses the wheels as they are.
# VERSIONS_ARGS, e.g. "--abi3-on 3.13 --only numpy": scripts/bench_versions.py --help.
VERSIONS_ROUNDS ?= 15
VERSIONS_RUNS ?= 5
microbench-versions: venv
	$(PY) scripts/bench_versions.py --parts shapes --rounds $(VERSIONS_ROUNDS) --runs $(VERSIONS_RUNS) \
		$(VERSIONS_ARGS)

clean:
	cargo clean
	rm -rf $(VENV) $(VENV)-3.* dist python/shmbridge/*.so
