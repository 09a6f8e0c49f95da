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
    findings: list = field(default_factory=list)
    failure: dict = field(default_factory=dict)   # step, error, logs
    pending_contract: dict = field(default_factory=dict)   # service -> hash (expand ran, contract not)
    contracted: dict = field(default_factory=dict)         # service -> {hash, revision, at}
    services: dict = field(default_factory=dict)           # service -> desired vs running
    unreachable: dict = field(default_factory=dict)        # host -> error
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
        p = cls.path(state_dir, cloud)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            return cls(cloud)
        except ValueError:
            # a torn write cannot happen (atomic replace); a hand-edited file can
            return cls(cloud, reason="StatusUnreadable", message=f"{p} was not valid JSON; starting afresh")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, state_dir) -> None:
        p = self.path(state_dir, self.cloud)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, p)

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
        if self.pending_contract:
            lines.append(f"  rollback window open (contract not run): {', '.join(sorted(self.pending_contract))}")
        if self.contracted:
            lines.append("  contract ran (no rollback past it): " + ", ".join(
                f"{svc} at {c.get('revision', '')[:12]}" for svc, c in sorted(self.contracted.items())))
        for host, error in sorted(self.unreachable.items()):
            lines.append(f"  host {host} unreachable: {error}")
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
