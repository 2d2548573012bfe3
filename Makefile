# `make up` runs the cloud on this machine; `make test` runs the whole suite.
# Both install what they need first (Debian packages, then the .venv), idempotently.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The web console's third-party browser code (htmx), pinned in web/package-lock.json.
BROWSER_STAMP := web/node_modules/.installed

.PHONY: up test lint format system deps postgres bench clean

up: deps
	$(BIN)/nubis up

# Three workers on two cores: one starts on the end-to-end tests, the others on the
# rest, and each takes the other's files once its own are done (tests/conftest.py);
# the end-to-end tests wait on guests and failure windows, and leave a core idle.
test: deps postgres
	$(BIN)/pytest -n 3 --no-loadscope-reorder

lint: deps
	$(BIN)/ruff check nubis tests bench
	$(BIN)/ruff format --check nubis tests bench
	$(BIN)/mypy
	shellcheck -x nubis/guestimage/scripts/*.sh

format: deps
	$(BIN)/ruff check --fix nubis tests bench
	$(BIN)/ruff format nubis tests bench

bench: deps postgres
	$(BIN)/python bench/engine.py --quick
	$(BIN)/python bench/scheduler.py --quick
	$(BIN)/python bench/vm_create.py --quick
	$(BIN)/python bench/failover.py --quick
	$(BIN)/python bench/long_poll.py --quick

system:
	@tools/install-system-packages

deps: system $(STAMP) $(BROWSER_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(BROWSER_STAMP): web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	@touch $@

postgres:
	@tools/ensure-postgres

clean:
	rm -rf $(VENV) web/node_modules .pytest_cache .mypy_cache .ruff_cache
