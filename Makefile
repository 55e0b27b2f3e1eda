# suppress: `make run` serves on the embedded SQLite default; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install clean

$(BIN)/suppress: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/suppress

# First run: secrets (0600) in instance/, schema, first admin key (printed once); then serve.
run: install
	$(BIN)/suppress init
	$(BIN)/suppress serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check suppress tests
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check suppress tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
