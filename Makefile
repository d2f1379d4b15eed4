# The two commands: `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck unit bench clean

$(BIN)/tacit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	touch $@

run: $(BIN)/tacit
	$(BIN)/tacit serve --dev --demo --host $(HOST) --port $(PORT)

test: $(BIN)/tacit lint typecheck unit

lint: $(BIN)/tacit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/tacit
	$(BIN)/mypy

unit: $(BIN)/tacit
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(BIN)/tacit
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
