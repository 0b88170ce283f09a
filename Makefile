# Two entry points: `make run` (the API on ./bank.db, port 8000) and `make test` (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

run: $(INSTALLED)
	$(BIN)/bank serve

test: lint typecheck pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy --strict bank web cli tests bench

# pytest exits 5 when it collects no tests (say, a -k filter that matches
# nothing): that is not a failure, so it is mapped to success here.
pytest: $(INSTALLED)
	$(BIN)/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Reinstall whenever pyproject.toml changes; the stamp keeps repeat runs fast.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# Figures and ratios against the database's own limits; a report, not a gate.
bench: $(INSTALLED)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
