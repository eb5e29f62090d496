# productmatch: `make run` serves the API on the embedded default; `make test` passes the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test lint bench eval worker clean

install: $(VENV)/.installed

# torch first and pinned: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

run: install
	$(BIN)/productmatch serve --host $(HOST) --port $(PORT)

worker: install
	$(BIN)/productmatch worker

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app models training tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf var test-output
