# The front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# compile bytecode at install: machines that set PYTHONDONTWRITEBYTECODE would otherwise
# recompile dagster, dbt and Feast from source in every code server, run and CLI call
export UV_COMPILE_BYTECODE := 1
# uv from PATH when present, else a private copy under .tools/ (installed by `make install`)
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
export UV
RUN := $(UV) run --frozen
STATE_DIR ?= .platform

.PHONY: help install dev demo stop test test-fast check-defs snapshot lint format bench-ingest bench-freshness bench-load bench-transform \
	bench-features soak dbt-manifest render chart-deps kind-up kind-down kind-e2e deploy images \
	images-local

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/bin/uv:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

.venv/.installed: uv.lock pyproject.toml code_locations/*/pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages
	@touch $@

install: .venv/.installed ## Install uv (if missing) and every Python dependency from uv.lock

dev: install ## Run the whole stack locally; UI at http://127.0.0.1:3000, Ctrl-C stops it
	$(RUN) python -m data_platform_dev.stack dev --state-dir $(STATE_DIR) $(ARGS)

demo: install ## Bring the stack up headless, run the pipeline, print one JSON line, stop
	$(RUN) python -m data_platform_dev.stack demo --state-dir $(STATE_DIR) $(ARGS)

stop: install ## Stop a stack left running (by a killed terminal, say)
	$(RUN) python -m data_platform_dev.stack stop --state-dir $(STATE_DIR)

test: install ## Run every test (starts its own Postgres, Redis and upstream API)
	$(RUN) pytest

check-defs: install ## dg check defs: load every location of the dg workspace (dg.toml), as make test does
	$(RUN) dg check defs --use-active-venv

snapshot: install ## Rewrite tests/snapshots/asset_graph.json from the current asset graph (review, then commit)
	$(RUN) python -m data_platform_dev.asset_graph

lint: install ## ruff and mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install ## Apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

soak: install ## N cycles (default 20) of upstream changes and random faults through the local stack on free ports; last line JSON with the mismatch counts (ARGS="--cycles 30 --seed 7")
	$(RUN) python -m data_platform_dev.soak $(ARGS)

bench-ingest: install ## Ingest 1,000,000 journal entries; rows/s and the ratio to plain COPY
	$(RUN) python -m tests.benchmarks.bench_ingest $(ARGS)

bench-freshness: install ## Local stack on free ports; random upstream writes for 4 min; seconds until each is online (p50/p95/max)
	$(RUN) python -m tests.benchmarks.bench_freshness $(ARGS)

bench-load: install ## Seconds until each code server answers, and from a run's launch to its first step, per location
	$(RUN) python -m tests.benchmarks.bench_load $(ARGS)

# --- Kubernetes: images, charts, kind ------------------------------------------------------
render: install ## Render every release to build/manifests/<release>.yaml (RENDER_ENV=production for production values); says which chart version rendered
	$(RUN) python -m data_platform_dev.releases.render --env $(or $(RENDER_ENV),dev)

chart-deps: install ## Download the official Dagster charts (dagster, dagster-user-deployments 1.13.27) where the network allows
	$(RUN) python -m data_platform_dev.releases.chart_deps

kind-up: ## Create the local kind cluster "data-platform" (charts/kind-cluster.yaml)
	kind get clusters 2>/dev/null | grep -qx data-platform || kind create cluster --config charts/kind-cluster.yaml

kind-down: ## Delete the local kind cluster
	kind delete cluster --name data-platform

kind-e2e: install ## End to end on a throwaway kind cluster (needs Docker, kind, skaffold, helm, kubectl)
	$(RUN) python tests/e2e/kind_e2e.py

images: ## Build the three code location images (REGISTRY=<registry> builds and pushes for production)
	@mkdir -p build
	skaffold build $(if $(REGISTRY),-p production --default-repo $(REGISTRY)) --file-output build/images.json

images-local: install ## Build the three images with buildah (no Docker engine or registry), start each as uid 10001 read-only, run one ingestion in its image (root; installs buildah/podman/runc/debootstrap if missing)
	$(RUN) python -m data_platform_dev.releases.images_local $(ARGS)

deploy: install ## helm upgrade --install every release, in order, against the current kubectl context
	$(RUN) python -m data_platform_dev.releases.deploy $(if $(wildcard build/images.json),--images build/images.json)

bench-features: install ## gold by dbt (90 days) -> Redis, full and incremental, vs raw COPY/HSET; reads 1/100 users and 32 clients (ARGS="--entries 100000 1000000")
	$(RUN) python -m tests.benchmarks.bench_features $(ARGS)

bench-transform: install ## dbt full build over 1,000,000 entries (ARGS="--entries N"), then an incremental build after +1%; ratio
	$(RUN) python -m tests.benchmarks.bench_transform $(ARGS)

dbt-manifest: install ## Prepare dbt/target/manifest.json (dbt parse: no database needed), the asset specs and the compiled templates, as the image build does
	$(RUN) dagster-dbt project prepare-and-package --file code_locations/transformation/src/transformation/dbt_config.py
	$(RUN) python -m transformation.dbt_specs
	$(RUN) python -m transformation.dbt_templates
