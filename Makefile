# shmbridge: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
GATEWAY_BIN := target/release/rust_gateway

.PHONY: help venv develop gateway build run test test-python test-rust lint bench clean

help:
	@echo "make run    build everything, start the producer and the gateway, print curl lines"
	@echo "make test   build everything and run every test and check"
	@echo "make bench  the benchmark (see README)"

$(PY):
	python3 -m venv $(VENV)

venv: $(PY) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Stale extension modules from an older build would shadow the new one.
develop: venv
	rm -f python/shmbridge/*.so
	$(VENV)/bin/maturin develop --release --quiet

gateway:
	cargo build --release -p rust_gateway

build: develop gateway

run: build
	scripts/run.sh

test: build test-rust test-python lint

test-python:
	SHMBRIDGE_GATEWAY_BIN=$(abspath $(GATEWAY_BIN)) $(PY) -m pytest -q tests_py

test-rust:
	cargo test --workspace

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p shmbridge --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python py_producer tests_py scripts
	$(VENV)/bin/ruff format --check python py_producer tests_py scripts
	$(VENV)/bin/mypy python/shmbridge py_producer scripts
	$(PY) -m mypy.stubtest shmbridge._native

# BENCH_ARGS, e.g. "--runs 1 --duration 2 --paths api,shm-http": see scripts/bench.py --help.
bench: build
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	cargo clean
	rm -rf $(VENV) python/shmbridge/*.so
