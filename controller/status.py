"""Status in Flux's words: ready / reconciling / stalled, the last applied and the last
attempted revision, the reason — plus per-service desired vs running, the rollback
window (contract phases), and recent history. One JSON file per cloud, written
atomically; `tidegate status` reads it."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HISTORY = 30


class StatusUnreadable(Exception):
    """The status file exists but cannot be trusted (one line, with what to do)."""


# The JSON type(s) of each field `save` writes; anything else is not our file.
_SHAPE = {
    "cloud": (str,), "ready": (bool,), "reconciling": (bool,), "stalled": (bool,), "reason": (str,),
    "message": (str,), "last_applied_revision": (str, type(None)), "last_applied_at": (str, type(None)),
    "last_attempted_revision": (str, type(None)), "last_attempted_at": (str, type(None)),
    "failed_revision": (str, type(None)), "findings": (list,), "failure": (dict,),
    "pending_contract": (dict,), "contracted": (dict,), "contract_started": (dict,),
    "note_error": (str, type(None)), "precheck_warnings": (list,), "services": (dict,), "unreachable": (dict,),
    "hosts": (dict,), "retry_at": (str, type(None)), "analysis": (dict,),
    "drift_repairs": (int,), "errors_total": (int,), "last_duration": (int, float, type(None)),
    "history": (list,),
}
_JSON_NAMES = {str: "a string", bool: "true/false", list: "a list", dict: "a mapping", int: "a number",
               float: "a number", type(None): "null"}


def _shape_problem(data, cloud: str) -> str | None:
    if not isinstance(data, dict):
        return "not a status file (expected a JSON object)"
    for name, types in _SHAPE.items():
        if name in data and (not isinstance(data[name], types)
                             or (isinstance(data[name], bool) and bool not in types)):
            return f"field {name}: expected {' or '.join(dict.fromkeys(_JSON_NAMES[t] for t in types))}"
    if data.get("cloud") != cloud:
        return f"field cloud: {data.get('cloud')!r} is not this cloud ({cloud!r})"
    return None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Status:
    cloud: str
    ready: bool = False
    reconciling: bool = False
    stalled: bool = False
    reason: str = "NeverApplied"
    message: str = ""
    last_applied_revision: str | None = None
    last_applied_at: str | None = None
    last_attempted_revision: str | None = None
    last_attempted_at: str | None = None
    failed_revision: str | None = None        # permanent failure: not retried until a new commit
    analysis: dict = field(default_factory=dict)   # the last failed analysis: evidence, rolled back or held
    findings: list = field(default_factory=list)
    failure: dict = field(default_factory=dict)   # step, error, logs
    pending_contract: dict = field(default_factory=dict)   # service -> hash (expand ran, contract not)
    contracted: dict = field(default_factory=dict)         # service -> {hash, revision, at}
    contract_started: dict = field(default_factory=dict)   # service -> {hash, revision, at}: begun, not done
    note_error: str | None = None                           # the last git note that could not be written
    precheck_warnings: list = field(default_factory=list)  # of the last attempted revision's prechecks (exit 1)
    services: dict = field(default_factory=dict)           # service -> desired vs running
    unreachable: dict = field(default_factory=dict)        # host -> error
    hosts: dict = field(default_factory=dict)              # host -> reachable, since, engine, containers
    retry_at: str | None = None                            # when `run` tries an unreachable engine again
    drift_repairs: int = 0
    errors_total: int = 0
    last_duration: float | None = None
    history: list = field(default_factory=list)

    # -- persistence ---------------------------------------------------------
    @staticmethod
    def path(state_dir: str | os.PathLike, cloud: str) -> Path:
        return Path(state_dir) / cloud / "status.json"

    @classmethod
    def load(cls, state_dir, cloud: str) -> "Status":
        """The cloud's status; a fresh one when there is no file. A file that cannot be read,
        is not JSON or is not of the shape `save` writes raises StatusUnreadable: a torn or
        foreign status never silently becomes "nothing applied" (the transition rules would
        then judge a change from nothing)."""
        p = cls.path(state_dir, cloud)
        aside = (f"move it aside (mv {p} {p}.bad) and tidegate rebuilds the last applied state from "
                 "the tidegate.commit labels of what runs")
        try:
            text = p.read_bytes()
        except FileNotFoundError:
            return cls(cloud)
        except OSError as err:
            raise StatusUnreadable(f"{p}: cannot read: {err.strerror}") from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise StatusUnreadable(f"{p}: not valid JSON (a torn write or a hand edit); nothing is "
                                   f"applied until it is fixed: {aside}") from None
        problem = _shape_problem(data, cloud)
        if problem:
            raise StatusUnreadable(f"{p}: {problem}; nothing is applied until it is fixed: {aside}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, state_dir) -> None:
        """Atomically and durably: a temporary file, fsync, rename, fsync of the folder — a
        crash or power loss leaves the old file or the new one, never a torn one."""
        p = self.path(state_dir, self.cloud)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        data = json.dumps(asdict(self), indent=2, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
        folder = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    # -- transitions ---------------------------------------------------------
    def condition(self) -> str:
        if self.stalled:
            return "Stalled"
        if self.reconciling:
            return "Reconciling"
        return "Ready" if self.ready else "NotReady"

    def record(self, revision: str, result: str, seconds: float | None, summary: str) -> None:
        self.history.insert(0, {"revision": revision, "at": now(), "result": result,
                                "seconds": None if seconds is None else round(seconds, 2), "summary": summary})
        del self.history[HISTORY:]

    def as_dict(self) -> dict:
        return dict(asdict(self), condition=self.condition())

    def render(self) -> str:
        short = lambda rev: rev[:12] if rev else "-"
        lines = [f"cloud {self.cloud}: {self.condition()} ({self.reason}){': ' + self.message if self.message else ''}",
                 f"  last applied:   {short(self.last_applied_revision)}  {self.last_applied_at or ''}",
                 f"  last attempted: {short(self.last_attempted_revision)}  {self.last_attempted_at or ''}"]
        if self.services:
            lines.append("")
            lines.append(f"  {'SERVICE':<20} {'RELEASE':<9} {'IMAGE':<40} {'READY':<7} {'STATE'}")
            from .metrics import ready_replicas
            for name, s in sorted(self.services.items()):
                running = s.get("running", [])
                ok = ready_replicas(s)
                state = "ok" if ok == s.get("replicas", 0) and len(running) == ok else "converging"
                sick = [r for r in running if r.get("healthy") is False]
                if sick:
                    state = f"{len(sick)} unhealthy: {sick[0]['name']}: {sick[0].get('health', '')}"[:60]
                elif s.get("stale"):
                    state = f"{s['stale']} old replica(s)"
                lines.append(f"  {name:<20} {s.get('release', ''):<9} {s.get('image', '')[:40]:<40} "
                             f"{ok}/{s.get('replicas', 0):<5} {state}")
        if self.failed_revision:
            lines.append(f"  failed revision: {short(self.failed_revision)} — not applied again until a newer commit "
                         f"(`tidegate apply --retry-failed --rev {short(self.failed_revision)}` retries it on purpose)")
        if self.analysis:
            a = self.analysis
            done = ("converged back" if a.get("rolled_back") else
                    "NOT converged back: what runs is held" if a.get("held") else "not converged back")
            lines.append(f"  analysis of {a.get('service')} at {short(a.get('revision'))}: "
                         f"deep check {a.get('check')!r} failed {a.get('failures')} of {a.get('asked')} in {a.get('seconds')}s through "
                         f"{a.get('front')}; {done}")
            lines.append(f"    | {a.get('answer', '')}")
        if self.pending_contract:
            lines.append(f"  rollback window open (contract not run): {', '.join(sorted(self.pending_contract))}")
        if self.contracted:
            lines.append("  contract ran (no rollback past it): " + ", ".join(
                f"{svc} at {c.get('revision', '')[:12]}" for svc, c in sorted(self.contracted.items())))
        for svc, c in sorted(self.contract_started.items()):
            lines.append(f"  contract of {svc} started at {c.get('revision', '')[:12]} and did not finish: "
                         f"retry it with `tidegate contract --service {svc}`, or fix forward")
        for w in self.precheck_warnings:
            lines.append(f"  precheck warning at {w.get('revision', '')[:12]}: {w.get('service')} "
                         f"({w.get('job')}) exited {w.get('exit_code')}: {w.get('summary')}")
        if self.note_error:
            lines.append(f"  {self.note_error}")
        if self.hosts:
            lines.append("")
            lines.append(f"  {'HOST':<12} {'STATE':<12} {'SINCE':<21} {'ENGINE':<16} CONTAINERS")
            for host, h in sorted(self.hosts.items()):
                per = ", ".join(f"{svc} {n}" for svc, n in sorted((h.get("containers") or {}).items())) or "-"
                lines.append(f"  {host:<12} {'reachable' if h.get('reachable') else 'UNREACHABLE':<12} "
                             f"{h.get('since') or '':<21} {(h.get('engine') or '-')[:16]:<16} {per}")
        for host, error in sorted(self.unreachable.items()):
            lines.append(f"  host {host} unreachable: {error}")
        if self.unreachable and self.retry_at:
            lines.append(f"  next try: {self.retry_at} (backoff grows while a host stays away)")
        if self.findings:
            lines.append("  findings that blocked the last attempted revision:")
            for f in self.findings[:10]:
                where = f["file"] + (f":{f['line']}" if f.get("line") else "")
                lines.append(f"    {where}: {f['severity']}: {f['message']} [{f['rule']}]")
        if self.failure:
            lines.append(f"  failed step: {self.failure.get('step')}: {self.failure.get('error')}")
            for line in (self.failure.get("logs") or "").splitlines()[-10:]:
                lines.append(f"    | {line}")
        if self.history:
            lines.append("  history:")
            for h in self.history[:5]:
                lines.append(f"    {h['at']}  {short(h['revision'])}  {h['result']:<10} {h['summary']}")
        return "\n".join(lines)
