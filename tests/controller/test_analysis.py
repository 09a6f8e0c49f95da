"""Analysis after the rollout, without an engine: the front a check is asked through (from
the model), the rule that wants one, where the planner puts the analysis, the tally, and
the controller's decisions after a failed analysis — converge back while the rollback
window is open, stall after a contract, remember the failed commit, retry it on purpose."""
from __future__ import annotations

import yaml

from controller import transitions
from controller.analysis import Tally, describe, message
from controller.desired import Observed
from controller.plan import plan
from controller.status import Status
from controller.transitions import Result, Verdict, begin, settle, settle_back
from validators.check import check_state
from validators.load import load_cloud
from validators.tree import MemoryTree

from .test_plan import apply, desired

A, B, C = "a" * 40, "b" * 40, "c" * 40
AT = "2026-12-02T14:00:00Z"
CLOUD = {"name": "c", "hosts": {"h1": {"engine": "podman"}}}
CHECKS = [{"name": "providers", "type": "http", "path": "/resource_providers", "status": [200]},
          {"name": "status", "type": "exec", "command": ["placement-status", "upgrade", "check"]}]


def api(release="2025.1", **kw):
    data = {"project": "placement", "release": release, "image": f"img:{release}", "replicas": 2,
            "expose": [8778], "health": {"type": "http", "port": 8778}, "checks": CHECKS}
    data.update(kw)
    return data


def front(**kw):
    data = {"project": "haproxy", "release": "2025.1", "image": "haproxy", "depends_on": ["placement"],
            "ports": ["18778:8778"], "health": {"type": "tcp", "port": 8778}}
    data.update(kw)
    return data


def loaded(services: dict, cloud=None):
    tree = {"clouds/c/cloud.yaml": yaml.safe_dump(cloud or CLOUD)}
    tree.update({f"clouds/c/services/{n}.yaml": yaml.safe_dump(d) for n, d in services.items()})
    return load_cloud(MemoryTree(tree), "c")


def errors(result):
    """The error findings `tidegate check` reports on a loaded state."""
    return [(f.rule, f.message) for f in check_state(result) if f.severity == "error"]


# -- the model: analysis settings and the front ----------------------------------------

def test_analysis_merges_the_clouds_defaults_and_a_window_of_zero_turns_it_off():
    cloud = {**CLOUD, "defaults": {"analysis": {"window": 60, "interval": 2}}}
    got = loaded({"placement": api(analysis={"max_failures": 1}), "haproxy": front()}, cloud)
    assert errors(got) == []
    a = got.cloud.services["placement"].analysis
    assert (a.window, a.max_failures, a.interval) == (60.0, 1, 2.0)
    off = loaded({"placement": api(analysis={"window": 0}), "haproxy": front()}, cloud)
    assert off.cloud.services["placement"].analysis is None
    # the front has no deep checks: the defaults give it nothing to ask, and no finding
    assert off.cloud.analysed_checks("haproxy") == ()


def test_the_front_is_a_dependent_service_publishing_the_port_or_the_service_itself():
    cloud = loaded({"placement": api(analysis={"window": 30}), "haproxy": front()}).cloud
    name, port = cloud.front("placement", 8778)
    assert (name, port.container, port.host) == ("haproxy", 8778, 18778)
    assert [c.name for c in cloud.analysed_checks("placement")] == ["providers"]   # http only
    assert describe(cloud, "placement") == ("30s through haproxy:8778: providers; at most 0 failure(s), "
                                            "every 2s")
    alone = loaded({"placement": api(ports=["18778:8778"], analysis={"window": 30})}).cloud
    assert alone.front("placement", 8778)[0] == "placement"
    unrelated = loaded({"placement": api(), "haproxy": front(depends_on=[])}).cloud
    assert unrelated.front("placement", 8778) is None       # publishes 8778, but fronts nothing of it


def test_an_analysed_service_needs_a_front_for_its_checks():
    found = errors(loaded({"placement": api(analysis={"window": 30}), "haproxy": front(depends_on=[])}))
    assert [r for r, _ in found] == ["semantic.analysis-front"]
    assert "deep check 'providers'" in found[0][1] and "nothing publishes port 8778 of placement" in found[0][1]
    assert errors(loaded({"placement": api(analysis={"window": 30}), "haproxy": front()})) == []
    assert errors(loaded({"placement": api(), "haproxy": front(depends_on=[])})) == []   # not analysed


# -- the planner -----------------------------------------------------------------------

def analysed_cloud(release="2025.1", contract=False, **kw):
    contract_job = {"command": ["placement-manage", "db", "contract"]}
    jobs = {"upgrade": {"jobs": {"contract": [contract_job]}}} if contract else {}
    return {"placement": api(release, analysis={"window": 30, "interval": 1}, **jobs, **kw), "haproxy": front()}


def test_the_analysis_follows_the_last_replaced_replica_and_precedes_contract():
    first = desired(analysed_cloud(), cloud=CLOUD)
    deployed = plan(first, Observed())
    assert "analyse" not in [s.action for s in deployed.steps]        # a first deploy: nothing to go back to
    observed = apply(deployed, Observed(), first)
    up = desired(analysed_cloud("2025.2", contract=True), cloud=CLOUD, commit="c1")
    the_plan = plan(up, observed)
    [sp] = [sp for wave in the_plan.waves for sp in wave if sp.service == "placement"]
    actions = [s.action for s in sp.steps]
    assert actions.index("analyse") > max(i for i, a in enumerate(actions) if a == "remove")
    assert actions.index("analyse") < actions.index("job", actions.index("analyse"))   # before contract
    assert sp.steps[actions.index("analyse")].phase == "" and "contract" in sp.phases
    assert sp.analysis == "30s through haproxy:8778: providers; at most 0 failure(s), every 1s"
    assert sp.checks == ("providers (GET /resource_providers → 200)", "status (exec placement-status upgrade check)")
    text = the_plan.render()
    assert "     deep checks: providers (GET /resource_providers → 200), status (exec placement-status" in text
    assert "     analysis after the last replica: 30s through haproxy:8778" in text
    assert "analyse placement for 30s through haproxy:8778: providers" in text
    assert sp.estimate >= 30
    back = plan(up, observed, analyse=False)                          # converging back: no analysis
    assert "analyse" not in [s.action for s in back.steps]
    assert all(not sp.analysis for wave in back.waves for sp in wave)


# -- the tally -------------------------------------------------------------------------

def test_the_tally_fails_over_the_threshold_and_keeps_a_bounded_first_answer():
    tally = Tally(max_failures=1)
    tally.add("providers", True, "answered 200", 0.0)
    tally.add("providers", False, "GET http://127.0.0.1:18778/resource_providers answered 503: " + "x" * 1000, 1.0)
    assert not tally.over
    tally.add("providers", False, "answered 503 again", 2.0)
    assert tally.over
    ev = tally.evidence("placement", 30.0, 2.0, "haproxy:8778 (127.0.0.1:18778)")
    assert (ev["check"], ev["failures"], ev["asked"], ev["first_failure_at"]) == ("providers", 2, 3, 1.0)
    assert len(ev["answer"]) <= 401 and ev["answer"].endswith("…")
    assert message(ev).startswith("analysis of placement failed: deep check 'providers' through the front "
                                  "haproxy:8778 (127.0.0.1:18778): 2 failed of 3 answer(s) in 2s (at most 1 "
                                  "allowed in 30s): GET http://127.0.0.1:18778/resource_providers answered 503")


# -- the decisions ---------------------------------------------------------------------

EVIDENCE = {"service": "placement", "check": "providers", "failures": 1, "asked": 4, "max_failures": 0,
            "window": 30.0, "seconds": 3.1, "first_failure_at": 3.1, "front": "haproxy:8778 (127.0.0.1:18778)",
            "answer": "GET http://127.0.0.1:18778/resource_providers answered 503 (expected 200): {\"error\"}"}
PROJECTS = {"placement": "placement", "placement-sched": "placement", "haproxy": "haproxy"}


def applied_at(commit: str) -> Status:
    return Status("c", ready=True, reason="Applied", last_applied_revision=commit, last_attempted_revision=commit)


def analysis_failed(commit: str, services=("placement",)) -> Result:
    return Result(commit, False, "failed at step 'analyse placement': " + message(EVIDENCE), 40.0,
                  failure={"step": "analyse placement", "error": message(EVIDENCE), "logs": ""},
                  changed=True, evidence=EVIDENCE, projects=PROJECTS, services=tuple(services))


def test_a_failed_analysis_converges_back_and_says_rolled_back_with_the_evidence():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, back = settle(status, Verdict(B, True), analysis_failed(B), AT, {})
    assert back and after.reason == "AnalysisFailed" and after.failed_revision == B
    rolled = settle_back(after, A, True)
    assert (rolled.condition(), rolled.reason) == ("Stalled", "RolledBack")
    assert rolled.analysis["check"] == "providers" and rolled.analysis["revision"] == B
    assert rolled.analysis["rolled_back"] and not rolled.analysis["held"]
    assert "deep check 'providers'" in rolled.message and "converged back to aaaaaaaaaaaa" in rolled.message
    assert [h["result"] for h in rolled.history[:2]] == ["restored", "failed"]
    text = rolled.render()
    assert "failed revision: bbbbbbbbbbbb — not applied again until a newer commit" in text
    assert "--retry-failed" in text and "analysis of placement at bbbbbbbbbbbb: deep check 'providers'" in text
    assert "answered 503 (expected 200)" in text
    failed_back = settle_back(after, A, False)
    assert failed_back.reason == "AnalysisFailed" and "failed too" in failed_back.message


def test_the_converged_back_commit_is_not_applied_again_but_a_newer_one_is():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    rolled = settle_back(settle(status, Verdict(B, True), analysis_failed(B), AT, {})[0], A, True)
    again, commit = begin(rolled, Verdict(B, True), AT)               # next reconcile, run loop, drift check
    assert commit == A and again.reason == "RolledBack"
    kept, back = settle(again, Verdict(B, True), Result(A, True, "converged: 0 step(s)", drift_check=True), AT, {})
    assert not back and kept.reason == "RolledBack" and kept.failed_revision == B
    newer, commit = begin(kept, Verdict(C, True), AT)
    assert commit == C
    done, _ = settle(newer, Verdict(C, True), Result(C, True, "converged", changed=True), AT, {})
    assert (done.condition(), done.reason, done.failed_revision, done.analysis) == ("Ready", "Applied", None, {})


def test_an_operator_retries_the_failed_commit_on_purpose():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    rolled = settle_back(settle(status, Verdict(B, True), analysis_failed(B), AT, {})[0], A, True)
    retried = transitions.retry(rolled, B, AT)
    assert retried.failed_revision is None and retried.analysis == {} and retried.reason == "Retrying"
    assert retried.history[0]["result"] == "retried"
    _, commit = begin(retried, Verdict(B, True), AT)
    assert commit == B
    assert transitions.retry(rolled, C, AT).failed_revision == B       # another commit: nothing forgotten


def test_after_a_contract_of_its_project_a_failed_analysis_stalls_and_holds_what_runs():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    status.contracted = {"placement-sched": {"hash": "h", "revision": B, "at": AT}}   # an earlier wave contracted
    after, back = settle(status, Verdict(B, True), analysis_failed(B, ("placement-sched", "placement")), AT, {})
    assert not back and (after.condition(), after.reason) == ("Stalled", "AnalysisFailed")
    assert "NOT converged back: the contract phase of placement-sched ran in this rollout" in after.message
    assert "rollback window of project placement" in after.message and "fix forward" in after.message
    assert after.analysis["held"] and not after.analysis["rolled_back"]
    _, commit = begin(after, Verdict(B, True), AT)
    assert commit is None                                             # not back to A on a contracted database
    _, commit = begin(after, Verdict(C, True), AT)
    assert commit == C                                                # a fix forward is applied


def test_a_contract_of_another_project_or_an_earlier_commit_leaves_the_window_open():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    status.contracted = {"haproxy": {"revision": B}, "placement-sched": {"revision": A}}
    _, back = settle(status, Verdict(B, True), analysis_failed(B), AT, {})
    assert back
    assert transitions.window_closed_by({"placement-sched": {"revision": B}}, B, PROJECTS, ("placement",)) == \
        ["placement-sched"]


def test_a_half_contracted_database_or_nothing_applied_before_means_no_converge_back():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, back = settle(status, Verdict(B, True), analysis_failed(B), AT, {"placement-sched": B})
    assert not back and after.reason == "AnalysisFailed" and "half-contracted" in after.message
    first, _ = begin(Status("c"), Verdict(B, True), AT)
    after, back = settle(first, Verdict(B, True), analysis_failed(B), AT, {})
    assert not back and "no other good commit to go back to" in after.message


def test_a_project_without_a_downgrade_is_held_not_converged_back():
    # Nova: once a 2026.1 service ran, 2025.1 services refuse to start (ServiceTooOld), so
    # converging back would stop the old Nova and fail to start the older one
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    nova = Result(B, False, "failed at step 'analyse nova-api'", 40.0, failure={"step": "analyse nova-api"},
                  changed=True, evidence=EVIDENCE, projects={"nova-api": "nova"}, services=("nova-api",),
                  no_way_back={"nova": "2025.1 services refuse to start (ServiceTooOld)"})
    after, back = settle(status, Verdict(B, True), nova, AT, {})
    assert not back and (after.condition(), after.reason) == ("Stalled", "AnalysisFailed")
    assert "NOT converged back: nova has no rollback once its new release ran — 2025.1 services refuse" \
        in after.message and "fix forward" in after.message
    assert after.analysis["held"]
    _, commit = begin(after, Verdict(B, True), AT)
    assert commit is None                                             # what runs is held
    _, commit = begin(after, Verdict(C, True), AT)
    assert commit == C
