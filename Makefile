# Each target brings .venv (and the test clients) up to date itself: a fresh clone needs only
# Python 3.11, and node/npm for the editor-client tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint format bench venv

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

serve: $(VENV_STAMP)
	$(BIN)/python -m service serve --host $(HOST) --port $(PORT)

test: $(VENV_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

lint: $(VENV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
