# Everything installs into .venv from a fresh clone with only python3, pip and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test check demo sim bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest --numprocesses=auto --maxprocesses=2

check: $(STAMP)
	$(BIN)/ruff check notifier tests bench
	$(BIN)/ruff format --check notifier tests bench
	$(BIN)/mypy notifier

demo: $(STAMP)
	$(BIN)/notifier demo

sim: $(STAMP)
	$(BIN)/notifier sim

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/rules_throughput.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/e2e_throughput.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/subscriptions_fanout.py
	$(BIN)/python bench/fuzz.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
