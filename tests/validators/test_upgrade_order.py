"""Nova's documented upgrade order (validators/upgrade_order.yaml): conductor, then scheduler
and api, then computes. Which service is which component, the rule that holds a change to
the order (through the one judge), and the planner's waves for a commit that moves them all."""
from __future__ import annotations

from pathlib import Path

import yaml

from controller.desired import Observed, desired_state
from controller.plan import parallel_segments, plan
from validators import order
from validators.check import judge
from validators.load import load_cloud
from validators.model import build_service
from validators.tree import DirTree, MemoryTree

from .helpers import files

ROOT = Path(__file__).resolve().parents[2]
HINT = "upgrade nova-conductor first (Nova's order: conductor, then scheduler and api, then computes)"


def nova(component: str, release: str = "2025.1", **kw) -> dict:
    data = {"project": "nova", "release": release, "image": f"tidegate/nova:{release}",
            "command": [f"nova-{component}"], "replicas": 2, "health": {"type": "exec", "command": ["true"]},
            "upgrade": {"min_ready": 0}}
    if component == "compute":
        data.update(role="agent", max_per_host=1)
    data.update(kw)
    return data


def cloud(conductor="2025.1", scheduler="2025.1", api="2025.1", compute="2025.1") -> dict:
    return {"nova-conductor": nova("conductor", conductor), "nova-scheduler": nova("scheduler", scheduler),
            "nova-api": nova("api", api), "nova-compute": nova("compute", compute)}


def loaded(services: dict):
    return load_cloud(MemoryTree(files(services)), "c")


def verdict(base: dict, head: dict):
    """The one judge's error findings on the change base → head."""
    return [f for f in judge(loaded(head), loaded(base)) if f.severity == "error"]


def component(**data) -> str | None:
    return order.component(build_service("svc", {"project": "nova", "release": "2025.1", "image": "i", **data},
                                         {}, ("h1",)))


# -- which component a service is ---------------------------------------------------------

def test_a_service_is_a_component_by_its_command_else_by_its_name():
    assert component(command=["nova-conductor", "--config-file", "/etc/nova/nova.conf"]) == "conductor"
    assert component(command=["uwsgi", "--http-socket", ":8774", "--wsgi-file", "/usr/bin/nova-api-wsgi"]) == "api"
    assert component(command="exec nova-scheduler --config-file /etc/nova/nova.conf") == "scheduler"
    assert component(role="agent", command=["/usr/local/bin/start-compute"]) == "compute"
    assert component(command=["nova-novncproxy"]) is None              # not in Nova's order: not judged
    assert component() is None                                         # "svc": no command, unknown name
    named = build_service("nova-conductor", {"project": "nova", "release": "2025.1", "image": "i"}, {}, ("h1",))
    assert order.component(named) == "conductor"
    glance = build_service("glance-api", {"project": "glance", "release": "2025.1", "image": "i",
                                          "command": ["nova-api"]}, {}, ("h1",))
    assert order.component(glance) is None                             # another project's order


def test_the_multihost_example_nova_services_are_each_recognised():
    example = load_cloud(DirTree(ROOT), "multihost").cloud
    assert {name: order.component(svc) for name, svc in example.services.items() if svc.project == "nova"} == {
        "nova-api": "api", "nova-conductor": "conductor", "nova-scheduler": "scheduler", "nova-compute": "compute"}


# -- the rule, through the one judge -----------------------------------------------------------

def test_a_change_that_upgrades_computes_before_the_conductor_is_refused_with_a_hint():
    found = verdict(cloud(), cloud(compute="2026.1"))
    assert [f.rule for f in found] == ["compat.upgrade-order"]          # one finding, not two rules' worth
    [f] = found
    assert f.file == "clouds/c/services/nova-compute.yaml" and f.line is not None
    assert f.message == ("nova-compute (compute) runs 2026.1, newer than nova-conductor (conductor) at 2025.1: "
                         "Nova upgrades conductor, then scheduler and api, then computes")
    assert f.hint == HINT


def test_api_or_scheduler_before_the_conductor_is_refused_too():
    for early in ("api", "scheduler"):
        found = verdict(cloud(), cloud(**{early: "2026.1"}))
        assert [(f.rule, f.file) for f in found] == [("compat.upgrade-order", f"clouds/c/services/nova-{early}.yaml")]
        assert found[0].hint == HINT


def test_the_documented_order_passes_step_by_step_with_computes_one_slurp_behind():
    steps = [cloud(), cloud(conductor="2026.1"), cloud(conductor="2026.1", scheduler="2026.1", api="2026.1"),
             cloud("2026.1", "2026.1", "2026.1", "2026.1")]
    for base, head in zip(steps, steps[1:]):
        assert verdict(base, head) == [], (base, head)
    # a 2026.1 conductor serves 2025.1 computes ([upgrade_levels] compute = auto): fine as a state
    state = judge(loaded(steps[2]), None)
    assert not [f for f in state if f.rule in ("compat.upgrade-order", "compat.agent-lag",
                                               "compat.agent-leads-control")]


def test_computes_never_lead_the_api_either_and_a_revert_of_the_conductor_alone_is_refused():
    assert [f.file for f in verdict(cloud(conductor="2026.1"), cloud(conductor="2026.1", compute="2026.1"))] == [
        "clouds/c/services/nova-compute.yaml"]
    everything = cloud("2026.1", "2026.1", "2026.1", "2026.1")
    refused = [f for f in judge(loaded(cloud(conductor="2025.1", scheduler="2026.1", api="2026.1",
                                             compute="2026.1")), loaded(everything))
               if f.rule == "compat.upgrade-order"]
    assert sorted(f.file.rsplit("/", 1)[1] for f in refused) == ["nova-api.yaml", "nova-compute.yaml",
                                                                 "nova-scheduler.yaml"]


def test_projects_without_a_documented_order_keep_the_generic_agent_rule():
    services = {"neutron-server": {"project": "neutron", "release": "2025.1", "image": "n:2025.1"},
                "neutron-agent": {"project": "neutron", "role": "agent", "release": "2026.1", "image": "n:2026.1"}}
    found = [f.rule for f in judge(loaded(services), None) if f.severity == "error"]
    assert found == ["compat.agent-leads-control"]


# -- the planner's order ------------------------------------------------------------------

def desired(services: dict, commit="c0"):
    tree = files(services)
    tree["clouds/c/cloud.yaml"] = yaml.safe_dump({"name": "c", "hosts": {"ctl": {"engine": "podman"},
                                                                          "cmp1": {"engine": "podman"},
                                                                          "cmp2": {"engine": "podman"}}})
    for name in ("nova-conductor", "nova-scheduler", "nova-api"):
        data = yaml.safe_load(tree[f"clouds/c/services/{name}.yaml"])
        data["hosts"] = ["ctl"]
        tree[f"clouds/c/services/{name}.yaml"] = yaml.safe_dump(data)
    data = yaml.safe_load(tree["clouds/c/services/nova-compute.yaml"])
    data["hosts"] = ["cmp1", "cmp2"]
    tree["clouds/c/services/nova-compute.yaml"] = yaml.safe_dump(data)
    found = load_cloud(MemoryTree(tree), "c")
    assert found.cloud is not None, found.findings
    return desired_state(found.cloud, found.tree, commit)


def running(des) -> Observed:
    from controller.desired import Container
    return Observed(tuple(Container(host, f"{name}-{i}", f"{name}-{i}", name, i, ds.hash, str(ds.service.release),
                                    "running")
                          for name, ds in des.services.items() for i, host in enumerate(ds.service.placement)))


def test_one_commit_upgrading_nova_rolls_conductor_then_scheduler_and_api_then_computes_host_by_host():
    base = desired(cloud())
    head = desired(cloud("2026.1", "2026.1", "2026.1", "2026.1"))
    p = plan(head, running(base))
    assert [[sp.service for sp in wave] for wave in p.waves] == [
        ["nova-conductor"], ["nova-api", "nova-scheduler"], ["nova-compute"]]
    [compute] = p.waves[-1]
    # one compute at a time: every create, health gate and retirement of a host is its own segment
    hosts = [[chain[0].host for chain in segment] for segment in parallel_segments(compute.steps)
             if segment[0][0].action in ("create", "wait-healthy", "stop")]
    assert all(len(h) == 1 for h in hosts)
    creates = [s.host for s in compute.steps if s.action == "create"]
    assert creates == ["cmp1", "cmp2"]
    first_stop = next(i for i, s in enumerate(compute.steps) if s.action == "stop")
    second_create = [i for i, s in enumerate(compute.steps) if s.action == "create"][1]
    assert first_stop < second_create                  # cmp1 done before cmp2 begins


def test_a_revert_of_nova_rolls_back_in_the_reverse_order():
    up = desired(cloud("2026.1", "2026.1", "2026.1", "2026.1"))
    p = plan(desired(cloud()), running(up))
    assert [[sp.service for sp in wave] for wave in p.waves] == [
        ["nova-compute"], ["nova-api", "nova-scheduler"], ["nova-conductor"]]


def test_a_nova_revert_is_refused_even_before_contract_saying_why():
    # Nova's services write their versions into the database; 2025.1 code refuses to
    # start once 2026.1 ran (ServiceTooOld), as the compute cloud showed: fix forward.
    from validators.transition import Prior

    from .helpers import rules_of, transition_findings
    old, new = nova("conductor", "2025.1"), nova("conductor", "2026.1")
    prior = Prior(data=old, commit="c0ffee" * 6, contract_ran=False)
    found = transition_findings({"nova-conductor": new}, {"nova-conductor": old}, history={"nova-conductor": prior})
    bad = [f for f in found if f.rule == "transition.downgrade"]
    assert bad and "ServiceTooOld" in bad[0].message and "fix forward" in bad[0].hint
    # a project without that fact keeps its revert before contract (keystone's, in test_transition.py)
    keystone = {"project": "keystone", "release": "2025.1", "image": "tidegate/keystone:2025.1",
                "health": {"type": "tcp", "port": 5000}}
    newer = dict(keystone, release="2025.2", image="tidegate/keystone:2025.2")
    found = transition_findings({"ks": newer}, {"ks": keystone},
                                history={"ks": Prior(data=keystone, commit="c0ffee" * 6)})
    assert "transition.downgrade" not in rules_of(found)
