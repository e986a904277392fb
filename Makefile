# The two set-up commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RAMANEDGE := $(VENV)/bin/ramanedge
# The CPU build of torch, installed before the [train] extra so that pip never pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DEMO ?= demo_out
# pytest workers (pytest-xdist). Two, measured on 2 cores with one core busy: 4 min 55 s against 6 min 32 s in one
# process (docs/benchmarks.md, "The test suite"); PYTEST_WORKERS=0 runs the suite in this one process.
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint unit services bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,dev,vendor]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m ramanedge.demo --out $(DEMO)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Mosquitto and chromium for the MQTT and dashboard tests (apt-get, only when missing and run as root).
services:
	sh scripts/test-services.sh

unit: $(STAMP) services
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS)

test: lint unit

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
