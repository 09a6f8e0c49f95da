"""A test-host slot left by a killed set-up is taken over cleanly (real namespaces)."""
import subprocess
import time

import pytest

from tests.hosts import network

pytestmark = pytest.mark.engine


@pytest.fixture
def slot():
    index = network.lease("test_network")
    yield index
    network.remove_netns(index, 1)
    network.remove_bridge(index)
    network.release(index)


@pytest.mark.parametrize("named", [True, False], ids=["namespace-named", "name-removed"])
def test_a_namespace_still_in_use_by_a_killed_set_up_is_replaced(slot, named):
    # What a killed `make test` leaves: the namespace with a process of the old host in
    # it, which keeps the veth pair alive even once the name is gone (`ip netns del`).
    network.make_bridge(slot)
    ns = network.make_netns(slot, 1)
    old = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while not network.ip("netns", "pids", ns).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not named:
            network.ip("netns", "del", ns)
        assert network.ip("link", "show", network.veth_name(slot, 1), check=False).returncode == 0

        assert network.make_netns(slot, 1) == ns
        if named:
            assert old.wait(timeout=10) != 0                      # the old host's process was ended
        inside = network.ip("-n", ns, "-o", "-4", "addr", "show", "dev", "eth0").stdout
        assert network.host_address(slot, 1) in inside
    finally:
        if old.poll() is None:
            old.kill()
