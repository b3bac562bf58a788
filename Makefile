# imagehub — `make run` starts the API on the embedded default; `make test` runs the suite.
# Both create and use .venv in the repository root.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
# A SIGTERM lets requests waiting for their images finish: at least the sync wait
# (IMAGEHUB_SYNC_WAIT_SECONDS, 300 s), plus time to send the answer. Raise both together.
GRACEFUL_TIMEOUT ?= 330
# gunicorn manages uvicorn workers on an event loop (imagehub/server.py): slow clients and
# waiting requests cost no thread (README, "Limits and protections"; make bench-clients).
GUNICORN_OPTS = --worker-class imagehub.server.Worker --timeout 360 \
  --graceful-timeout $(GRACEFUL_TIMEOUT) --keep-alive 75
STAMP := $(VENV)/.installed
# torch: scripts/install-torch picks the build (CPU index without an NVIDIA GPU, CUDA
# build with one). TORCH_SPEC (default torch==2.13.0) and TORCH_INDEX_URL override it.
export TORCH_SPEC TORCH_INDEX_URL

.PHONY: install torch run web worker test test-pythons check-deploy bench bench-services bench-clients \
  lint format migrate demo-models clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@# torch first, the right build (a plain requirement pulls the multi-GB CUDA build).
	@$(PY) -c "import torch" 2>/dev/null || scripts/install-torch $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	@# The browser tests drive Debian's chromium through Playwright (no browser download).
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: /usr/bin/chromium missing; the browser tests will be skipped"
	@touch $(STAMP)

# (Re)install torch in .venv, e.g. `make torch TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128`.
torch:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	scripts/install-torch $(PY)

migrate: install
	$(PY) manage.py migrate --noinput

demo-models: install
	$(PY) manage.py build_demo_models

# The embedded default: SQLite, in-process Dramatiq worker threads, local files.
run: migrate demo-models
	@echo "imagehub on http://$(HOST):$(PORT)  (docs: http://$(HOST):$(PORT)/docs/)"
	@echo 'create a key: export IMAGEHUB_KEY=$$($(PY) manage.py create_api_key you@example.com --org "My team" --credits 1000000 | tail -n1)'
	IMAGEHUB_WARMUP_MODELS=$${IMAGEHUB_WARMUP_MODELS-demo-sd} \
	$(VENV)/bin/gunicorn imagehub.asgi --bind $(HOST):$(PORT) --workers 1 $(GUNICORN_OPTS) \
	  --access-logfile - --access-logformat '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'

# Production-style: a web process and separate workers sharing DATABASE_URL and
# DRAMATIQ_BROKER_URL (see README, "Deploying").
web: migrate
	$(VENV)/bin/gunicorn imagehub.asgi --bind $(HOST):$(PORT) --workers $${WEB_WORKERS:-2} \
	  $(GUNICORN_OPTS)

worker: install demo-models
	$(PY) manage.py runworker $${WORKER_THREADS:+--threads $$WORKER_THREADS}

# The test database is this clone's own (imagehub/settings_test.py); one a killed run or a
# failed teardown left behind is dropped before and after the suite.
test: install
	$(PY) manage.py build_demo_models
	@$(PY) scripts/drop_test_database.py
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	  $(PY) scripts/drop_test_database.py; exit $$status

# Install + the install smoke test on the other supported Pythons (TEST_PYTHONS="3.12 3.13"),
# each in a throwaway venv; see scripts/test-pythons.
test-pythons:
	scripts/test-pythons $(TEST_PYTHONS)

# What can be checked of the deployment files without a container engine: the compose
# file (docker compose or docker-compose config) and the kustomize base (kubectl).
check-deploy:
	@# Debian's docker-compose parses compose.yaml without a container engine.
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1; } || \
	  { apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1; } || \
	  echo "warning: no docker compose; compose.yaml will not be checked"
	scripts/check-deploy

bench: migrate demo-models
	$(PY) -m tests.bench --out BENCHMARKS.md
	$(PY) -m tests.bench_adapters --out BENCHMARKS.md

# LoRA adapters: switching cost (first use, cached use) and throughput with three
# adapters interleaved against the base model alone (also part of make bench).
.PHONY: bench-adapters
bench-adapters: migrate demo-models
	$(PY) -m tests.bench_adapters --out BENCHMARKS.md

# One request at a time on the embedded default (what make run starts) against a bare
# pipe() loop, with where the difference goes.
.PHONY: bench-run
bench-run: migrate demo-models
	$(PY) -m tests.bench_make_run --out BENCHMARKS.md

# The worker against an emulated device (a GIL-free wait per call, real 1024² images):
# images per second against the device's capacity, PNG and JPEG, batching off and on.
.PHONY: bench-pipeline
bench-pipeline: migrate demo-models
	$(PY) -m tests.bench_pipeline --out BENCHMARKS.md

# Faults injected into a real deployment with the default liveness settings: workers
# killed mid-batch (20 per broker), broker down or emptied, database blips, web restarts
# during sync waits (about 10 minutes). Writes "Faults (make chaos)" in BENCHMARKS.md.
.PHONY: chaos
chaos: migrate demo-models
	$(PY) -m tests.chaos_bench --trials 20 --out BENCHMARKS.md

# Slow and numerous clients: 500 connections trickling headers while normal requests are
# timed, and 2,000 in-flight sync requests held with the web process's memory; imagehub's
# server against gthread. Rewrites its section of BENCHMARKS.md.
bench-clients: migrate demo-models
	$(PY) -m tests.bench_clients --out BENCHMARKS.md

# Milliseconds of each gateway step of one request (where the overhead goes).
bench-services: migrate demo-models
	$(PY) -m tests.bench_services

# A multi-image answer on S3 (moto on loopback, a network round trip added to each
# request): the worker's encode + upload and the web's read-back, in turn and in parallel.
.PHONY: bench-storage
bench-storage: install
	$(PY) -m tests.bench_storage --out BENCHMARKS.md

# Fair share: how long one tenant's request waits behind another's backlog.
.PHONY: bench-fairness
bench-fairness: migrate demo-models
	$(PY) -m tests.bench_fairness --out BENCHMARKS.md

# FLUX.1-schnell at full size (random bf16 weights built on the GPU, saved to /dev/shm):
# bare eager, compiled (+ fp8 where the GPU has it) and the service on the same GPU.
# Needs a CUDA GPU; writes its section of BENCHMARKS.md. On a GPU machine without the
# project's packages: `make gpu-wheels` here, then ../shared/gpu/README.md. Where one
# call may not last the whole run, run it in parts: each adds its rows to
# data/bench-gpu-results.json and writes the table of all rows so far, e.g.
# `make bench-gpu PARTS=eager,compiled`, then PARTS=fp8, then PARTS=service.
.PHONY: bench-gpu gpu-wheels
# The GPU machine may have no .venv: then the python3 on PATH (PYTHONPATH=/tmp/site:$PWD).
bench-gpu:
	$$(test -x $(PY) && echo $(PY) || echo python3) -m tests.bench_gpu --out BENCHMARKS.md \
	  $(if $(PARTS),--parts $(PARTS))

# Wheels of everything imagehub needs but torch, transformers and numpy, for CPython 3.12
# on manylinux x86_64, into gpu-wheels/ (ignored by git).
gpu-wheels: install
	$(PY) scripts/gpu_wheels.py gpu-wheels

# Moderation: what each stage of a content policy adds (off, terms, demo classifiers).
.PHONY: bench-moderation
bench-moderation: migrate demo-models
	$(PY) -m tests.bench_moderation --out BENCHMARKS.md

# Webhooks: delivery latency after completion, none lost across worker and web restarts.
.PHONY: bench-webhooks
bench-webhooks: demo-models
	$(PY) -m tests.bench_webhooks --out BENCHMARKS.md

# Everyday requests on a busy deployment's 90 days (seeded in SQL; SCALE=1 is issue 24's
# volumes) against an empty database, and reconcile_ledger's time and memory.
.PHONY: bench-scale
SCALE ?= 1
bench-scale: migrate
	$(PY) -m tests.bench_scale --scale $(SCALE) --out BENCHMARKS.md

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data .pytest_cache
