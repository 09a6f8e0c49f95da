# Two commands on a fresh Debian machine: `make demo` and `make test`.
# Each does its own set-up (scripts/setup.sh: system packages, .venv, pip install -e .[test]).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Engine tests are I/O bound (waiting on containers): more workers than cores pays.
WORKERS ?= 4
TEST_WORKERS ?= 3      # make test: beside the OpenStack stories' own run

.PHONY: setup test test-fast demo demo-down compute compute-down hosts hosts-down bench clean

setup:
	@scripts/setup.sh

# The OpenStack stories in their own pytest beside the rest (scripts/test.sh says why).
test: setup
	@WORKERS=$(TEST_WORKERS) PY=$(PY) PYTEST_ARGS="$(PYTEST_ARGS)" scripts/test.sh

# The pure core only (no engine): seconds.
test-fast: setup
	$(PY) -m pytest -n $(WORKERS) -m "not engine" $(PYTEST_ARGS)

demo: setup
	@scripts/demo.sh up

demo-down: setup
	@scripts/demo.sh down $(ARGS)

# The compute cloud (clouds/compute): Nova, Neutron, Glance with fake-driver computes.
compute: setup
	@scripts/compute.sh up

compute-down: setup
	@scripts/compute.sh down $(ARGS)

# Test hosts to try by hand: own rootfs, netns, sshd and engine each (tests/hosts/).
HOSTS ?= podman docker
hosts: setup
	$(PY) -m tests.hosts up $(HOSTS)

hosts-down: setup
	$(PY) -m tests.hosts down

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .tidegate *.egg-info
