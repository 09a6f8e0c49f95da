"""The controller's decisions, as pure functions of (status, target, outcome): which commit
a reconcile converges to, and what status says afterwards — Ready / Reconciling / Stalled,
the reason, what is kept, whether to converge back. No engine, no git, no clock (the time
is an argument): `controller.reconcile` does the effects and calls these in between, so
every transition has an engine-free test (tests/controller/test_transitions.py).

Reasons: Applied, ValidationFailed, PrecheckFailed, RolloutFailed, ContractFailed,
EngineUnavailable, Interrupted, BaseUnknown, AnalysisFailed (the analysis after a
rollout failed and the cloud was not converged back), RolledBack (it was), Retrying
(an operator asked for a failed commit again) — and NeverApplied before the first attempt.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .analysis import message as analysis_message


@dataclass(frozen=True)
class Verdict:
    """What the judge said of the commit a reconcile was asked for."""
    commit: str
    valid: bool
    errors: tuple = ()                  # error findings, as dicts (file, line, message, rule…)


@dataclass(frozen=True)
class Result:
    """What converging one commit did."""
    commit: str                          # the commit converged (the target, or the last good one)
    ok: bool
    summary: str
    seconds: float | None = None
    interrupted: bool = False
    temporary: bool = False              # engine trouble: worth retrying as is
    failure: dict = field(default_factory=dict)   # step, error, logs
    changed: bool = False                # the plan was not empty
    drift_check: bool = False
    evidence: dict = field(default_factory=dict)   # a failed analysis after the rollout: what failed
    projects: dict = field(default_factory=dict)   # service -> project, of the commit converged
    services: tuple = ()                 # the services the plan changed
    warnings: tuple = ()                 # precheck jobs that exited 1 (dicts: service, job, summary…)
    no_way_back: dict = field(default_factory=dict)   # project -> why its new release cannot go down
                                                      # (validators/upgrade_order.yaml `no_downgrade`)


def _copy(status):
    return copy.deepcopy(status)


def begin(status, verdict: Verdict, at: str, contract_started: dict | None = None):
    """(status, commit to converge to or None) on being asked for `verdict.commit`: the
    target when valid and not already failed; else the last applied commit (the last good
    state keeps running); None when there is nothing good yet — or when a contract phase
    started and did not finish (`contract_started`): what runs is held as it is, since the
    last good state would run on a database that may be half-contracted."""
    s = _copy(status)
    fallback = None if contract_started or held(s) else s.last_applied_revision
    new = verdict.commit != s.last_attempted_revision
    if new:
        s.last_attempted_revision, s.last_attempted_at = verdict.commit, at
        s.failure, s.findings, s.precheck_warnings = {}, [], []
    if not verdict.valid:
        s.findings = [dict(f) for f in verdict.errors]
        s.stalled, s.reason = True, "ValidationFailed"
        s.message = (f"{verdict.commit[:12]} is not applied: {len(s.findings)} error(s); "
                     f"keeping {(s.last_applied_revision or 'nothing')[:12]}")
        if new:
            s.errors_total += 1
            s.record(verdict.commit, "rejected", None, s.findings[0]["message"] if s.findings else "invalid")
        return s, fallback
    if verdict.commit == s.failed_revision:          # its rollout failed: not retried until a new commit
        return s, fallback
    return s, verdict.commit


def base_unknown(status, commit: str, message: str, temporary: bool, at: str):
    """The change cannot be judged (what it changes from is unknown): nothing is applied."""
    s = _copy(status)
    if commit != s.last_attempted_revision:
        s.last_attempted_revision, s.last_attempted_at = commit, at
        s.errors_total += 1
        s.record(commit, "rejected", None, message)
    s.ready = s.ready and temporary
    s.reconciling, s.stalled = temporary, not temporary
    s.reason = "EngineUnavailable" if temporary else "BaseUnknown"
    s.message = message
    return s


def settle(status, verdict: Verdict, result: Result, at: str, contract_started: dict):
    """(status, converge back?) after converging `result.commit`. `contract_started`:
    service -> commit of contract jobs that began and did not finish: after one, the
    database may be half-contracted, so the cloud stalls instead of converging back."""
    s = _copy(status)
    if result.warnings:                              # shown until another commit is attempted
        s.precheck_warnings = [dict(w, revision=result.commit) for w in result.warnings]
    if result.ok:
        if result.changed and result.drift_check and result.commit == s.last_applied_revision:
            s.drift_repairs += 1
        if result.commit == verdict.commit:
            if s.last_applied_revision != result.commit:
                s.record(result.commit, "applied", result.seconds, result.summary)
            s.last_applied_revision, s.last_applied_at = result.commit, at
            s.failed_revision, s.analysis = None, {}
        s.ready, s.reconciling = True, False
        if s.failed_revision is None and not s.findings:
            s.stalled = False
            s.reason, s.message = "Applied", f"running {result.commit[:12]}"
        return s, False
    if result.interrupted:                           # SIGTERM: not a failure; resumed later
        s.reconciling, s.reason, s.message = True, "Interrupted", result.summary
        return s, False
    s.errors_total += 1
    s.failure = dict(result.failure, revision=result.commit)
    if result.temporary and not contract_started:
        s.reconciling, s.stalled = True, False
        s.reason, s.message = "EngineUnavailable", result.summary
        return s, False
    s.reconciling, s.stalled = False, True
    s.reason, s.message = "RolloutFailed", result.summary
    if result.failure.get("phase") == "precheck":   # nothing of the change was applied
        s.reason = "PrecheckFailed"
        s.message = (f"{result.summary}; nothing of {result.commit[:12]} was applied (every old replica "
                     "serves): fix what the check reports, then push a new commit")
    ours = result.commit == verdict.commit and verdict.commit != s.last_applied_revision
    if ours:
        s.failed_revision = verdict.commit
        s.record(verdict.commit, "failed", result.seconds, result.summary)
    if result.evidence:
        return _analysis_failed(s, result, ours, contract_started)
    if contract_started:
        names = ", ".join(sorted(contract_started))
        s.reason = "ContractFailed"
        s.message = (f"{result.summary}; the contract phase of {names} started and did not finish: the database "
                     "may be half-contracted, so the cloud is NOT converged back. Retry it (tidegate contract "
                     f"--service {sorted(contract_started)[0]}) or fix forward with a new commit")
        return s, False
    return s, ours and s.last_applied_revision is not None


def settle_back(status, good_commit: str, ok: bool):
    """After converging back to the last good commit (the failed one stays failed)."""
    s = _copy(status)
    s.message += f"; converged back to {good_commit[:12]}" if ok else "; restoring the last good state failed too"
    if s.reason == "AnalysisFailed" and ok:
        s.reason = "RolledBack"
        s.analysis = dict(s.analysis, rolled_back=True)
        s.message += (f"; {s.failed_revision[:12]} is not applied again until a newer commit "
                      "(or `tidegate apply --retry-failed`)")
        s.record(good_commit, "restored", None,
                 f"converged back: the analysis of {s.analysis.get('service')} failed at {s.failed_revision[:12]}")
    return s


def window_closed_by(contracted: dict, commit: str, projects: dict, services) -> list[str]:
    """The services whose contract phase ran at `commit` in a project the change touched:
    the services of a project share a database, so one contract closes the rollback
    window of all of them (pure)."""
    touched = {projects.get(name) for name in services} - {None}
    return sorted(name for name, c in contracted.items()
                  if c.get("revision") == commit and projects.get(name) in touched)


def held(status) -> bool:
    """Whether what runs is held as it is: the analysis of the failed commit failed after
    the rollback window closed, so the last good commit may not run on its database."""
    a = status.analysis or {}
    return bool(status.failed_revision) and a.get("revision") == status.failed_revision and bool(a.get("held"))


def _analysis_failed(s, result: Result, ours: bool, contract_started: dict):
    """(status, converge back?) when the analysis after the rollout of `result.commit`
    failed: back to the last good commit while the rollback window is open; otherwise
    the cloud stalls, holding what runs, and says why."""
    s.analysis = dict(result.evidence, revision=result.commit, rolled_back=False, held=False)
    s.reason, s.message = "AnalysisFailed", analysis_message(result.evidence)
    closed = window_closed_by(s.contracted, result.commit, result.projects, result.services)
    why = None
    if contract_started:
        names = ", ".join(sorted(contract_started))
        why = (f"the contract phase of {names} started and did not finish (the database may be half-contracted); "
               f"retry it (tidegate contract --service {sorted(contract_started)[0]}) or fix forward")
    elif closed:
        project = result.projects.get(closed[0])
        why = (f"the contract phase of {', '.join(closed)} ran in this rollout, which closed the rollback window "
               f"of project {project} (one database); fix forward with a newer commit")
    elif result.no_way_back:
        project, reason = sorted(result.no_way_back.items())[0]
        why = (f"{project} has no rollback once its new release ran — {reason}; "
               "fix forward with a newer commit")
    elif not ours or s.last_applied_revision is None:
        why = "there is no other good commit to go back to"
    if why is None:
        return s, True
    s.analysis["held"] = bool(contract_started or closed or result.no_way_back)
    s.message += f"; NOT converged back: {why}"
    return s, False


def retry(status, commit: str, at: str):
    """An operator asks for a commit again (`apply --retry-failed`): a failed commit is
    forgotten as failed, so the next converge applies it like a new one."""
    s = _copy(status)
    if s.failed_revision != commit:
        return s
    s.failed_revision, s.analysis, s.failure = None, {}, {}
    s.reason, s.message = "Retrying", f"{commit[:12]} is retried on purpose"
    s.record(commit, "retried", None, "failed before; retried on purpose (--retry-failed)")
    return s


def hosts_view(previous: dict, hosts: dict, observed, unreachable: dict, engines: dict, at: str) -> dict:
    """Status per host: reachable or not and since when (kept while that does not change),
    the engine's kind and version, the cloud's containers on it per service."""
    out = {}
    for name, host in hosts.items():
        reachable = name not in unreachable
        before = previous.get(name) or {}
        since = before.get("since") if before.get("reachable") == reachable and before.get("since") else at
        counts: dict[str, int] = {}
        for c in observed.containers:
            if c.host == name:
                counts[c.service] = counts.get(c.service, 0) + 1
        out[name] = {"reachable": reachable, "since": since, "url": host.url or "",
                     "engine": engines.get(name) or before.get("engine") or host.engine,
                     "containers": counts, **({"error": unreachable[name]} if not reachable else {})}
    return out

