"""The planner is pure: these tests need no engine and no clock. They read as the
behaviour an operator relies on during an upgrade."""
from __future__ import annotations

from dataclasses import replace

import yaml

from controller.desired import Container, Observed, desired_state
from controller.plan import plan
from validators.load import load_cloud
from validators.tree import MemoryTree

CLOUD = {"name": "c", "hosts": {"h1": {"engine": "podman"}, "h2": {"engine": "podman"}}}


def svc(release="2025.1", **kw):
    data = {"project": kw.pop("project", "placement"), "release": release, "image": f"img:{release}",
            "replicas": 2, "health": {"type": "http", "port": 8778}}
    data.update(kw)
    return data


def desired(services: dict, cloud=None, files=None, commit="c0"):
    tree = {"clouds/c/cloud.yaml": yaml.safe_dump(cloud or CLOUD)}
    tree.update({f"clouds/c/services/{n}.yaml": yaml.safe_dump(d) for n, d in services.items()})
    tree.update(files or {})
    loaded = load_cloud(MemoryTree(tree), "c")
    assert loaded.cloud is not None, loaded.findings
    return desired_state(loaded.cloud, loaded.tree, commit)


def apply(p, observed: Observed, des, healthy=lambda step: True) -> Observed:
    """Execute a plan on an in-memory cloud (the pure core's fake executor)."""
    containers = {c.name: c for c in observed.containers}
    for step in p.steps:
        if step.action == "create":
            ds = des.services[step.service]
            containers[step.container] = Container(step.host, step.container, step.container, step.service,
                                                   step.replica, ds.hash, str(ds.service.release), "running")
        elif step.action == "remove":
            containers.pop(step.container, None)
    return Observed(tuple(containers.values()), observed.unreachable)


def converge(des, observed=Observed()):
    p = plan(des, observed)
    return p, apply(p, observed, des)


def actions(sp):
    return [s.action for s in sp.steps]


def test_first_deploy_creates_every_replica_and_runs_bootstrap():
    des = desired({"placement": svc(bootstrap=[{"command": ["placement-manage", "db", "sync"]}])})
    p = plan(des, Observed())
    [[sp]] = p.waves
    assert sp.change == "deploy" and sp.phases == ("bootstrap",)
    assert actions(sp).index("job") < actions(sp).index("create")
    assert sorted((s.host, s.replica) for s in sp.steps if s.action == "create") == [("h1", 0), ("h2", 1)]


def test_converged_cloud_plans_nothing():
    des = desired({"placement": svc(), "keystone": svc(project="keystone")})
    _, observed = converge(des)
    again = plan(des, observed)
    assert again.empty and set(again.untouched) == {"placement", "keystone"}


def test_upgrading_one_service_touches_no_other():
    before = desired({"placement": svc(), "keystone": svc(project="keystone")})
    _, observed = converge(before)
    after = desired({"placement": svc("2026.1"), "keystone": svc(project="keystone")})
    p = plan(after, observed)
    assert [sp.service for wave in p.waves for sp in wave] == ["placement"]
    assert p.untouched == ("keystone",)
    assert all(s.service == "placement" for s in p.steps)


def test_rolling_upgrade_starts_successor_before_retiring_predecessor():
    _, observed = converge(desired({"placement": svc()}))
    up = desired({"placement": svc("2026.1", upgrade={"jobs": {
        "expand": [{"command": ["x"]}], "migrate": [{"command": ["y"]}], "contract": [{"command": ["z"]}]}})})
    [[sp]] = plan(up, observed).waves
    assert sp.change == "upgrade" and sp.strategy == "surge" and sp.out_at_once == 0
    assert sp.phases == ("expand", "migrate", "contract")
    seq = [(s.action, s.replica, s.phase) for s in sp.steps if s.action not in ("network", "image")]
    assert seq[:2] == [("job", None, "expand"), ("job", None, "migrate")]
    assert seq[-1] == ("job", None, "contract")
    for replica in (0, 1):
        mine = [a for a, r, _ in seq if r == replica]
        assert mine == ["create", "wait-healthy", "stop", "drain", "remove"]


def test_max_unavailable_sets_the_batch_size():
    _, observed = converge(desired({"placement": svc(replicas=4)}))
    [[sp]] = plan(desired({"placement": svc("2025.2", replicas=4, upgrade={"max_unavailable": 2})}), observed).waves
    creates = [i for i, s in enumerate(sp.steps) if s.action == "create"]
    removes = [i for i, s in enumerate(sp.steps) if s.action == "remove"]
    assert creates[1] < removes[0] < creates[2]     # two at a time


def test_host_ports_force_in_place_replacement_within_max_unavailable():
    _, observed = converge(desired({"haproxy": svc(project="haproxy", ports=["8778:8778"])}))
    [[sp]] = plan(desired({"haproxy": svc("2025.2", project="haproxy", ports=["8778:8778"])}), observed).waves
    assert sp.strategy == "in-place" and sp.out_at_once == 1
    seq = [(s.action, s.replica) for s in sp.steps if s.action not in ("network", "image")]
    assert seq[:5] == [("stop", 0), ("drain", 0), ("remove", 0), ("create", 0), ("wait-healthy", 0)]


def test_in_place_strategy_stops_a_computes_predecessor_before_its_successor_starts():
    """A Nova compute is its host: its successor must never run beside it (two services
    of one identity on one message queue), and the hosts go one at a time."""
    compute = {"project": "nova", "role": "agent", "upgrade": {"strategy": "in-place"}}
    _, observed = converge(desired({"compute": svc(**compute)}))
    [[sp]] = plan(desired({"compute": svc("2025.2", **compute)}), observed).waves
    assert sp.strategy == "in-place" and sp.out_at_once == 1
    seq = [(s.action, s.host) for s in sp.steps if s.action not in ("network", "image")]
    assert seq == [("stop", "h1"), ("drain", "h1"), ("remove", "h1"), ("create", "h1"), ("wait-healthy", "h1"),
                   ("stop", "h2"), ("drain", "h2"), ("remove", "h2"), ("create", "h2"), ("wait-healthy", "h2")]


def test_recreate_stops_all_before_starting():
    _, observed = converge(desired({"db": svc(project="mariadb", replicas=1)}))
    [[sp]] = plan(desired({"db": svc("2025.2", project="mariadb", replicas=1,
                                     upgrade={"strategy": "recreate"})}), observed).waves
    assert sp.strategy == "recreate"
    acts = actions(sp)
    assert acts.index("remove") < acts.index("create")


def test_interrupted_rollout_is_finished_not_duplicated():
    _, observed = converge(desired({"placement": svc()}))
    up = desired({"placement": svc("2026.1", upgrade={"jobs": {"expand": [{"command": ["x"]}]}})})
    first = plan(up, observed)
    # the controller dies right after replica 0's successor started
    steps = first.steps
    cut = next(i for i, s in enumerate(steps) if s.action == "create") + 1
    partial = type(first)(first.cloud, first.commit, ((type(first.waves[0][0])(
        **{**first.waves[0][0].__dict__, "steps": tuple(steps[:cut])}),),), ())
    observed = apply(partial, observed, up)
    resumed = plan(up, observed)
    [[sp]] = resumed.waves
    assert "expand" not in sp.phases            # it ran before the first successor started
    creates = [s for s in sp.steps if s.action == "create"]
    assert [s.replica for s in creates] == [1]  # replica 0's successor is reused
    assert sp.steps[[s.action for s in sp.steps].index("wait-healthy")].replica == 0
    final = apply(resumed, observed, up)
    assert plan(up, final).empty
    assert len(final.containers) == 2


def test_drift_repair_recreates_a_removed_container():
    des = desired({"placement": svc()})
    _, observed = converge(des)
    gone = Observed(tuple(c for c in observed.containers if c.replica != 1))
    [[sp]] = plan(des, gone).waves
    assert sp.change == "repair" and [s.replica for s in sp.steps if s.action == "create"] == [1]
    assert "remove" not in actions(sp)


def test_stopped_container_is_recreated_under_its_name():
    des = desired({"placement": svc()})
    _, observed = converge(des)
    stopped = tuple(c if c.replica else Container(**{**c.__dict__, "state": "exited"}) for c in observed.containers)
    [[sp]] = plan(des, Observed(stopped)).waves
    acts = [(s.action, s.replica) for s in sp.steps if s.action not in ("network", "image")]
    assert acts.index(("remove", 0)) < acts.index(("create", 0))


def test_service_removed_from_git_is_retired_last():
    _, observed = converge(desired({"placement": svc(), "old": svc(project="old")}))
    p = plan(desired({"placement": svc()}), observed)
    [[sp]] = p.waves
    assert sp.service == "old" and sp.change == "remove" and set(actions(sp)) == {"drain", "stop", "remove"}


def test_scale_down_removes_highest_replicas():
    _, observed = converge(desired({"placement": svc(replicas=3)}))
    [[sp]] = plan(desired({"placement": svc(replicas=1)}), observed).waves
    assert sp.change == "scale"
    assert [s.replica for s in sp.steps if s.action == "remove"] == [2, 1]


def test_waves_follow_dependencies_and_agents_follow_controls():
    des = desired({"keystone": svc(project="keystone"),
                   "placement": svc(depends_on=["keystone"]),
                   "nova-api": svc(project="nova", requires={"placement": ">=2025.1"}),
                   "nova-compute": svc(project="nova", role="agent")})
    names = [[sp.service for sp in wave] for wave in plan(des, Observed()).waves]
    assert names == [["keystone"], ["placement"], ["nova-api"], ["nova-compute"]]


def test_downgrades_roll_agents_back_before_controls():
    up = desired({"nova-api": svc("2025.2", project="nova"), "nova-compute": svc("2025.2", project="nova", role="agent")})
    _, observed = converge(up)
    back = desired({"nova-api": svc("2025.1", project="nova"), "nova-compute": svc("2025.1", project="nova", role="agent")})
    names = [[sp.service for sp in wave] for wave in plan(back, observed).waves]
    assert names == [["nova-compute"], ["nova-api"]]
    assert all(sp.change == "downgrade" and not sp.phases for wave in plan(back, observed).waves for sp in wave)


def test_unreachable_host_is_skipped_and_reported():
    des = desired({"placement": svc()})
    p = plan(des, Observed(unreachable=frozenset({"h2"})))
    assert all(s.host == "h1" for s in p.steps)
    assert [h for h, _ in p.blocked] == ["h2"]


def test_config_change_rolls_the_service():
    files = {"clouds/c/config/p.conf": "[DEFAULT]\n"}
    spec = svc(config=[{"source": "config/p.conf", "target": "/etc/p.conf"}])
    des = desired({"placement": spec}, files=files)
    _, observed = converge(des)
    changed = desired({"placement": spec}, files={"clouds/c/config/p.conf": "[DEFAULT]\ndebug = true\n"})
    [[sp]] = plan(changed, observed).waves
    assert sp.change == "update" and not sp.phases


def test_pending_contract_runs_after_an_interrupted_upgrade():
    up = desired({"placement": svc("2026.1", upgrade={"jobs": {"contract": [{"command": ["z"]}]}})})
    _, observed = converge(up)
    assert plan(up, observed).empty
    [[sp]] = plan(up, observed, pending_contract={"placement": up.services["placement"].hash}).waves
    assert sp.phases == ("contract",)


def test_manual_contract_policy_keeps_the_rollback_window_open():
    cloud = {**CLOUD, "policy": {"contract": "manual"}}
    _, observed = converge(desired({"placement": svc()}, cloud))
    [[sp]] = plan(desired({"placement": svc("2026.1", upgrade={"jobs": {"contract": [{"command": ["z"]}]}})}, cloud),
                  observed).waves
    assert "contract" not in sp.phases


def test_plan_renders_for_humans_and_json():
    _, observed = converge(desired({"placement": svc(), "keystone": svc(project="keystone")}))
    p = plan(desired({"placement": svc("2026.1"), "keystone": svc(project="keystone")}), observed)
    text = p.render()
    assert "placement: upgrade 2025.1 → 2026.1 (surge" in text and "untouched: keystone" in text
    data = p.as_dict()
    assert data["waves"][0][0]["service"] == "placement" and data["estimate_seconds"] > 0


def test_changing_placement_order_or_health_does_not_restart_replicas():
    _, observed = converge(desired({"placement": svc(), "keystone": svc(project="keystone")}))
    tuned = desired({"placement": svc(depends_on=["keystone"], health={"type": "tcp", "port": 8778},
                                      upgrade={"max_unavailable": 2}),
                     "keystone": svc(project="keystone")})
    assert plan(tuned, observed).empty


def test_services_on_a_host_that_did_not_answer_are_unknown_not_untouched():
    des = desired({"placement": svc(), "keystone": svc(project="keystone", replicas=1, hosts=["h1"])})
    _, observed = converge(des)
    h2_down = Observed(tuple(c for c in observed.containers if c.host != "h2"), frozenset({"h2"}))
    p = plan(des, h2_down)
    assert p.empty and p.untouched == ("keystone",) and p.unobserved == ("placement",)
    text = p.render()
    assert "nothing to do on the hosts that answered" in text and "every service runs" not in text
    assert "unknown (a host did not answer): placement" in text and "blocked: host h2" in text


def test_an_upgrade_without_a_contract_job_owes_no_contract():
    """expand/migrate ran, but there is nothing to contract: the finished rollout plans nothing."""
    up = desired({"placement": svc("2026.1", upgrade={"jobs": {"migrate": [{"command": ["m"]}]}})})
    _, observed = converge(up)
    assert plan(up, observed, pending_contract={"placement": up.services["placement"].hash}).empty


def test_a_dependency_chain_of_thousands_of_services_is_planned_in_order():
    n = 1500
    services = {f"s{i:04d}": svc(project=f"p{i}", replicas=1, hosts=["h1"],
                                 **({"depends_on": [f"s{i - 1:04d}"]} if i else {})) for i in range(n)}
    p = plan(desired(services), Observed())
    assert len(p.waves) == n
    assert [sp.service for wave in p.waves for sp in wave] == sorted(services)


def test_a_successor_stays_healthy_for_min_ready_before_an_old_replica_goes():
    _, observed = converge(desired({"placement": svc(replicas=3)}))
    [[sp]] = plan(desired({"placement": svc("2025.2", replicas=3)}), observed).waves
    waits = [s for s in sp.steps if s.action == "wait-healthy"]
    assert [s.hold for s in waits] == [2.0, 2.0, 2.0]          # the default: each gates a stop
    assert "then healthy for 2s" in waits[0].describe()
    # in place (host ports): the last successor gates nothing, so it is not held
    _, observed = converge(desired({"lb": svc(project="haproxy", ports=["8778:8778"])}))
    [[sp]] = plan(desired({"lb": svc("2025.2", project="haproxy", ports=["8778:8778"],
                                     upgrade={"min_ready": 5})}), observed).waves
    assert [s.hold for s in sp.steps if s.action == "wait-healthy"] == [5.0, 0.0]
    # a first deployment retires nothing; 0 (here a cloud default) turns it off
    [[sp]] = plan(desired({"placement": svc()}), Observed()).waves
    assert all(s.hold == 0 for s in sp.steps)
    cloud = dict(CLOUD, defaults={"upgrade": {"min_ready": 0}})
    _, observed = converge(desired({"placement": svc()}, cloud))
    [[sp]] = plan(desired({"placement": svc("2025.2")}, cloud), observed).waves
    assert all(s.hold == 0 for s in sp.steps) and "wait-healthy" in actions(sp)


def test_config_files_are_placed_before_the_first_old_replica_stops():
    files = {"clouds/c/config/p.conf": "[DEFAULT]\n"}
    cfg = [{"source": "config/p.conf", "target": "/etc/placement/placement.conf"}]
    for strategy in ("recreate", "rolling"):
        _, observed = converge(desired({"placement": svc(config=cfg, upgrade={"strategy": strategy})}, files=files))
        p = plan(desired({"placement": svc("2025.2", config=cfg, upgrade={"strategy": strategy})}, files=files),
                 observed)
        [[sp]] = p.waves
        assert actions(sp).index("config") < actions(sp).index("stop") < actions(sp).index("remove")
        assert [s.host for s in sp.steps if s.action == "config"] == ["h1", "h2"]


def test_a_replica_that_never_joined_its_alias_is_gated_again_not_replaced():
    """The controller died between a successor's health gate and its alias: the next plan
    gates it again (which joins it) instead of leaving it out of the balancer for good."""
    des = desired({"placement": svc()})
    _, observed = converge(des)
    outside = observed.containers[0]
    observed = Observed((replace(outside, joined=False), *observed.containers[1:]))
    [[sp]] = plan(des, observed).waves
    assert [(s.action, s.container) for s in sp.steps if s.action not in ("network", "image")] == [
        ("wait-healthy", outside.name)]
    assert sp.steps[-1].note == "not yet in its alias" and sp.change == "repair"


def test_a_batch_on_several_hosts_runs_one_chain_per_host_and_one_host_keeps_its_order():
    from controller.plan import Step, parallel_segments
    retire = lambda host, c: [Step("stop", host, "agent", 0, c), Step("drain", host, "agent", 0, c),
                              Step("remove", host, "agent", 0, c)]
    steps = [Step("network", "h1", "agent"), *retire("h1", "old1"), *retire("h2", "old2"),
             Step("create", "h1", "agent", 0, "new1"), Step("create", "h2", "agent", 1, "new2"),
             Step("wait-healthy", "h1", "agent", 0, "new1"), Step("wait-healthy", "h2", "agent", 1, "new2"),
             *retire("h1", "old3"), Step("create", "h1", "agent", 2, "new3")]
    shape = [[[f"{s.action}:{s.host}" for s in chain] for chain in seg] for seg in parallel_segments(steps)]
    assert shape == [
        [["network:h1"]],
        [["stop:h1", "drain:h1", "remove:h1"], ["stop:h2", "drain:h2", "remove:h2"]],
        [["create:h1"], ["create:h2"]],
        [["wait-healthy:h1"], ["wait-healthy:h2"]],
        [["stop:h1", "drain:h1", "remove:h1"]],
        [["create:h1"]]]
    one_host = [Step(s.action, "h1", s.service, s.replica, s.container) for s in steps]
    assert all(len(seg) == 1 for seg in parallel_segments(one_host))        # as planned, one by one
    assert [s for seg in parallel_segments(one_host) for chain in seg for s in chain] == one_host
