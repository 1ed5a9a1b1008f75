# Spotter's make targets are its contract: `make` alone lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GENERATED := services/gen/.generated
PROTOS := $(shell find protos -name "*.proto")
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv protos run test test-fast lint fmt bench demo-model lock clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(INSTALLED): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[ml,dev]'
	touch $@

venv: $(INSTALLED) ## create .venv and install the project with its packages

$(GENERATED): $(INSTALLED) $(PROTOS)
	scripts/gen-protos.sh $(BIN)/python
	touch $@

protos: $(GENERATED) ## generate the Python stubs from protos/ into services/gen/

run: $(GENERATED) ## set up, then start the model server, gateway and worker on the demo model (Ctrl-C stops them)
	scripts/ensure-redis.sh
	$(BIN)/spotter run

test: $(GENERATED) ## set up, then run every test (the TensorFlow-free process and the TensorFlow one side by side)
	scripts/ensure-redis.sh
	scripts/ensure-prometheus.sh
	scripts/ensure-chromium.sh
	scripts/run-tests.sh $(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(GENERATED) ## the tests without the slow and integration tiers
	$(BIN)/pytest tests --ignore=tests/tf -m "not slow and not integration" $(PYTEST_ARGS)
	$(BIN)/pytest tests/tf -m "not slow and not integration" $(PYTEST_ARGS)

lint: $(GENERATED) ## ruff, mypy and the layer contracts (import-linter)
	$(BIN)/ruff check services tests benchmarks
	$(BIN)/ruff format --check services tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(INSTALLED) ## format and fix what ruff can
	$(BIN)/ruff format services tests benchmarks
	$(BIN)/ruff check --fix services tests benchmarks

bench: $(GENERATED) ## served images/s against the ceiling (best of in process and the model server alone), batching on and off; the gateway's own ceiling
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.gateway_ceiling

demo-model: $(GENERATED) ## train and export models/demo/1 from generated scenes (seeded, reproducible)
	$(BIN)/spotter demo-model --output models/demo

lock: $(INSTALLED) ## refresh requirements/constraints.txt from the current environment
	$(BIN)/python -m pip freeze --exclude-editable > requirements/constraints.txt

clean: ## remove the virtual env, generated stubs and caches
	rm -rf $(VENV) services/gen .pytest_cache .mypy_cache .ruff_cache
