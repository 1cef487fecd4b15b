# codex-node: the two commands of the README, and a few helpers.
#
#   make run    install the node into .venv and run it (extra flags: make run ARGS="--api-port 8081")
#   make test   install the test dependencies (Python and the contracts' npm packages) and run the whole suite
#
# Installs are redone only when pyproject.toml or contracts/package-lock.json change (stamp files).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
# C sources compiled at install (setup.py): a change to one reinstalls, which recompiles it.
EXTENSIONS := setup.py codex_node/data/_keccak.c
# Test worker processes for `make test` (pytest-xdist, one test file per worker at a time); 0 runs every test in
# pytest's own process.
TEST_WORKERS ?= 2

.PHONY: run test install install-test lint typecheck pytest openapi clean

run: $(VENV)/.installed-run
	$(BIN)/codex-node run $(ARGS)

# Every check runs even when an earlier one fails, so one run reports everything; any failure fails the target.
test: $(VENV)/.installed-test contracts/node_modules/.installed
	@status=0; \
	echo "== ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "== mypy"; $(BIN)/mypy || status=1; \
	echo "== pytest"; $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile || status=1; \
	exit $$status

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test contracts/node_modules/.installed

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "codex-node needs Python 3.11 or newer: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml $(EXTENSIONS) | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(EXTENSIONS) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# Hardhat and solc-js for the contract and chain tests; the node itself needs no Node.js.
contracts/node_modules/.installed: contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund
	touch $@

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test contracts/node_modules/.installed
	$(BIN)/pytest $(ARGS)

openapi: $(VENV)/.installed-test
	$(BIN)/python scripts/gen_openapi.py

clean:
	rm -rf $(VENV) contracts/node_modules .pytest_cache .mypy_cache .ruff_cache
