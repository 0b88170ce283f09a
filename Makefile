# Two entry points: `make run` (the API on ./bank.db, port 8000) and `make test` (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench mutation clean

run: $(INSTALLED)
	$(BIN)/bank serve

test: lint typecheck pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy --strict bank web cli tests bench mutation

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

# Mutation testing (not part of `make test`): every rule of bank/ and web/
# changed one at a time against the fast tests; prints the score per module.
# `make mutation MODULES="bank/domain.py web/errors.py"` runs only those;
# MUTATION_ARGS=--report-only prints the last results again.
# CPython 3.10 and 3.11 can crash in ContextVar.set under mutmut's trampolines
# (a garbage-collection bug in its HAMT, python/cpython#148891), so this takes
# the first Python 3.12 or newer it finds; MUTATION_PYTHON=... chooses one.
MUTATION_VENV := .venv-mutation
MUTATION_PYTHON ?= $(firstword $(foreach p,$(PYTHON) python3.14 python3.13 python3.12 \
	$(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3), \
	$(shell $(p) -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && echo $(p))))
mutation: $(MUTATION_VENV)/.installed
	$(MUTATION_VENV)/bin/python -m mutation $(MUTATION_ARGS) $(MODULES)

$(MUTATION_VENV)/.installed: pyproject.toml
	@test -n "$(MUTATION_PYTHON)" || { echo "make mutation needs Python 3.12 or newer (MUTATION_PYTHON=...)"; exit 1; }
	test -x $(MUTATION_VENV)/bin/python || $(MUTATION_PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MUTATION_VENV)/bin/python -m pip install --quiet -e '.[dev,mutation]'
	touch $@

clean:
	rm -rf $(VENV) $(MUTATION_VENV) mutants .mypy_cache .pytest_cache .ruff_cache
