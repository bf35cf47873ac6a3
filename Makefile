# Two entry points: `make demo` and `make test`. Both set up what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: demo test lint clean setup bench-stream bench-cost soak

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

# Posts 200 incidents while about 10% of the emulators' API requests get a
# fault, Azurite restarts and the sandbox limits fill up. Figures go to
# bench/results/soak.json (docs/reliability.md); exit status 1 when an
# incident is lost, an effect is doubled or a secret leaks.
soak: setup
	$(PY) -m bench.soak --incidents 200

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf .devhost .azurite .pytest_cache
