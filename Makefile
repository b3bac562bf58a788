# imagehub — `make run` starts the API on the embedded default; `make test` runs the suite.
# Both create and use .venv in the repository root.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
WEB_THREADS ?= 64
STAMP := $(VENV)/.installed

.PHONY: install run web worker test bench bench-services lint format migrate demo-models clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@# torch first: the CPU build where there is no NVIDIA GPU (a plain requirement would
	@# pull the multi-GB CUDA build); the normal build on a GPU host.
	@$(PY) -c "import torch" 2>/dev/null || { \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install torch; \
	  else $(PY) -m pip install torch==2.13.0; fi; }
	$(PY) -m pip install --quiet -e ".[dev]"
	@# The browser tests drive Debian's chromium through Playwright (no browser download).
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: /usr/bin/chromium missing; the browser tests will be skipped"
	@touch $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

demo-models: install
	$(PY) manage.py build_demo_models

# The embedded default: SQLite, in-process Dramatiq worker threads, local files.
run: migrate demo-models
	@echo "imagehub on http://$(HOST):$(PORT)  (docs: http://$(HOST):$(PORT)/docs/)"
	@echo "create a key: $(PY) manage.py create_api_key you@example.com --credits 1000000"
	IMAGEHUB_WARMUP_MODELS=$${IMAGEHUB_WARMUP_MODELS-demo-sd} \
	$(VENV)/bin/gunicorn imagehub.wsgi --bind $(HOST):$(PORT) --workers 1 \
	  --worker-class gthread --threads $(WEB_THREADS) --timeout 360 --keep-alive 75 \
	  --access-logfile - --access-logformat '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'

# Production-style: a web process and separate workers sharing DATABASE_URL and
# DRAMATIQ_BROKER_URL (see README, "Deploying").
web: migrate
	$(VENV)/bin/gunicorn imagehub.wsgi --bind $(HOST):$(PORT) --workers $${WEB_WORKERS:-2} \
	  --worker-class gthread --threads $(WEB_THREADS) --timeout 360 --keep-alive 75

worker: install demo-models
	$(PY) manage.py runworker $${WORKER_THREADS:+--threads $$WORKER_THREADS}

test: install
	$(PY) manage.py build_demo_models
	$(PY) -m pytest $(PYTEST_ARGS)

bench: migrate demo-models
	$(PY) -m tests.bench --out BENCHMARKS.md

# Milliseconds of each gateway step of one request (where the overhead goes).
bench-services: migrate demo-models
	$(PY) -m tests.bench_services

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data .pytest_cache
