# tezgah: `make demo` runs it on the embedded default; `make test` runs every check CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test setup system-deps services lint typecheck pytest schemathesis bench clean

demo: system-deps $(STAMP)
	$(BIN)/tezgah demo --host 127.0.0.1 --port 8000

test: system-deps services $(STAMP) lint typecheck pytest schemathesis

setup: system-deps $(STAMP)

system-deps:
	./scripts/system-deps.sh $(if $(filter test,$(MAKECMDGOALS)),--services,)

services:
	./scripts/services.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

lint:
	$(BIN)/ruff check src tests benchmarks migrations tools
	$(BIN)/ruff format --check src tests benchmarks migrations tools

typecheck:
	$(BIN)/mypy src

pytest:
	$(BIN)/pytest --cov=tezgah --cov-report=term --cov-report=xml -p no:cacheprovider

schemathesis:
	$(BIN)/python -m tests.schemathesis_run

bench: setup
	$(BIN)/python -m benchmarks.http_stack
	$(BIN)/python -m benchmarks.auth_stack
	$(BIN)/python -m benchmarks.design_list
	$(BIN)/python -m benchmarks.transfer

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache coverage.xml .coverage
