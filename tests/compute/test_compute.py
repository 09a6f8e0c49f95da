"""The compute cloud on a real engine (issue #15), the whole story as one test: real Nova
31, Neutron 26, Glance 30, Placement and Keystone 2025.1 from Debian packages, with
fake-driver computes on two hosts, deployed and bootstrapped from the cloud's files by the
controller; a flavor, a Glance image, a Neutron network, subnet and port, and a server on
each compute; then the Nova 2025.1 → 2026.1 upgrade as one commit (conductor, then
scheduler and API, then the computes one host at a time) while a load client lists
servers through the front: 0 failed requests, every server still ACTIVE on its host, a
new server boots; the contract (online data migrations); the Neutron upgrade (a second
commit) and its revert under load on Neutron's API; and Nova's revert, refused by check
(Nova refuses older services once newer ones ran — ServiceTooOld — so check refuses a Nova
downgrade before or after the contract: README, the compute cloud).

Runs under a unique cloud name with free host ports, beside a `make compute`."""
from __future__ import annotations

import time

import pytest

from .builds import Builds
from .computecloud import NOVA, ComputeCloud
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


@pytest.mark.parametrize("kind", ["podman"])
def test_compute_cloud_deploy_nova_and_neutron_upgrades_with_servers_alive(engine, tmp_path):
    cloud = ComputeCloud(tmp_path, engine)
    c = cloud.client
    try:
        cloud.build_images()
        status = cloud.reconcile(cloud.base)
        assert status.condition() == "Ready", status.render()
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
        hooks = []

        def progress(event, step, detail):
            if step.action == "pre-stop" or (step.action == "wait-healthy" and step.service == "nova-compute"):
                hooks.append((event, step.action, step.container, detail))
        with cloud.load() as load, Builds(c, flavor, image) as builds:
            status = cloud.reconcile(upgrade, progress=progress)
        print(f"nova upgrade: {load.summary()}; builds: {builds.summary()}; compute steps: {hooks}")
        assert status.condition() == "Ready" and status.last_applied_revision == upgrade, status.render()
        assert {s: cloud.version(s) for s in NOVA} == {s: {"33.0.2"} for s in NOVA}
        assert load.failed == 0 and load.ok > 0, (load.summary(), load.errors)
        assert not builds.failed and builds.ok > 0, (builds.summary(), builds.failed)
        assert [h[1] for h in hooks if h[0] == "done"].count("pre-stop") == 2, hooks
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
            status = cloud.reconcile(neutron)
        print(f"neutron upgrade: {load.summary()}")
        assert status.condition() == "Ready" and status.last_applied_revision == neutron, status.render()
        assert cloud.version("neutron-server") == {"28.0.1"} and load.failed == 0, (load.summary(), load.errors)
        assert c.get("neutron", f"/v2.0/ports/{port['id']}")["port"]["network_id"] == network
        c.network("net2", "10.31.0.0/24")
        back = cloud.revert(neutron)
        with cloud.load("neutron", "/v2.0/networks") as load:
            status = cloud.reconcile(back)
        print(f"neutron revert: {load.summary()}")
        assert status.condition() == "Ready" and status.last_applied_revision == back, status.render()
        assert cloud.version("neutron-server") == {"26.0.3"} and load.failed == 0, (load.summary(), load.errors)
        assert {n["name"] for n in c.get("neutron", "/v2.0/networks")["networks"]} >= {"net1", "net2"}
        c.network("net3", "10.32.0.0/24")

        # Nova's revert: refused by check (Nova has no downgrade), nothing changes.
        revert = cloud.revert(upgrade)
        status = cloud.reconcile(revert)
        assert status.last_applied_revision == back and "transition.downgrade" in status.render(), status.render()
    finally:
        cloud.teardown()
