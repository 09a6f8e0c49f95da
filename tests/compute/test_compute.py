"""The compute cloud on test hosts that are separate machines (issue #15), the whole story
as one test: real Nova 31, Neutron 26, Glance 30, Placement and Keystone 2025.1 from Debian
packages, the control plane on host ctl and a fake-driver compute on each of cmp1 and cmp2
(three test hosts, podman, reached only over ssh://: computehosts.py), deployed and
bootstrapped from the cloud's files by the controller; a flavor, a Glance image, a Neutron
network, subnet and port, and a server on each compute; then the Nova 2025.1 → 2026.1
upgrade as one commit (conductor, then scheduler and API, then the computes one host at a
time, each disabled and its builds finished before it stops) while a load client lists
servers through the front and another builds servers: 0 failed, every server still ACTIVE on its host, a
new server boots; the contract (online data migrations); the Neutron upgrade (a second
commit) and its revert under load on Neutron's API; and Nova's revert, refused by check
(Nova refuses older services once newer ones ran — ServiceTooOld — so check refuses a Nova
downgrade before or after the contract: README, the compute cloud).

Requests go only to the front's ports on ctl's address, once `ip route get` says that
address is on the test hosts' bridge. Prints the issue's figures: images per host, the
first deploy, each upgrade's and the revert's time and load, and each compute host's
replacement (its old nova-compute's stop to its successor's health gate)."""
from __future__ import annotations

import time

import pytest

from tests.hosts import route_device

from .builds import Builds
from .computecloud import NOVA
from .computehosts import HostsComputeCloud
from .osclient import Failed

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def servers_on_their_hosts(cloud, servers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """server id -> (status, host) as Nova reports them."""
    out = {}
    for sid in servers:
        s = cloud.client.server(sid)
        out[sid] = (s["status"], s["OS-EXT-SRV-ATTR:host"])
    return out


def boot_and_check(cloud, name, flavor, image, host, attempts: int = 4) -> str:
    """A server pinned to `host`, ACTIVE there. NoValidHost is tried again (at most
    `attempts` times, 10 s apart): the scheduler learns a compute's cell by its periodic
    discovery (every 10 s, config/nova/nova.conf) — seen once in a test run, just after
    both computes were up and in Placement."""
    for attempt in range(1, attempts + 1):
        sid = cloud.client.boot(name, flavor, image, host)
        try:
            server = cloud.client.wait_active(sid)
        except Failed as err:
            if "No valid host" not in str(err) or attempt == attempts:
                raise
            cloud.client.delete_server(sid)
            time.sleep(10)
            continue
        assert server["OS-EXT-SRV-ATTR:host"] == host, server
        return sid


def where(cloud, service: str) -> list[str]:
    """The hosts (their engines) running a replica of `service`."""
    return sorted(engine.host for engine, _ in cloud.containers(service))


def why(cloud, load) -> str:
    """What a load assertion shows: the load, its errors, the front's log, the steps."""
    return "\n".join([load.summary(), *load.errors, cloud.front_log(), *cloud.timings.lines])


def timed(cloud, rev: str) -> tuple:
    """Converge `rev`; (status, seconds), the executor's step times in cloud.timings."""
    cloud.timings.clear()
    t0 = time.monotonic()
    status = cloud.reconcile(rev)
    return status, time.monotonic() - t0


def test_compute_cloud_over_three_machines_deploys_upgrades_nova_and_neutron_with_servers_alive(test_hosts,
                                                                                                  tmp_path):
    hostset = test_hosts(3, ("podman",))
    for h in hostset:                 # nothing is sent before the route is known to be ours
        assert route_device(h.address) == hostset.bridge, h.address
    cloud = HostsComputeCloud(tmp_path, hostset)
    c = cloud.client
    try:
        built = cloud.build_images()
        print("images per host (s):", {h: round(s, 1) for h, s in built.items()})
        status, seconds = timed(cloud, cloud.base)
        print(f"first deploy over ctl, cmp1, cmp2: {seconds:.1f} s")
        assert status.condition() == "Ready", status.render()
        assert all(status.hosts[h]["reachable"] for h in ("ctl", "cmp1", "cmp2")), status.hosts
        assert {s: where(cloud, s) for s in ("nova-compute", "nova-conductor", "nova-api", "neutron-server")} == {
            "nova-compute": ["cmp1", "cmp2"], "nova-conductor": ["ctl"],
            "nova-api": ["cmp1", "ctl"], "neutron-server": ["cmp2", "ctl"]}
        assert cloud.version("nova-conductor") == {"31.0.0"}
        cloud.wait_computes_up()

        # Resources of every API, and a server on each compute.
        flavor = c.flavor("tiny")
        image = c.image("tiny", b"\0" * 4096)
        network, _subnet = c.network("net1", "10.30.0.0/24")
        port = c.port("port1", network)
        assert port["fixed_ips"] and port["binding:vif_type"] == "unbound"   # no agent binds it here
        servers = {boot_and_check(cloud, f"before-{h}", flavor, image, h): h for h in ("cmp1", "cmp2")}

        # Nova 2025.1 → 2026.1: one commit, under load — servers listed through the front,
        # and servers built all along. Each compute is disabled and its builds finish
        # before it stops (its pre-stop), and it is enabled again once its successor serves.
        upgrade = cloud.commit_upgrade(NOVA, "nova: 2025.1 → 2026.1")
        with cloud.load() as load, Builds(c, flavor, image) as builds:
            status, seconds = timed(cloud, upgrade)
        print(f"nova upgrade: {seconds:.1f} s, {load.summary()}; builds: {builds.summary()}")
        print("  per service (s):", {s: round(t, 1) for s, t in sorted(cloud.timings.per_service().items())})
        print("  nova-compute per host (s):",
              {h: round(t, 1) for h, t in cloud.timings.per_host("nova-compute").items()})
        # drains: each compute (its builds finished), each API replica (out of the front)
        drained = {(svc, host): round(t1 - t0, 1) for svc, host, action, t0, t1 in cloud.timings.spans
                   if action == "pre-stop"}
        print("  pre-stop per service and host (s):", drained)
        assert status.condition() == "Ready" and status.last_applied_revision == upgrade, status.render()
        assert {s: cloud.version(s) for s in NOVA} == {s: {"33.0.2"} for s in NOVA}
        assert load.failed == 0 and load.ok > 0, why(cloud, load)
        assert not builds.failed and builds.ok > 0, (builds.summary(), builds.failed)
        assert sorted(drained) == [("nova-api", "cmp1"), ("nova-api", "ctl"), ("nova-compute", "cmp1"),
                                   ("nova-compute", "cmp2")], cloud.timings.lines
        assert c.compute_status() == {"cmp1": "enabled", "cmp2": "enabled"}
        cloud.wait_computes_up()
        assert servers_on_their_hosts(cloud, servers) == {sid: ("ACTIVE", h) for sid, h in servers.items()}
        servers[boot_and_check(cloud, "after-upgrade", flavor, image, "cmp2")] = "cmp2"
        assert c.get("neutron", f"/v2.0/ports/{port['id']}")["port"]["id"] == port["id"]

        # The contract: online data migrations once every Nova service runs 2026.1. It
        # closes the rollback window, and a revert is then refused by check.
        status = cloud.contract("nova-compute")
        assert status.condition() == "Ready" and not status.pending_contract, status.render()
        assert servers_on_their_hosts(cloud, servers) == {sid: ("ACTIVE", h) for sid, h in servers.items()}
        last = boot_and_check(cloud, "after-contract", flavor, image, "cmp1")
        c.delete_server(last)

        # Neutron 2025.1 → 2026.1, the second commit: expand before the first new server;
        # then its revert (before the contract), both under load on Neutron's API.
        neutron = cloud.commit_upgrade(("neutron-server",), "neutron: 2025.1 → 2026.1")
        with cloud.load("neutron", "/v2.0/networks") as load:
            status, seconds = timed(cloud, neutron)
        print(f"neutron upgrade: {seconds:.1f} s, {load.summary()}")
        assert status.condition() == "Ready" and status.last_applied_revision == neutron, status.render()
        assert cloud.version("neutron-server") == {"28.0.1"}
        assert load.failed == 0, why(cloud, load)
        assert c.get("neutron", f"/v2.0/ports/{port['id']}")["port"]["network_id"] == network
        c.network("net2", "10.31.0.0/24")
        back = cloud.revert(neutron)
        with cloud.load("neutron", "/v2.0/networks") as load:
            status, seconds = timed(cloud, back)
        print(f"neutron revert: {seconds:.1f} s, {load.summary()}")
        assert status.condition() == "Ready" and status.last_applied_revision == back, status.render()
        assert cloud.version("neutron-server") == {"26.0.3"}
        assert load.failed == 0, why(cloud, load)
        assert {n["name"] for n in c.get("neutron", "/v2.0/networks")["networks"]} >= {"net1", "net2"}
        c.network("net3", "10.32.0.0/24")

        # Nova's revert: refused by check (Nova has no downgrade), nothing changes.
        revert = cloud.revert(upgrade)
        status = cloud.reconcile(revert)
        assert status.last_applied_revision == back and "transition.downgrade" in status.render(), status.render()
    finally:
        cloud.teardown()
