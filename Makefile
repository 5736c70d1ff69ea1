# Every target bootstraps .venv from the project's own files first; the
# stamp makes that a no-op while pyproject.toml is unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench chaos clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/itbsc demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# The full crash trial (100,000 ServiceNow incidents, 20 kills per source) and every other
# reliability suite; `make test` runs them in a reduced form.
chaos: $(STAMP)
	ITBSC_CHAOS_FULL=1 $(BIN)/python -m pytest tests/chaos -s -q

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
