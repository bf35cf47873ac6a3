# Two entry points: `make demo` and `make test`. Both set up what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: demo test lint clean setup bench-stream bench-cost

setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) -m devhost.demo

test: setup
	$(PY) -m pytest

# Streams a 200 MiB blob to the ANY.RUN emulator and records the worker's memory.
bench-stream: setup
	$(PY) -m bench.stream_file --size-mb 200

# Posts 500 incidents through devhost and the emulators with the remaining-time
# waiting policy and the two baselines; about 20 minutes on 2 cores. Figures go
# to bench/results/cost.json (docs/benchmarks.md).
bench-cost: setup
	$(PY) -m bench.cost --incidents 500

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf .devhost .azurite .pytest_cache
