"""Lifecycle hooks (`lifecycle:` pre_stop / post_ready) on the in-memory engine: where the
planner puts them, what the executor asks in which order, and what stays serving when a
hook fails. On real services: tests/compute (a Nova compute disables itself and lets its
builds end before it is replaced)."""
from __future__ import annotations

import pytest

from controller import lifecycle
from controller.engines.base import ExecResult
from controller.observe import observe
from controller.plan import parallel_segments, plan
from validators.model import Hook, Lifecycle

from .fakeengine import FakeEngine
from .test_execute import converge, desired, web

DRAIN = ["drain.sh", "disable"]
UNDRAIN = ["drain.sh", "enable"]
HOOKS = {"pre_stop": {"command": DRAIN, "timeout": 120}, "post_ready": {"command": UNDRAIN}}


def agent(release="2025.1", hooks=HOOKS, **kw):
    return web(release, lifecycle=hooks, upgrade={"strategy": "in-place", "min_ready": 0}, **kw)


@pytest.fixture
def engine():
    return FakeEngine(images=("img:2025.1", "img:2025.2"))


def deploy(engine, **services):
    outcome = converge(engine, desired(**services))
    assert outcome.ok, outcome.summary()
    engine.calls.clear()
    return engine


def hooks_run(engine) -> list[tuple]:
    """(what, container) in order: hooks, stops, creates, alias joins (connect with aliases)."""
    out = []
    for op, name, detail in engine.calls:
        if op == "exec" and detail in (tuple(DRAIN), tuple(UNDRAIN), ("old-drain",)):
            out.append((" ".join(detail), name))
        elif op in ("stop", "create") or (op == "connect" and detail):   # connect with aliases: the join
            out.append((op, name))
    return out


def test_hooks_travel_as_labels_and_read_back():
    labels = lifecycle.labels(Lifecycle(Hook(("a", "b"), 90.0), None))
    assert lifecycle.hook(labels, "pre_stop") == Hook(("a", "b"), 90.0)
    assert lifecycle.hook(labels, "post_ready") is None
    with pytest.raises(lifecycle.HookLabelError, match="tidegate.pre-stop"):
        lifecycle.hook({"tidegate.pre-stop": "{not json"}, "pre_stop")


def test_a_replica_is_taken_out_of_service_before_it_stops_and_its_successor_put_in_before_it_joins(engine):
    deploy(engine, web=agent())
    outcome = converge(engine, desired(web=agent("2025.2")))
    assert outcome.ok, outcome.summary()
    seen = hooks_run(engine)
    old = sorted({name for what, name in seen if what == "drain.sh disable"})
    assert len(old) == 2
    for name in old:          # its own pre-stop, before its stop signal
        assert seen.index(("drain.sh disable", name)) < seen.index(("stop", name))
    new = [name for what, name in seen if what == "create"]
    for name in new:          # the successor's post-ready after its gate, before its alias
        assert seen.index(("create", name)) < seen.index(("drain.sh enable", name)) < seen.index(("connect", name))
    # one host at a time (in place, max_unavailable 1): the second replica is taken out
    # of service only once the first one's successor is back in
    assert seen.index(("drain.sh enable", new[0])) < seen.index(("drain.sh disable", old[1]))


def test_a_failing_pre_stop_keeps_the_replica_running_and_puts_it_back_in_service(engine):
    deploy(engine, web=agent())
    before = engine.running()
    engine.exec_results[tuple(DRAIN)] = ExecResult(1, "waiting for builds\nbuilds still running on cmp1: 2\n")
    outcome = converge(engine, desired(web=agent("2025.2")))
    assert not outcome.ok and outcome.failed_step.action == "pre-stop"
    assert "exited 1: builds still running on cmp1: 2; it was not stopped, and its post-ready put it back" \
        in outcome.error
    assert engine.running() == before and engine.ops("stop") == [] and engine.ops("create") == []
    assert hooks_run(engine) == [("drain.sh disable", outcome.failed_step.container),
                                 ("drain.sh enable", outcome.failed_step.container)]


def test_an_old_replica_runs_the_hook_it_was_created_with_not_the_new_specs(engine):
    deploy(engine, web=agent(hooks={"pre_stop": {"command": ["old-drain"]}}))
    outcome = converge(engine, desired(web=agent("2025.2")))
    assert outcome.ok, outcome.summary()
    assert [what for what, _ in hooks_run(engine) if "drain" in what] == \
        ["old-drain", "drain.sh enable", "old-drain", "drain.sh enable"]


def test_changing_a_hook_restarts_nothing(engine):
    deploy(engine, web=agent())
    observed, _ = observe({"local": engine}, "c")
    assert plan(desired(web=agent(hooks={"pre_stop": {"command": ["other"]}})), observed).empty


def test_a_failing_post_ready_fails_the_successor_like_its_health_gate(engine):
    deploy(engine, web=agent())
    engine.exec_results[tuple(UNDRAIN)] = ExecResult(2, "service record not found\n")
    outcome = converge(engine, desired(web=agent("2025.2")))
    assert not outcome.ok and outcome.failed_step.action == "wait-healthy"
    assert "is ready but its post-ready 'drain.sh enable' exited 2: service record not found" in outcome.error
    assert [c for c in engine.calls if c[0] == "connect" and c[2]] == []    # never in its alias


def test_a_stopped_replica_or_one_without_hooks_is_retired_without_a_pre_stop(engine):
    deploy(engine, web=agent())
    name = sorted(engine.running())[0]
    engine.stop(name)
    observed, _ = observe({"local": engine}, "c")
    steps = plan(desired(web=agent("2025.2")), observed).steps
    assert [s.container for s in steps if s.action == "pre-stop"] == sorted(engine.running())
    bare = deploy(FakeEngine(images=("img:2025.1", "img:2025.2")), web=web())    # replicas without a hook
    observed, _ = observe({"local": bare}, "c")
    assert not [s for s in plan(desired(web=web("2025.2")), observed).steps if s.action == "pre-stop"]


def test_retirements_with_a_pre_stop_on_different_hosts_run_side_by_side():
    from controller.plan import Step
    steps = [Step(a, h, "web", i, f"web-{i}") for i, h in ((0, "a"), (1, "b"))
             for a in ("pre-stop", "stop", "drain", "remove")]
    segments = parallel_segments(steps)
    assert [[[s.action for s in chain] for chain in seg] for seg in segments] == \
        [[["pre-stop", "stop", "drain", "remove"]] * 2]


@pytest.mark.parametrize("hooks, field", [
    ({"pre_stop": {"command": DRAIN, "timeout": 0}}, "timeout"),
    ({"pre_stop": {"timeout": 10}}, "command"),
    ({"before_stop": {"command": DRAIN}}, "before_stop"),
])
def test_a_bad_hook_is_a_finding_naming_the_file_and_field(hooks, field):
    import yaml
    from validators.load import load_cloud
    from validators.tree import MemoryTree
    tree = {"clouds/c/cloud.yaml": yaml.safe_dump({"name": "c", "hosts": {"local": {"engine": "podman"}}}),
            "clouds/c/services/web.yaml": yaml.safe_dump(agent(hooks=hooks))}
    loaded = load_cloud(MemoryTree(tree), "c")
    assert len(loaded.findings) == 1 and loaded.findings[0].severity == "error", loaded.findings
    text = f"{loaded.findings[0].file}:{loaded.findings[0].line} {loaded.findings[0].message}"
    assert "clouds/c/services/web.yaml" in text and "lifecycle" in text and field in text, text
