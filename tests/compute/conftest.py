"""The compute cloud's story takes turns with another run's compute story, machine-wide,
but not with the demo's tests (tests/demo/conftest.py): it runs on test hosts of its own,
in a pytest of its own beside the demo's (scripts/test.sh) — mostly waiting on its hosts'
image imports, health gates and drains, not on the CPU."""
from __future__ import annotations

import os

import pytest

from tests.demo.conftest import turn

LOCK = os.environ.get("TIDEGATE_COMPUTE_TEST_LOCK", "/tmp/tidegate-openstack-compute-tests.lock")


@pytest.fixture(autouse=True)
def one_compute_story_at_a_time():
    with turn(LOCK, "compute cloud"):
        yield
