# Two commands on a fresh Debian machine: `make demo` and `make test`.
# Each does its own set-up (scripts/setup.sh: system packages, .venv, pip install -e .[test]).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Engine tests are I/O bound (waiting on containers): more workers than cores pays.
WORKERS ?= 4

.PHONY: setup test test-fast demo demo-down bench clean

setup:
	@scripts/setup.sh

test: setup
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The pure core only (no engine): seconds.
test-fast: setup
	$(PY) -m pytest -n $(WORKERS) -m "not engine" $(PYTEST_ARGS)

demo: setup
	@scripts/demo.sh up

demo-down: setup
	@scripts/demo.sh down $(ARGS)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .tidegate *.egg-info
