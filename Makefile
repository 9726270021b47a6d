# `make demo` and `make test` set themselves up: they install uv (pinned), then create .venv from uv.lock and
# nothing else, so what passed yesterday installs the same today.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV_HOME := .venv-uv
UV := $(UV_HOME)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install lock lock-check demo test test-fast test-laion lint format bench clean

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# `--locked` refuses to run when pyproject.toml and uv.lock disagree, instead of re-resolving against today's index.
# `--compile-bytecode` writes the .pyc files at install (about 35 s on 2 cores): where Python may not write them
# itself (PYTHONDONTWRITEBYTECODE, as on the CI machine; a read-only install), every process that imports torch
# and transformers compiled them from source again, some 7 s of CPU per server, CLI run or decoder process.
# (Not for the LAION environment below: its one test process imports far less than compiling everything costs.)
$(STAMP): pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --locked --quiet --compile-bytecode
	touch $@

install: $(STAMP)

# Re-resolves uv.lock after a change to pyproject.toml (`make lock UPGRADE=1` also moves pinned versions forward).
lock: | $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade)

lock-check: | $(UV)
	@$(UV) lock --check --quiet || { echo "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock" >&2; exit 1; }

demo: $(STAMP)
	$(BIN)/python -m api.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Parity with the `laion_clap` package itself, in its own environment: laion-clap pins numpy<2, while the main
# suite runs on numpy 2. Both are forks of the same uv.lock (pyproject.toml: [tool.uv] conflicts).
LAION_VENV := .venv-laion
$(LAION_VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(LAION_VENV) $(UV) sync --locked --quiet --no-default-groups --group laion
	touch $@

test-laion: $(LAION_VENV)/.installed
	SOUNDSEARCH_REQUIRE_LAION=1 $(LAION_VENV)/bin/python -m pytest -q tests/test_laion_checkpoint.py

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
	rm -rf $(VENV) $(LAION_VENV) $(UV_HOME) .pytest_cache .mypy_cache .ruff_cache *.egg-info
