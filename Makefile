# Data Flow on Dagster. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv: the one on PATH, or the module pip installed (bootstrapped by `make install`).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export DATAFLOW_EVENTS_DB ?= $(CURDIR)/data/events.duckdb
export DATAFLOW_FLOWS_DIR ?= $(CURDIR)/flows

.PHONY: help install run test test-servers lint soak bench clean schema screenshots
MINUTES ?= 10
FLOWS ?= 3

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install the project and its dev tools into .venv (bootstraps uv with pip)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@# --compile-bytecode compiles the dependencies only; with PYTHONDONTWRITEBYTECODE=1 every
	@# process (each run worker, each dataflow command) would compile the project's own modules.
	@$(UV) run --frozen --no-sync python -m compileall -q -j 0 dataflow_assets >/dev/null

run: install ## load demo events, run a first generation, serve the UI on http://127.0.0.1:3000
	@mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true
	@$(UV) run dataflow validate
	@$(UV) run dataflow demo --serve

lint: install ## ruff (lint + format check) and mypy
	@$(UV) run ruff check .
	@$(UV) run ruff format --check .
	@$(UV) run mypy

test-servers: ## make sure the test servers can run here (sshd for sFTP, PostgreSQL; moto and pyftpdlib come with uv)
	@missing=""; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "the tests need:$$missing (Debian: apt-get install$$missing)"; fi; \
	fi

test: install test-servers lint ## lint, type-check, then every test (the fixtures start the servers)
	@$(UV) run pytest -q -p no:cacheprovider -n 2 --dist loadscope

schema: install ## write flows/flow.schema.json, the flow file's JSON Schema (from the flow model)
	@$(UV) run dataflow schema --output flows/flow.schema.json

screenshots: install ## refresh docs/images/ from a throw-away demo, in headless chromium
	@$(UV) run python docs/screenshots.py

soak: install ## concurrent ingest + exports for MINUTES (10) with FLOWS (3): lost / duplicated
	@$(UV) run python bench/soak.py --minutes $(MINUTES) --flows $(FLOWS)

bench: install ## export benchmarks against DuckDB COPY (see bench/README.md)
	@$(UV) run python bench/export_bench.py

clean: ## remove the demo's store, exports and Dagster home
	rm -rf data exports .dagster
