# suppress: `make run` serves on the embedded SQLite default; `make test` runs the whole suite,
# `make quick` all but the slow tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The wheel the end-to-end tests run, installed into a venv of its own (never the work tree).
WHEEL_VENV ?= .venv-wheel
# pytest-xdist workers; PYTEST_WORKERS=0 runs the suite in this one process. Tests are handed
# out one at a time, in order, to whichever worker is free: the slow ones (first, see
# tests/conftest.py) spread over both workers instead of queueing on one.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist load --maxschedchunk 1

.PHONY: run test quick lint install install-test wheel clean translations screenshots

# The runtime alone: what `make run` needs.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	@touch $@

# The test tools on top (pytest, hypothesis, ruff, mypy, playwright, schemathesis).
$(VENV)/.test: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.runtime
install-test: $(VENV)/.test

# Build the wheel from this tree and install it, with its dependencies, into a fresh venv.
wheel: $(VENV)/.runtime
	rm -rf dist $(WHEEL_VENV)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install --quiet dist/suppress-*.whl

# First run: secrets (0600) in instance/, schema, first admin key (printed once); then serve.
run: install
	$(BIN)/suppress init
	$(BIN)/suppress serve --host $(HOST) --port $(PORT)

# Lint, types, then the whole suite (what CI runs); subprocess tests start the installed
# wheel's `suppress`.
test: install-test wheel
	$(BIN)/ruff check suppress tests
	$(BIN)/mypy
	SUPPRESS_TEST_PYTHON=$(abspath $(WHEEL_VENV))/bin/python $(PYTEST) --durations=15 $(PYTEST_ARGS)

# Everything but the tests marked slow (fault loops, process races, long property searches),
# against this work tree: the subset to run while changing code.
quick: install-test
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check suppress tests
	$(BIN)/mypy

# After changing a page's text: re-extract message ids, merge them into every catalog,
# translate the new entries in suppress/translations/*/LC_MESSAGES/messages.po, run again.
# The compiled .mo files are committed, so a fresh clone serves pages without a build step;
# tests/test_translations.py fails when a catalog is stale, incomplete or not compiled.
translations: install-test
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project=suppress \
		--version=1 --copyright-holder=suppress -o suppress/translations/messages.pot .
	$(BIN)/pybabel update -i suppress/translations/messages.pot -d suppress/translations \
		--width=100 --ignore-pot-creation-date
	$(BIN)/pybabel compile -d suppress/translations --statistics

# Re-take docs/unsubscribe-*.png, preferences-*.png and console-*.png with the real-browser
# tests (Debian's /usr/bin/chromium).
screenshots: install-test
	SUPPRESS_SCREENSHOTS=docs $(BIN)/pytest -q tests/test_browser.py tests/test_console_browser.py -k sqlite

clean:
	rm -rf $(VENV) $(WHEEL_VENV) dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
