"""The executor's between-wave hook (`after_wave`): called after each wave that
converged, in order; a message from it stops the rollout like a failed step (the next
wave never starts). The gate's --matrix runs the verify hooks there. It is also called
inside a wave of one in-place service after each batch but the last (`batch=`): Nova's
computes, one host new and one old. Pure: in-memory engines that record what is asked."""
from __future__ import annotations

from controller.desired import desired_state
from controller.execute import Executor
from controller.plan import Plan, ServicePlan, Step
from tests.validators.helpers import files, service
from validators.load import load_cloud
from validators.tree import MemoryTree


class RecordingEngine:
    def __init__(self, log):
        self.log = log

    def ensure_network(self, name, labels):
        self.log.append(("network", name))


def two_waves():
    tree = MemoryTree(files({"db": service(project="db"), "api": service(depends_on=["db"])}))
    loaded = load_cloud(tree, "c")
    desired = desired_state(loaded.cloud, tree, "c0ffee")
    waves = tuple((ServicePlan(name, "deploy", None, "2025.1", "surge", (Step("network", "h1", name),)),)
                  for name in ("db", "api"))
    return desired, Plan("c", "c0ffee", waves, ())


def test_after_wave_is_called_after_each_wave_in_order():
    log = []
    desired, plan = two_waves()

    def after(number, total, wave):
        log.append(("after", number, total, [sp.service for sp in wave]))
    outcome = Executor({"h1": RecordingEngine(log)}, desired, after_wave=after).run(plan)
    assert outcome.ok, outcome.summary()
    assert log == [("network", "tidegate-c"), ("after", 1, 2, ["db"]),
                   ("network", "tidegate-c"), ("after", 2, 2, ["api"])]


def test_a_message_after_a_wave_stops_the_rollout_like_a_failed_step():
    log = []
    desired, plan = two_waves()
    outcome = Executor({"h1": RecordingEngine(log)}, desired,
                       after_wave=lambda number, total, wave: "verify:db: the record is gone").run(plan)
    assert not outcome.ok and not outcome.interrupted and not outcome.temporary
    assert outcome.error == "after wave 1 (db): verify:db: the record is gone"
    assert log == [("network", "tidegate-c")]                # wave 2 never started
    assert "the record is gone" in outcome.summary()


def test_within_an_in_place_wave_the_mixed_state_after_each_batch_but_the_last_is_offered():
    from .fakeengine import FakeEngine
    from .test_lifecycle import agent, deploy
    from .test_execute import converge, desired
    engine = deploy(FakeEngine(images=("img:2025.1", "img:2025.2")), web=agent())
    calls = []

    def after(number, total, wave, batch=None):
        calls.append((number, total, [sp.service for sp in wave], batch,
                      sorted(c.image for c in engine.containers.values() if c.running)))
    outcome = converge(engine, desired(web=agent("2025.2")), after_wave=after)
    assert outcome.ok, outcome.summary()
    assert calls == [(1, 1, ["web"], ("web", 1, 2), ["img:2025.1", "img:2025.2"]),   # one host new, one old
                     (1, 1, ["web"], None, ["img:2025.2", "img:2025.2"])]


def test_a_message_within_the_wave_stops_before_the_next_host_is_touched():
    from .fakeengine import FakeEngine
    from .test_lifecycle import agent, deploy
    from .test_execute import converge, desired
    engine = deploy(FakeEngine(images=("img:2025.1", "img:2025.2")), web=agent())
    outcome = converge(engine, desired(web=agent("2025.2")),
                       after_wave=lambda number, total, wave, batch=None: "verify:nova: no server boots" if batch else None)
    assert not outcome.ok
    assert outcome.error == "within wave 1 (web, after batch 1 of 2): verify:nova: no server boots"
    assert sorted(c.image for c in engine.containers.values() if c.running) == ["img:2025.1", "img:2025.2"]
    assert len(engine.ops("stop")) == 1                         # the second replica was never stopped
