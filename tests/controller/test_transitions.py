"""The controller's status transitions, without an engine: (status, target, outcome) in,
status and the next action out (controller/transitions.py)."""
from __future__ import annotations

from controller.status import Status
from controller import transitions
from controller.transitions import Result, Verdict, base_unknown, begin, settle, settle_back

A, B, C = "a" * 40, "b" * 40, "c" * 40
AT = "2026-12-02T06:00:00Z"
ERROR = {"file": "clouds/c/services/web.yaml", "line": 3, "column": 10, "severity": "error",
         "rule": "transition.upgrade-path", "message": "web: 2025.1 → 2026.2 is not a supported upgrade",
         "hint": ""}


def applied_at(commit: str) -> Status:
    return Status("c", ready=True, reason="Applied", last_applied_revision=commit, last_attempted_revision=commit)


def failed(commit: str, *, temporary=False, interrupted=False) -> Result:
    return Result(commit, False, "failed at step 'wait-healthy web-2'", 12.5, interrupted, temporary,
                  {"step": "wait-healthy web-2", "error": "HTTP 500", "logs": "boom"})


def test_a_valid_new_commit_is_converged_to_and_becomes_applied():
    status, commit = begin(applied_at(A), Verdict(B, True), AT)
    assert commit == B and status.last_attempted_revision == B
    after, back = settle(status, Verdict(B, True), Result(B, True, "converged: 4 step(s)", 3.0, changed=True), AT, {})
    assert not back
    assert (after.condition(), after.reason, after.last_applied_revision) == ("Ready", "Applied", B)
    assert after.history[0]["result"] == "applied"


def test_an_invalid_commit_keeps_the_last_good_one_and_is_recorded_once():
    status, commit = begin(applied_at(A), Verdict(B, False, (ERROR,)), AT)
    assert commit == A                                        # the last good state keeps running
    assert (status.condition(), status.reason, status.errors_total) == ("Stalled", "ValidationFailed", 1)
    assert status.findings == [ERROR] and "keeping aaaaaaaaaaaa" in status.message
    again, _ = begin(status, Verdict(B, False, (ERROR,)), AT)  # a drift check re-asks: no new record
    assert again.errors_total == 1 and len(again.history) == 1
    after, _ = settle(again, Verdict(B, False, (ERROR,)), Result(A, True, "converged: 0 step(s)"), AT, {})
    assert (after.condition(), after.reason, after.last_applied_revision) == ("Stalled", "ValidationFailed", A)


def test_a_failed_rollout_is_not_retried_and_is_converged_back():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, back = settle(status, Verdict(B, True), failed(B), AT, {})
    assert back
    assert (after.condition(), after.reason, after.failed_revision) == ("Stalled", "RolloutFailed", B)
    assert after.failure["revision"] == B and after.history[0]["result"] == "failed"
    assert "converged back to aaaaaaaaaaaa" in settle_back(after, A, True).message
    retry, commit = begin(after, Verdict(B, True), AT)        # the same commit again: not retried
    assert commit == A
    newer, commit = begin(after, Verdict(C, True), AT)        # a newer commit is applied normally
    assert commit == C and newer.failure == {}


def test_a_failed_contract_stalls_and_is_never_converged_back():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, back = settle(status, Verdict(B, True), failed(B), AT, {"placement": B})
    assert not back                                           # the database may be half-contracted
    assert (after.condition(), after.reason, after.failed_revision) == ("Stalled", "ContractFailed", B)
    assert "tidegate contract --service placement" in after.message and "fix forward" in after.message
    # also when the failure looked temporary (an engine error during the contract job)
    after, back = settle(status, Verdict(B, True), failed(B, temporary=True), AT, {"placement": B})
    assert not back and after.reason == "ContractFailed"


def test_engine_trouble_keeps_reconciling_without_marking_the_commit_failed():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, back = settle(status, Verdict(B, True), failed(B, temporary=True), AT, {})
    assert not back and after.failed_revision is None
    assert (after.condition(), after.reason) == ("Reconciling", "EngineUnavailable")


def test_an_interrupted_rollout_is_resumed_not_counted_as_a_failure():
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, back = settle(status, Verdict(B, True), failed(B, interrupted=True), AT, {})
    assert not back and after.errors_total == 0 and after.failed_revision is None
    assert (after.condition(), after.reason) == ("Reconciling", "Interrupted")


def test_a_repaired_drift_is_counted_only_at_the_applied_commit():
    status, _ = begin(applied_at(A), Verdict(A, True), AT)
    after, _ = settle(status, Verdict(A, True), Result(A, True, "converged", changed=True, drift_check=True), AT, {})
    assert after.drift_repairs == 1 and len(after.history) == 0   # re-applying is not a new "applied"


def test_an_unknown_base_stalls_or_retries_and_applies_nothing():
    stalled = base_unknown(applied_at(A), B, "no status for cloud c; name the base yourself (--assume-base REV)",
                           False, AT)
    assert (stalled.condition(), stalled.reason, stalled.last_applied_revision) == ("Stalled", "BaseUnknown", A)
    retried = base_unknown(Status("c"), B, "host h1 did not answer", True, AT)
    assert (retried.condition(), retried.reason) == ("Reconciling", "EngineUnavailable")


def test_transitions_do_not_change_the_status_they_are_given():
    status = applied_at(A)
    before = status.as_dict()
    begin(status, Verdict(B, False, (ERROR,)), AT)
    settle(status, Verdict(B, True), failed(B), AT, {"web": B})
    assert status.as_dict() == before


def test_after_a_failed_contract_nothing_converges_back_until_a_fix_forward():
    stuck = {"placement": B}
    status, _ = begin(applied_at(A), Verdict(B, True), AT)
    after, _ = settle(status, Verdict(B, True), failed(B), AT, stuck)
    _, commit = begin(after, Verdict(B, True), AT, stuck)           # the failed commit again: hold
    assert commit is None
    _, commit = begin(after, Verdict(C, False, (ERROR,)), AT, stuck)  # an invalid commit: hold, not last good
    assert commit is None
    _, commit = begin(after, Verdict(C, True), AT, stuck)           # a fix forward is converged
    assert commit == C


def test_hosts_view_keeps_since_while_reachability_holds_and_counts_containers():
    from controller.desired import Container, Observed
    from validators.model import Host
    hosts = {"ctl1": Host("ctl1", "podman", "ssh://root@10.250.0.11/run/podman/podman.sock", "10.250.0.11"),
             "ctl2": Host("ctl2", "docker", "ssh://root@10.250.0.12/run/docker.sock", "10.250.0.12")}
    seen = Observed((Container("ctl1", "i1", "c-keystone-0-x", "keystone", 0, "h", "2025.1", "running"),
                     Container("ctl1", "i2", "c-placement-0-x", "placement", 0, "h", "2025.1", "running"),
                     Container("ctl1", "i3", "c-placement-2-x", "placement", 2, "h", "2025.1", "running")))
    first = transitions.hosts_view({}, hosts, seen, {"ctl2": "ssh: connect refused"}, {"ctl1": "podman 4.3.1"},
                                   "2026-12-02T11:00:00Z")
    assert first["ctl1"] == {"reachable": True, "since": "2026-12-02T11:00:00Z", "url": hosts["ctl1"].url,
                             "engine": "podman 4.3.1", "containers": {"keystone": 1, "placement": 2}}
    assert first["ctl2"]["reachable"] is False and first["ctl2"]["error"] == "ssh: connect refused"
    later = transitions.hosts_view(first, hosts, Observed(), {"ctl2": "ssh: connect refused"}, {},
                                   "2026-12-02T11:05:00Z")
    assert later["ctl1"]["since"] == later["ctl2"]["since"] == "2026-12-02T11:00:00Z"
    assert later["ctl1"]["engine"] == "podman 4.3.1"           # the last version known
    back = transitions.hosts_view(later, hosts, Observed(), {}, {"ctl2": "docker 20.10.24"}, "2026-12-02T11:09:00Z")
    assert back["ctl2"]["reachable"] and back["ctl2"]["since"] == "2026-12-02T11:09:00Z"
