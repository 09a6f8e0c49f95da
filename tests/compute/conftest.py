"""The compute cloud's test takes its turn with the OpenStack demo's tests, machine-wide
(the same lock: tests/demo/conftest.py says why)."""
from tests.demo.conftest import one_openstack_demo_at_a_time  # noqa: F401  (autouse fixture)
