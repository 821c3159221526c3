# The front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# uv from PATH when present, else a private copy under .tools/ (installed by `make install`)
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen
STATE_DIR ?= .platform

.PHONY: help install dev demo stop test test-fast lint format bench-ingest bench-transform \
	bench-features dbt-manifest render chart-deps kind-up kind-down kind-e2e deploy images

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

.venv/.installed: uv.lock pyproject.toml code_locations/*/pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages
	@touch $@

install: .venv/.installed ## Install uv (if missing) and every Python dependency from uv.lock

dev: install ## Run the whole stack locally; UI at http://127.0.0.1:3000, Ctrl-C stops it
	$(RUN) python -m data_platform.local.stack dev --state-dir $(STATE_DIR)

demo: install ## Bring the stack up headless, run the pipeline, print one JSON line, stop
	$(RUN) python -m data_platform.local.stack demo --state-dir $(STATE_DIR)

stop: install ## Stop a stack left running (by a killed terminal, say)
	$(RUN) python -m data_platform.local.stack stop --state-dir $(STATE_DIR)

test: install ## Run every test (starts its own Postgres, Redis and upstream API)
	$(RUN) pytest

lint: install ## ruff and mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install ## Apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench-ingest: install ## Ingest 1,000,000 journal entries; rows/s and the ratio to plain COPY
	$(RUN) python -m tests.benchmarks.bench_ingest
