# Each target brings .venv (and the test clients) up to date itself: a fresh clone needs only
# Python 3.11, and node/npm for the editor-client tests. .venv holds exactly the lock
# (requirements/dev.txt, hash-checked): what CI passed with.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

LATEST := .venv-latest
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	--unsafe-package torch

.PHONY: serve test test-fast test-latest lock lint format venv

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements/dev.txt requirements/install.sh pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	requirements/install.sh $(BIN)/pip requirements/dev.txt -e .
	touch $@

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

serve: $(VENV_STAMP)
	$(BIN)/python -m service serve --host $(HOST) --port $(PORT)

test: $(VENV_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

# The edit-test loop: the suite less the tests marked slow (those that start a server or
# redis-server, build, train, run the CLI in a subprocess or measure time; see tests/conftest.py).
test-fast: $(VENV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Re-resolve the locks from pyproject.toml, keeping every pin that still fits; add
# PIP_COMPILE_ARGS=--upgrade to move every package to its newest allowed release (after
# `make test-latest` passes). The dev lock is constrained by the runtime lock, so the two agree.
lock: $(VENV_STAMP)
	$(BIN)/pip-compile $(LOCK_FLAGS) $(PIP_COMPILE_ARGS) -o requirements/runtime.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) $(PIP_COMPILE_ARGS) -c requirements/runtime.txt \
		--extra dev --extra train --extra cuda -o requirements/dev.txt pyproject.toml

# The whole suite in a throw-away venv holding the newest releases pyproject.toml allows, not the
# lock: finds the next breaking upstream release before users do. Run it before `make lock
# PIP_COMPILE_ARGS=--upgrade`, and weekly. The versions it ran are in $(LATEST)/versions.txt.
test-latest: $(NODE_STAMP)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q 'torch==2.13.0'
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[dev,train,cuda]'
	$(LATEST)/bin/pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q

lint: $(VENV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
