# cloche: two commands matter. `make run` serves, `make test` proves it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_DIRS := $(wildcard src tests bench scripts)

.PHONY: run test lint typecheck unit bench bench-corpus clean setup postgres-tools runsc display

setup: $(STAMP)

# The venv is rebuilt whenever the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

# gVisor's runsc (Debian 12's package) for the "gvisor" isolation tier: the tests run both tiers.
runsc:
	command -v runsc >/dev/null || { apt-get update -q && apt-get install -y -q runsc; }

# Xvfb and tkinter for environments whose imports need an X display (pyautogui, pynput): each such run starts a
# virtual display of its own inside its jail (docs/isolation.md).
display:
	{ command -v Xvfb && /usr/bin/python3 -c 'import tkinter'; } >/dev/null 2>&1 || \
		{ apt-get update -q && apt-get install -y -q xvfb python3-tk; }

run: setup runsc display
	$(BIN)/cloche serve

lint: setup
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: setup
	$(BIN)/mypy

unit: setup runsc display
	$(BIN)/pytest

# The suite starts its own throwaway PostgreSQL cluster; its binaries are installed here when missing.
postgres-tools:
	scripts/ensure_postgres.sh

test: lint typecheck postgres-tools unit

bench: setup runsc
	$(BIN)/python -m bench

# The real-script corpora (bench/corpus/): import-clean rates beside pipreqs + uv and npm install, and the import
# resolver's added latency (a mapped import; a long-tail import verified with PyPI, then cached).
bench-corpus: setup
	$(BIN)/python -m bench --only resolve,corpus

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
