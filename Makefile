# The two commands a newcomer needs: `make run` (the pipeline) and `make test` (the whole suite).
# Each sets itself up: a virtual environment in .venv, the package and its test extras, the broker jars.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test unit integration schemas bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/onduty up

test: $(VENV)/.installed
	$(BIN)/python -m pytest -ra

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -ra tests/unit

integration: $(VENV)/.installed
	$(BIN)/python -m pytest -ra tests/integration

schemas: $(VENV)/.installed
	$(BIN)/onduty schemas export

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Benchmarks (not tests): candidate vs ceiling in the same run; adds the run on top of bench/RESULTS.md, keeping the earlier
# ones. E.g. `make bench BENCH="processors --quick"` (a quick harness check: printed, not recorded).
bench: $(VENV)/.installed
	$(BIN)/python -m bench $(BENCH)
