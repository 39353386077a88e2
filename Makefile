# The two commands of the README:  make demo   and   make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast setup run bench clean

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

## every test suite (unit, end-to-end, emulators when available)
test: $(STAMP)
	$(BIN)/python -m pytest -q

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
emulators-install: package.json package-lock.json
	npm ci --no-audit --no-fund
