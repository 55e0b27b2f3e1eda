# suppress: `make run` serves on the embedded SQLite default; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install clean translations screenshots

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
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check suppress tests
	$(BIN)/mypy

# After changing a page's text: re-extract message ids, merge them into every catalog,
# translate the new entries in suppress/translations/*/LC_MESSAGES/messages.po, run again.
# The compiled .mo files are committed, so a fresh clone serves pages without a build step;
# tests/test_translations.py fails when a catalog is stale, incomplete or not compiled.
translations: install
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project=suppress \
		--version=1 --copyright-holder=suppress -o suppress/translations/messages.pot .
	$(BIN)/pybabel update -i suppress/translations/messages.pot -d suppress/translations \
		--width=100 --ignore-pot-creation-date
	$(BIN)/pybabel compile -d suppress/translations --statistics

# Re-take docs/unsubscribe-*.png with the real-browser test (Debian's /usr/bin/chromium).
screenshots: install
	SUPPRESS_SCREENSHOTS=docs $(BIN)/pytest -q tests/test_browser.py -k sqlite

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
