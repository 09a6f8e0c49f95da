"""The executor's between-wave hook (`after_wave`): called after each wave that
converged, in order; a message from it stops the rollout like a failed step (the next
wave never starts). The gate's --matrix runs the verify hooks there. Pure: the plan's
steps are network steps on an in-memory engine that records what it is asked."""
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
