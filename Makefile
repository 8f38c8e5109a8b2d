# ChainSense front door. Every target installs what it needs: Python deps into .venv (from uv.lock),
# npm packages from package-lock.json. Nothing is downloaded at run time.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: run test test-mqtt check lint types audit contracts bench bench-mqtt install clean

## install: the project virtualenv (locked Python deps) and node_modules (locked npm deps)
install: $(VENV)/.installed node_modules/.installed

$(UV):
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

## run: ChainSense on its embedded defaults (SQLite + a local Anvil it starts itself), with the
## demo fleet streaming signed readings live until stopped (CHAINSENSE_DEMO_FLEET=false: without)
run: install
	CHAINSENSE_DEMO_FLEET=$${CHAINSENSE_DEMO_FLEET:-true} $(VENV)/bin/chainsense serve

## test: the whole test suite (real Anvil; real PostgreSQL where marked)
test: install
	$(PY) -m pytest

## test-mqtt: the MQTT tests, with the long ones make test leaves out (kill -9 under load, broker
## restarts, two platform processes, the device SDK across crashes): several minutes
test-mqtt: install
	$(PY) -m pytest tests/mqtt
	$(PY) -m pytest tests/mqtt/soak_resilience.py tests/mqtt/soak_device.py

## contracts: compile contracts/ with solc-js into src/chainsense/contracts/artifacts
contracts: node_modules/.installed
	node contracts/build.mjs

## check: lint, strict types, Slither
check: lint types audit

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

types: install
	$(VENV)/bin/mypy

audit: install
	$(VENV)/bin/chainsense contracts audit

## bench: benchmarks that print ratios measured in one run
bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## bench-mqtt: MQTT ingest (200 devices, one reading per message) and the client comparison
bench-mqtt: install
	$(PY) bench/mqtt_clients.py
	$(PY) bench/mqtt.py

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .pytest_cache .mypy_cache .ruff_cache
