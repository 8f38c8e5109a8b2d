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

.PHONY: run test test-mqtt check lint types audit contracts bench soak test-leader bench-ai bench-mqtt fuzz load install clean test-security web api-docs-assets console-assets docs browser vectors

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
## demo fleet streaming signed readings live until stopped (CHAINSENSE_DEMO_FLEET=false: without).
## Options of `chainsense serve` go in ARGS: make run ARGS="--port 8080" (or CHAINSENSE_PORT=8080)
run: install
	CHAINSENSE_DEMO_FLEET=$${CHAINSENSE_DEMO_FLEET:-true} $(VENV)/bin/chainsense serve $(ARGS)

## test: the whole test suite (real Anvil; real PostgreSQL where marked; real Chromium for the console)
test: install browser
	$(PY) -m pytest

## fuzz: the long hostile-input runs (docs/input.md): atheris over body parsing and reading
## validation for CHAINSENSE_FUZZ_SECONDS (600), then schemathesis against a real `chainsense
## serve` process with CHAINSENSE_FUZZ_EXAMPLES (50) examples per operation
fuzz: install
	CHAINSENSE_FUZZ_SECONDS=$${CHAINSENSE_FUZZ_SECONDS:-600} \
	CHAINSENSE_FUZZ_EXAMPLES=$${CHAINSENSE_FUZZ_EXAMPLES:-50} \
	$(PY) -m pytest -s -p no:cacheprovider --timeout=7200 tests/fuzz tests/api/test_hostile_server.py

## test-security: secrets, rate limits, shedding, headers (docs/security.md); -s prints the
## figures the rate-limit runs measured
test-security: install
	$(PY) -m pytest -q -s tests/test_redact.py tests/limits tests/api/test_protections.py \
		tests/e2e/test_limits.py tests/e2e/test_secret_leak.py

## console-assets: bundle the console's assets (htmx, uPlot, its islands and CSS) from node_modules
## with esbuild into src/chainsense/web/static/dist (committed: a Python-only install needs no Node)
console-assets: node_modules/.installed
	node_modules/.bin/esbuild src/chainsense/web/assets/console.js --bundle --minify \
		--format=iife --target=es2020 --legal-comments=linked --log-level=warning \
		--outfile=src/chainsense/web/static/dist/console.js
	node_modules/.bin/esbuild src/chainsense/web/assets/verify.js --bundle --minify \
		--format=iife --global-name=ChainSenseVerify --target=es2020 --legal-comments=linked \
		--log-level=warning --outfile=src/chainsense/web/static/dist/verify.js

## browser: Chromium for the console's browser tests (Debian's package; only when it is missing)
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

## test-mqtt: the MQTT tests, with the long ones make test leaves out (three kill -9s under load, broker
## restarts, two platform processes, the device SDK across crashes): several minutes
test-mqtt: install
	$(PY) -m pytest tests/mqtt
	$(PY) -m pytest tests/mqtt/soak_resilience.py tests/mqtt/soak_device.py

## contracts: compile contracts/ with solc-js into src/chainsense/contracts/artifacts
contracts: node_modules/.installed
	node contracts/build.mjs

## web: the web assets the API serves, built from node_modules (the results are committed, so a
## Python-only user needs no Node.js)
web: api-docs-assets console-assets

## api-docs-assets: Swagger UI and Redoc bundles for /docs and /redoc (no CDN)
api-docs-assets: node_modules/.installed
	node tools/vendor_api_docs.mjs

## docs: the documentation site (mkdocs-material, strict: a broken link fails) into build/site
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

## vectors: regenerate the proof conformance vectors (tests/vectors/proofs) on a fresh Anvil
vectors: install
	$(PY) -m tests.vectors.generate_proofs

## check: lint, strict types, Slither
check: lint types audit

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

types: install
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench

audit: install
	$(VENV)/bin/chainsense contracts audit

## bench: benchmarks that print ratios measured in one run
bench: install
	@for b in $(filter-out bench/load.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

## load: many concurrent devices against `chainsense serve` (SQLite and PostgreSQL), ~5 min
load: install
	$(PY) bench/load.py

## test-leader: kill -9 of the anchorer's leader under load (serve --workers 2 on PostgreSQL, its
## Anvil, six devices), with the figures it measured; make test runs it too (60-75 s measured on a
## busy 2-core machine, ~50 s of it starting the two workers)
test-leader: install
	$(PY) -m pytest -s -q tests/provenance/test_crash_leader.py

## soak: a steady rate for SOAK_SECONDS (1800) against `chainsense serve` on PostgreSQL (every
## core), reporting RSS, open files and anchoring lag every SOAK_REPORT_S (60) s, then a verdict
## against issue 16's targets (bench/_soak.py); SOAK_BACKENDS=sqlite,postgresql for both
soak: install
	$(PY) bench/load.py --soak $${SOAK_SECONDS:-1800} --backends $${SOAK_BACKENDS:-postgresql} \
		--rate $${SOAK_RATE:-100} --report-every $${SOAK_REPORT_S:-60}

## bench-ai: anomaly detection on SKAB (dev/test split, NAB and F1/FAR/MAR) and the synthetic suite
bench-ai: install
	$(PY) bench/skab.py
	$(PY) bench/detect.py

## bench-mqtt: MQTT ingest (200 devices, one reading per message) and the client comparison
bench-mqtt: install
	$(PY) bench/mqtt_clients.py
	$(PY) bench/mqtt.py

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .pytest_cache .mypy_cache .ruff_cache
