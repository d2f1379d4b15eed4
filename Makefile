# The two commands: `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
BIN    := $(VENV)/bin
JS     := clients/js
NPM    ?= npm

.PHONY: run test lint typecheck unit sdk bench clean

$(BIN)/tacit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,spark]'
	touch $@

# The browser SDK (clients/js): node deps from the lockfile, then the ESM and script-tag
# builds; the build prints the bundle's gzipped size and fails above 8 KB. `make run`
# serves the built dist/tacit.min.js to the demo page at /demo.
$(JS)/node_modules/.package-lock.json: $(JS)/package-lock.json
	cd $(JS) && $(NPM) ci --no-audit --no-fund
	touch $@

$(JS)/dist/tacit.min.js: $(JS)/node_modules/.package-lock.json $(wildcard $(JS)/src/*.ts) $(JS)/scripts/build.mjs
	cd $(JS) && $(NPM) run build

run: $(BIN)/tacit $(JS)/dist/tacit.min.js
	$(BIN)/tacit serve --dev --demo --host $(HOST) --port $(PORT)

test: $(BIN)/tacit lint typecheck unit sdk

lint: $(BIN)/tacit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/tacit
	$(BIN)/mypy

unit: $(BIN)/tacit
	$(BIN)/pytest -n 2 --dist loadfile

# The SDK's unit tests (Vitest), its size check (in the build) and its end-to-end tests
# (Chromium against a real `tacit serve` from this venv; TACIT_REQUIRE_BROWSER=1 makes a
# missing Chromium a failure).
sdk: $(BIN)/tacit $(JS)/dist/tacit.min.js
	cd $(JS) && $(NPM) run typecheck && $(NPM) run test:unit
	cd $(JS) && TACIT_VENV=$(abspath $(VENV)) $(NPM) run test:e2e

bench: $(BIN)/tacit
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache $(JS)/node_modules $(JS)/dist
