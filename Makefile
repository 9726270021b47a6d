# `make demo` and `make test` set themselves up: they create .venv and install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast test-laion lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-installs only when pyproject.toml changes; otherwise a no-op.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m api.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Parity with the `laion_clap` package itself. Its own venv: laion-clap pins numpy<2, while the main
# suite runs on numpy 2.
LAION_VENV := .venv-laion
$(LAION_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LAION_VENV)
	$(LAION_VENV)/bin/python -m pip install -q --upgrade pip
	$(LAION_VENV)/bin/python -m pip install -q -e '.[dev,laion]'
	touch $@

test-laion: $(LAION_VENV)/.installed
	$(LAION_VENV)/bin/python -m pytest -q tests/test_laion_checkpoint.py

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_decode
	$(BIN)/python -m benchmarks.bench_encoder
	$(BIN)/python -m benchmarks.bench_index
	$(BIN)/python -m benchmarks.bench_search
	$(BIN)/python -m benchmarks.bench_tagger
	$(BIN)/python -m benchmarks.bench_synth

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
