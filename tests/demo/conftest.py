"""The tests that run the whole OpenStack demo (MariaDB, Keystone, Placement, HAProxy) take
turns, machine-wide: two of them upgrading Placement in the same second on a 2-core machine,
beside the other xdist workers, starved a new replica's uwsgi so long (its socket accepts
before the application has loaded, and HAProxy 3.0 routes to a freshly resolved address
before its first check) that a probe request sent to it timed out after 10 s — both tests
failed at once (make test, stop 13). An flock, not `xdist_group`: with pytest 9.2,
`--dist loadgroup` no longer keeps a group on one worker (measured: four grouped 3 s tests
ran on four workers in 5.9 s). Among xdist workers the lock idled them, so `make test`
runs these tests (marker `openstack`, tests/conftest.py) in a pytest of their own
(scripts/test.sh); the lock still keeps two runs on one machine apart."""
from __future__ import annotations

import fcntl
import os
import time

import pytest

LOCK = os.environ.get("TIDEGATE_DEMO_TEST_LOCK", "/tmp/tidegate-openstack-demo-tests.lock")


@pytest.fixture(autouse=True)
def one_openstack_demo_at_a_time():
    with open(LOCK, "a") as f:
        t0 = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.monotonic() - t0
        if waited > 1:
            print(f"waited {waited:.0f}s for another OpenStack demo test to finish")
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
