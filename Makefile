# droplab: `make run` reproduces the paper's simulations (standard preset); `make test` runs the test suite.
# Both create .venv if missing. torch==2.13.0 (a CPU build) is installed first where no torch is present.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= standard
OUT ?= reports/$(PRESET)

.PHONY: setup setup-dev run test test-slow lint bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.droplab-installed: pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.droplab-dev: $(VENV)/.droplab-installed
	$(PY) -m pip install -q -e ".[dev,sweep,tensorboard,docs]"
	touch $@

setup: $(VENV)/.droplab-installed

setup-dev: $(VENV)/.droplab-dev

run: setup
	$(VENV)/bin/droplab reproduce --preset $(PRESET) --out $(OUT)

test: setup-dev
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(PY) -m pytest

test-slow: setup-dev
	$(PY) -m pytest -m slow

lint: setup-dev
	$(VENV)/bin/ruff check src tests benchmarks tools

docs: setup-dev
	$(PY) tools/tutorials.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: setup
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf runs reports results site .pytest_cache
