"""Pre-upgrade checks as a phase, without an engine: when the planner runs them (an upgrade,
before anything of the change), what their exit codes mean to the executor (0 ok, 1 a
warning, anything else blocks with every old replica serving), and what status says."""
from __future__ import annotations

import yaml

from controller import precheck, transitions
from controller.desired import Observed, desired_state
from controller.engines.base import ExecResult
from controller.execute import Executor
from controller.observe import observe
from controller.plan import plan
from controller.status import Status
from gate.report import Phase
from gate.phases import precheck_case
from validators.load import load_cloud
from validators.tree import MemoryTree

from .fakeengine import FakeEngine
from .test_plan import converge as converge_in_memory

CLOUD = {"name": "c", "hosts": {"h1": {"engine": "podman"}, "h2": {"engine": "podman"}}}
CHECK = [{"name": "upgrade-check", "command": ["placement-status", "upgrade", "check"]}]

TABLE = """\
+-------------------------------------------------------------------+
| Upgrade Check Results                                             |
+-------------------------------------------------------------------+
| Check: Missing Root Provider IDs                                  |
| Result: Success                                                   |
| Details: None                                                     |
+-------------------------------------------------------------------+
| Check: Incomplete Consumers                                       |
| Result: Warning                                                   |
| Details: There are 3 incomplete consumers table records for       |
|   existing allocations. Run the "placement-manage db              |
|   online_data_migrations" command.                                |
+-------------------------------------------------------------------+
| Check: Policy File JSON to YAML Migration                         |
| Result: Failure                                                   |
| Details: Your policy file is JSON-formatted which is deprecated.  |
+-------------------------------------------------------------------+
"""


def svc(release="2025.1", project="placement", checks=CHECK, **kw):
    data = {"project": project, "release": release, "image": f"img:{release}", "replicas": 2,
            "health": {"type": "exec", "command": ["true"], "interval": 0.01}, "upgrade": {"min_ready": 0}}
    jobs = {"expand": [{"command": ["placement-manage", "db", "sync"]}]}
    if checks:
        jobs["precheck"] = checks
    data["upgrade"]["jobs"] = jobs
    data.update(kw)
    return data


def desired(services: dict, commit="c0", cloud=None):
    tree = {"clouds/c/cloud.yaml": yaml.safe_dump(cloud or CLOUD)}
    tree.update({f"clouds/c/services/{n}.yaml": yaml.safe_dump(d) for n, d in services.items()})
    loaded = load_cloud(MemoryTree(tree), "c")
    assert loaded.cloud is not None, loaded.findings
    return desired_state(loaded.cloud, loaded.tree, commit)


# -- the plan ---------------------------------------------------------------------------

def test_an_upgrade_plans_its_prechecks_apart_from_the_image_of_the_new_release():
    _, observed = converge_in_memory(desired({"placement": svc()}))
    p = plan(desired({"placement": svc("2026.1")}), observed)
    [sp] = p.prechecks
    assert sp.phases[0] == "precheck" and "expand" in sp.phases
    assert [(s.action, s.phase or s.note) for s in sp.precheck] == [
        ("network", "tidegate-c"), ("image", "img:2026.1"), ("job", "precheck")]
    job = sp.precheck[-1]
    assert job.note == "upgrade-check" and job.container.startswith("c-placement-precheck0-")
    assert all(s.phase != "precheck" for s in sp.steps)            # not run again within the wave
    assert p.steps[:len(sp.precheck)] == list(sp.precheck)         # the first thing the plan does
    text = p.render()
    assert text.index("prechecks (") < text.index("wave 1:")
    assert "run precheck job #1 on h1 (upgrade-check)" in text
    assert p.as_dict()["waves"][0][0]["precheck"][-1]["phase"] == "precheck"


def test_prechecks_of_every_service_of_the_change_come_before_its_first_wave():
    before = {"nova-conductor": svc(project="nova"),
              "nova-api": svc(project="nova", depends_on=["nova-conductor"])}
    _, observed = converge_in_memory(desired(before))
    p = plan(desired({"nova-conductor": svc("2026.1", project="nova"),
                      "nova-api": svc("2026.1", project="nova", depends_on=["nova-conductor"])}), observed)
    assert [[sp.service for sp in wave] for wave in p.waves] == [["nova-conductor"], ["nova-api"]]
    assert [sp.service for sp in p.prechecks] == ["nova-conductor", "nova-api"]
    first_create = next(i for i, s in enumerate(p.steps) if s.action == "create")
    last_precheck = max(i for i, s in enumerate(p.steps) if s.phase == "precheck")
    assert last_precheck < first_create


def test_no_precheck_on_a_deploy_a_config_change_a_downgrade_or_a_resumed_rollout():
    assert plan(desired({"placement": svc()}), Observed()).prechecks == []            # first deploy
    _, observed = converge_in_memory(desired({"placement": svc()}))
    changed = svc(environment={"DEBUG": "1"})                                          # same release
    assert plan(desired({"placement": changed}), observed).waves and \
        plan(desired({"placement": changed}), observed).prechecks == []
    _, newer = converge_in_memory(desired({"placement": svc("2026.1")}), observed)
    assert plan(desired({"placement": svc()}), newer).prechecks == []                   # rollback
    # an upgrade interrupted after its first successor: the change has begun, no precheck again
    up = desired({"placement": svc("2026.1")})
    p = plan(up, observed)
    first = next(s for s in p.steps if s.action == "create")
    ds = up.services["placement"]
    from controller.desired import Container
    half = Observed(observed.containers + (Container(first.host, first.container, first.container, "placement",
                                                     first.replica, ds.hash, "2026.1", "running"),))
    again = plan(up, half)
    assert again.waves and again.prechecks == []


# -- the executor -----------------------------------------------------------------------

def deployed_engine() -> FakeEngine:
    engine = FakeEngine(host="h1", images=("img:2025.1", "img:2026.1"))
    cloud = {"name": "c", "hosts": {"h1": {"engine": "podman"}}}
    des = desired({"placement": svc()}, cloud=cloud)
    outcome = Executor({"h1": engine}, des).run(plan(des, observe({"h1": engine}, "c")[0]))
    assert outcome.ok, outcome.summary()
    engine.calls.clear()
    return engine


def upgrade(engine: FakeEngine, progress=None):
    cloud = {"name": "c", "hosts": {"h1": {"engine": "podman"}}}
    des = desired({"placement": svc("2026.1")}, cloud=cloud)
    return Executor({"h1": engine}, des, progress=progress).run(plan(des, observe({"h1": engine}, "c")[0]))


def test_a_failing_precheck_blocks_the_rollout_before_anything_is_replaced():
    engine = deployed_engine()
    before = engine.running()
    engine.job_results["precheck"] = ExecResult(2, TABLE)
    outcome = upgrade(engine)
    assert not outcome.ok and not outcome.temporary
    assert outcome.failed_step.phase == "precheck"
    assert [name for name in engine.ops("job")] == [outcome.failed_step.container]   # no expand job either
    assert engine.ops("create") == [] and engine.ops("stop") == []
    assert engine.running() == before
    assert "precheck upgrade-check of placement ('placement-status upgrade check') exited 2" in outcome.error
    assert "Policy File JSON to YAML Migration: Failure" in outcome.error
    assert "Incomplete Consumers: Warning" in outcome.logs and "Missing Root" not in outcome.logs


def test_a_precheck_that_warns_is_shown_and_the_rollout_goes_on():
    engine = deployed_engine()
    engine.job_results["precheck"] = ExecResult(1, "some checks only warn\nCheck: A\nResult: Warning\nDetails: soon\n")
    events = []
    outcome = upgrade(engine, progress=lambda event, step, detail: events.append((event, step.phase, detail)))
    assert outcome.ok, outcome.summary()
    assert [w["service"] for w in outcome.warnings] == ["placement"] and outcome.warnings[0]["exit_code"] == 1
    assert outcome.warnings[0]["summary"] == "A: Warning (soon)"
    assert "1 precheck warning(s): placement" in outcome.summary()
    warned = [d for e, phase, d in events if e == "warning"]
    assert len(warned) == 1 and "warns (exit 1): A: Warning (soon)" in warned[0]
    assert len(engine.ops("stop")) == 2                          # both old replicas replaced


def test_a_passing_precheck_runs_once_then_the_upgrade():
    engine = deployed_engine()
    outcome = upgrade(engine)
    assert outcome.ok and outcome.warnings == []
    jobs = engine.ops("job")
    assert len(jobs) == 2 and "-precheck0-" in jobs[0] and "-expand0-" in jobs[1]


# -- what the check printed -------------------------------------------------------------

def test_the_verdict_names_the_checks_that_did_not_succeed_and_is_bounded():
    v = precheck.verdict(2, TABLE)
    assert v.result == "failure"
    assert v.summary.startswith("Incomplete Consumers: Warning (There are 3 incomplete consumers table records "
                                "for existing allocations. Run the \"placement-manage db online_data_migrations\"")
    assert len(v.summary) <= precheck.MESSAGE_CHARS
    assert v.excerpt.splitlines()[1] == ("Policy File JSON to YAML Migration: Failure: Your policy file is "
                                         "JSON-formatted which is deprecated.")
    assert precheck.verdict(0, TABLE).result == "ok" and precheck.verdict(1, "").result == "warning"
    assert precheck.verdict(255, "").summary == "(no output)"
    long = "\n".join(f"line {i} " + "x" * 500 for i in range(100))
    other = precheck.verdict(3, long)
    assert other.result == "failure" and len(other.excerpt.splitlines()) == precheck.EXCERPT_LINES
    assert max(len(line) for line in other.excerpt.splitlines()) <= precheck.LINE_CHARS
    assert other.summary.startswith("line 99 ")


# -- status and the gate -------------------------------------------------------------------

A, B, C = "a" * 40, "b" * 40, "c" * 40
AT = "2026-12-02T06:00:00Z"


def test_status_says_precheck_failed_and_that_nothing_was_applied():
    status, _ = transitions.begin(Status("c", ready=True, last_applied_revision=A, last_attempted_revision=A),
                                  transitions.Verdict(B, True), AT)
    result = transitions.Result(B, False, "failed at step 'run precheck job #1 on h1 (upgrade-check)'", 4.0,
                                failure={"step": "run precheck job #1 on h1 (upgrade-check)", "phase": "precheck",
                                         "error": "precheck upgrade-check of placement … exited 2", "logs": "x"})
    after, _ = transitions.settle(status, transitions.Verdict(B, True), result, AT, {})
    assert (after.condition(), after.reason, after.failed_revision) == ("Stalled", "PrecheckFailed", B)
    assert "nothing of bbbbbbbbbbbb was applied" in after.message
    assert "failed step: run precheck job #1" in after.render()


def test_status_shows_precheck_warnings_until_another_commit_is_attempted():
    status, _ = transitions.begin(Status("c", ready=True, last_applied_revision=A, last_attempted_revision=A),
                                  transitions.Verdict(B, True), AT)
    warning = {"service": "placement", "job": "upgrade-check", "exit_code": 1, "summary": "A: Warning", "output": ""}
    result = transitions.Result(B, True, "converged: 9 step(s) in 3.0s; 1 precheck warning(s): placement", 3.0,
                                changed=True, warnings=(warning,))
    after, _ = transitions.settle(status, transitions.Verdict(B, True), result, AT, {})
    assert after.condition() == "Ready" and after.precheck_warnings[0]["revision"] == B
    assert "precheck warning at bbbbbbbbbbbb: placement (upgrade-check) exited 1: A: Warning" in after.render()
    assert "1 precheck warning(s)" in after.history[0]["summary"]
    next_one, _ = transitions.begin(after, transitions.Verdict(C, True), AT)
    assert next_one.precheck_warnings == []


def test_the_gate_gives_each_precheck_job_a_case():
    from controller.plan import Step
    p = Phase("upgrade")
    step = Step("job", "gate", "placement", None, "x-placement-precheck0-1", phase="precheck", job=0,
                note="upgrade-check")
    precheck_case(p, "start", step, "")
    precheck_case(p, "done", step, "2.5s")
    precheck_case(p, "warning", step, "1.5s: precheck upgrade-check of placement warns (exit 1): A: Warning")
    precheck_case(p, "failed", step, "precheck upgrade-check of placement exited 2, the rollout is blocked: B")
    assert [(c.name, c.ok, c.seconds) for c in p.cases] == [
        ("precheck:placement:upgrade-check", True, 2.5), ("precheck:placement:upgrade-check", True, 1.5),
        ("precheck:placement:upgrade-check", False, 0.0)]
    assert p.cases[1].message.startswith("warning: precheck upgrade-check") and p.cases[2].message.endswith(": B")
