# The two commands of the README:  make demo   and   make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck format setup run bench clean chromium

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

## the offline demo: local APIs, two tenants, a real sync end to end, then an incremental one
demo: $(STAMP)
	$(BIN)/python -m datasync demo

NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## the gates, then every test suite: unit, end-to-end on the local runtime, integration on
## the emulators, faults, conformance (pytest turns every warning into an error)
test: lint typecheck $(NODE_STAMP) chromium
	$(BIN)/python -m pytest -q --durations=15

## Debian's headless Chromium for the web console's browser tests (tests/browser)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@chromium --version 2>/dev/null | head -1

## ruff: lint rules and formatting (what to check is configured in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check

## mypy --strict on datasync/ (pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

## rewrite the tree as `make lint` wants it (safe fixes only)
format: $(STAMP)
	$(BIN)/ruff check --fix
	$(BIN)/ruff format

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e and not emulator and not faults"

run: $(STAMP)
	$(BIN)/python -m datasync run

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .datasync .pytest_cache

## the local Azure emulators (Azurite, Cosmos emulator server) into ./node_modules
.PHONY: emulators-install
emulators-install: $(NODE_STAMP)
