# Two commands matter: `make demo` and `make test`. Every target sets itself up first, from the lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
UV_VERSION  := 0.13.9
UV          := python3 -m uv
# Two locks: requirements/runtime.txt (what the image and a Composer environment install) and
# requirements/dev.txt (runtime + sandbox, tests, lint), which the venv syncs.
RUNTIME_LOCK := requirements/runtime.txt
DEV_LOCK    := requirements/dev.txt
STAMP       := $(VENV)/.synced-$(shell cat $(DEV_LOCK) pyproject.toml | sha256sum | cut -c1-16)

# Local Airflow: state in an ignored folder of the repo, examples off, 4 worker slots.
export AIRFLOW_HOME                          := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER            := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES          := False
export AIRFLOW__CORE__PARALLELISM            := 4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True
export PYTHONPATH                            := $(CURDIR)

.PHONY: help setup demo test test-slow lint format up bench lock clean

help:
	@echo "make demo    start the sandbox, run the DAG end to end against it, print what happened"
	@echo "make test    run the test suite (all but the few whole-environment runs on a real scheduler)"
	@echo "make test-slow  those runs: restart while deferred, secrets in a real stack, the browser"
	@echo "make up      sandbox + Airflow UI on loopback (Ctrl-C stops everything)"
	@echo "make lint    ruff with the Airflow rules"
	@echo "make bench   benchmarks, under 10 min (bench/results.json, bench/history.json, BENCHMARKS.md); .venv/bin/python -m bench --quick to try"
	@echo "make lock    re-lock requirements/runtime.txt and requirements/dev.txt from their .in files"

setup: $(STAMP) $(AIRFLOW_HOME)/airflow.db

$(STAMP): $(DEV_LOCK) pyproject.toml
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@test -x $(PY) || $(UV) venv --quiet --python 3.11 --no-python-downloads $(VENV)
	@# with bytecode, as pip installs by default: uv does not, and each task process would then
	@# recompile the Google and Kubernetes clients (0.7-1.4 s a task, bench/task_profile.py)
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) $(DEV_LOCK)
	@# the gke_inference package, editable: dags/ imports it as a deployment's installed wheel
	$(UV) pip install --quiet --python $(PY) --no-deps --editable .
	@rm -f $(VENV)/.synced-* && touch $@

$(AIRFLOW_HOME)/airflow.db: | $(STAMP)
	@mkdir -p $(AIRFLOW_HOME)
	$(PY) -m airflow db migrate >$(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)

demo: setup
	$(PY) -m scripts.demo

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

up: setup
	$(PY) -m scripts.up

bench: setup
	$(PY) -m scripts.bench

lock:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip compile --quiet requirements/runtime.in --python-version 3.11 -o $(RUNTIME_LOCK)
	@# dev is constrained by the runtime lock: every package both hold has the same version in both
	$(UV) pip compile --quiet requirements/dev.in -c $(RUNTIME_LOCK) --python-version 3.11 -o $(DEV_LOCK)

clean:
	rm -rf $(AIRFLOW_HOME) .pytest_cache .ruff_cache
