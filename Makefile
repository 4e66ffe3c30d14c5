# Conversation Assistant — the two set-up commands:
#   make up     install and run the whole system (SQLite, no Redis, bundled model)
#   make demo   (no Mac?) load one person's texting from a public corpus, then `make up`
#   make test   install dev tools and run lint, type check and the test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# torch: the CPU build, pinned exactly (a range would pull several GB of CUDA wheels).
TORCH  := torch==2.13.0

.DEFAULT_GOAL := help
.PHONY: help up demo test lint typecheck format unit bench clean

help:
	@echo "make up     install and run the whole system (server :3100, ML service :8100)"
	@echo "make demo   load demo conversations (BYU Chit-Chat corpus) for trying it without a Mac"
	@echo "make test   install dev dependencies, then lint, type check and run all tests"
	@echo "make lint | typecheck | unit | format | clean"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Installs are stamped so repeated runs skip pip when pyproject.toml has not changed.
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	@echo "Installing Conversation Assistant (the first build of llama-cpp-python takes minutes)…"
	$(PIP) install --quiet -e ".[ml,train]" "$(TORCH)"
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	@echo "Installing Conversation Assistant with the dev tools…"
	$(PIP) install --quiet -e ".[ml,train,dev]" "$(TORCH)"
	@touch $@ $(VENV)/.stamp-run

up: $(VENV)/.stamp-run
	$(BIN)/convassist db upgrade
	$(BIN)/convassist up

demo: $(VENV)/.stamp-run
	$(PIP) install --quiet -e ".[demo]"
	$(BIN)/convassist demo

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.stamp-dev
	$(BIN)/mypy

unit: $(VENV)/.stamp-dev
	$(BIN)/pytest

test: lint typecheck unit

format: $(VENV)/.stamp-dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
