# One command for everything a contributor does. `make demo` and `make test` are the README's contract.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export BENTOML_DO_NOT_TRACK ?= true

.PHONY: setup browser demo test test-slow test-all fuzz bench lint format lock clean

setup: $(STAMP)

# Idempotent: re-installs only when pyproject.toml or constraints.txt change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The main job end to end on the embedded default (no Docker, no internet).
# DURATION=seconds runs unattended and stops by itself; Ctrl-C stops everything it started.
demo: setup
	$(BIN)/cryptovol demo $(if $(DURATION),--duration $(DURATION),)

# Default suite (fast); slow end-to-end tests run with `make test-slow`.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" -q

# Debian's Chromium for the browser test of the signal dashboard (Playwright drives it; nothing is
# downloaded by Playwright itself). Best effort: without it that one test skips with a message.
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium not installed: the dashboard browser test will skip"

test-slow: setup browser
	$(BIN)/python -m pytest -m slow -q

test-all: setup browser
	$(BIN)/python -m pytest -q

# Long property/fuzz run over the frame parser and the tick and feature-record decoders, and the
# service's OpenAPI schema against a real `bentoml serve` (the default suite runs the same tests
# with a few seconds' budget).
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest tests/fuzz tests/serving/test_serving_fuzz.py -q

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-resolve the pinned set from pyproject.toml in a scratch venv.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -e '.[dev]'
	( echo "# Exact versions of the whole dependency tree, resolved together (see ../shared/STACK.md)."; \
	  echo "# Regenerate after changing pyproject.toml: \`make lock\`."; \
	  .lockenv/bin/pip freeze --exclude-editable | grep -v '^cryptovol' ) > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
