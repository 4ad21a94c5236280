# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv bench clean

$(STAMP): pyproject.toml setup.py clockd/_chainlinks.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/clockd demo --dir demo

lint: $(STAMP)
	$(BIN)/ruff check clockd tests scripts
	$(BIN)/ruff format --check clockd tests scripts
	$(BIN)/mypy clockd tests

# Most tests run in parallel, three workers (many wait on processes, sockets and a browser, so
# a third worker keeps two cores busy); those marked `serial` (timing-sensitive, or many
# processes of their own) then run alone. The tests start many `clockd` processes:
# clockd's bytecode is compiled first, as an install does, so that none of them compiles it
# again where PYTHONDONTWRITEBYTECODE is set.
test: lint
	$(BIN)/python -m compileall -q clockd
	$(BIN)/python -m pytest -n 3 -m "not serial"
	$(BIN)/python -m pytest -m serial

bench: $(STAMP)
	$(BIN)/python scripts/bench/ingest.py
	$(BIN)/python scripts/bench/reports.py
	$(BIN)/python scripts/bench/emulator.py
	$(BIN)/python scripts/bench/table.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache build clockd/*.so
