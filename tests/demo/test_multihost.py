"""Issue 14's story on hosts that are separate machines: the demo's services spread over
three test hosts (podman, docker, podman), reached only over ssh://. Converges, shares
Keystone's keys across machines, upgrades Placement across hosts under load with 0 failed
requests through the front, and converges back on a revert. One test: the images and the
hosts are the expensive part."""
from __future__ import annotations

import time

import pytest

from tests.hosts import route_device

from .multihost import MultiHostCloud
from .test_demo import under_load       # the same load: two placement clients, one keystone

pytestmark = pytest.mark.engine


def test_the_demo_over_three_machines_upgrades_placement_across_hosts_and_reverts(test_hosts, tmp_path):
    hostset = test_hosts(3, ("podman", "docker", "podman"))
    for h in hostset:                 # nothing is sent before the route is known to be ours
        assert route_device(h.address) == hostset.bridge, h.address
    cloud = MultiHostCloud(tmp_path, hostset)
    try:
        built = cloud.build_images()
        print("images per host (s):", {h: round(s, 1) for h, s in built.items()})
        t0 = time.monotonic()
        status = cloud.reconcile(cloud.base)
        print(f"first deploy over 3 machines: {time.monotonic() - t0:.1f} s")
        assert status.condition() == "Ready", status.render()
        assert {h: [c.name for c in cs] != [] for h, cs in cloud.containers("placement").items()} == \
            {hostset[0].name: False, hostset[1].name: True, hostset[2].name: True}
        assert all(h["reachable"] and h["engine"].startswith(h_kind) for h, h_kind in
                   ((status.hosts[x.name], x.kind) for x in hostset)), status.hosts

        # Keystone's keys are the cloud's, not each machine's: a token issued through the
        # front validates on the replica of every host.
        token = cloud.token()
        assert [cloud.validates(cloud.replica_url("keystone", r), token) for r in (0, 1)] == [200, 200]

        upgrade = cloud.commit_upgrade()
        status, load = under_load(cloud, lambda: cloud.reconcile(upgrade))
        assert status.condition() == "Ready" and status.last_applied_revision == upgrade, status.render()
        assert load.failed == 0 and load.during >= 200, "\n".join([load.summary(), *load.errors(), cloud.front_log(),
                                                                   *cloud.steps[-40:]])
        assert cloud.placement_versions() == {hostset[1].name: {"15.0.0"}, hostset[2].name: {"15.0.0"}}

        revert = cloud.revert(upgrade)
        status, load = under_load(cloud, lambda: cloud.reconcile(revert))
        assert status.condition() == "Ready" and status.last_applied_revision == revert, status.render()
        assert load.failed == 0, "\n".join([load.summary(), *load.errors(), cloud.front_log(), *cloud.steps[-40:]])
        assert cloud.placement_versions() == {hostset[1].name: {"13.0.0"}, hostset[2].name: {"13.0.0"}}
    finally:
        cloud.teardown()
