"""The compute cloud spread over three machines (tests/compute/computehosts.py), judged
without an engine: every rule passes for the base and the Nova and Neutron upgrades, the
host names stay ctl, cmp1 and cmp2, each compute resolves by name what it calls on ctl,
and each API upgraded under load keeps a replica on two machines."""
from __future__ import annotations

from tests.compute.computecloud import NOVA, project_files, upgrade
from tests.compute.computehosts import spread
from validators.check import check_state, judge
from validators.load import load_cloud
from validators.tree import MemoryTree

HOSTS = {h: {"engine": "podman", "url": f"ssh://root@10.250.9.{i}/run/podman/podman.sock",
             "address": f"10.250.9.{i}", "known_hosts": "/nonexistent/known_hosts"}
         for i, h in enumerate(("ctl", "cmp1", "cmp2"), start=1)}


def loaded(files):
    out = load_cloud(MemoryTree({k: v for k, (v, _) in files.items()}), "spread")
    assert out.cloud is not None, out.findings
    return out


def test_the_spread_compute_cloud_and_its_upgrades_pass_every_rule():
    files = spread(project_files(), "spread", HOSTS)
    base = loaded(files)
    assert [str(f) for f in check_state(base)] == []
    nova = upgrade(files, "spread", NOVA)
    assert [str(f) for f in judge(loaded(nova), base)] == []
    neutron = upgrade(nova, "spread", ("neutron-server",))
    assert [str(f) for f in judge(loaded(neutron), loaded(nova))] == []


def test_computes_reach_the_control_plane_on_ctl_and_apis_span_two_machines():
    services = loaded(spread(project_files(), "spread", HOSTS)).cloud.services
    assert services["nova-compute"].placement == ("cmp1", "cmp2")
    ctl = HOSTS["ctl"]["address"]
    reach = dict(services["nova-compute"].reach)
    for name, port in (("rabbitmq", 5672), ("mariadb", 3306), ("memcached", 11211), ("keystone", 5000),
                       ("placement", 8778), ("glance", 9292)):
        assert reach[name] == ctl, name
        assert port in {p.host for p in services[name].published if p.on_host_address}, name
    assert {a for n, a in services["nova-compute"].reach if n == "neutron-server"} == {ctl, HOSTS["cmp2"]["address"]}
    assert services["nova-api"].placement == ("ctl", "cmp1")
    assert services["neutron-server"].placement == ("ctl", "cmp2")
    front = (loaded(spread(project_files(), "spread", HOSTS)).cloud.services["haproxy"])
    assert {n for n, _ in front.reach} >= {"nova-api-0", "nova-api-1", "neutron-server-0", "neutron-server-1"}
