"""Analysis after the rollout: once a change's last replica is replaced, and before its
contract phase, the service's http deep checks are asked THROUGH THE CLOUD'S FRONT — the
address clients use — every `interval` seconds for `window` seconds. Per-replica checks
prove each replica works on its own; a breakage that shows only through the front (a
header the balancer adds, a load only the whole service sees) shows here.

The front of a check's port is the model's (`Cloud.front`): the service's own published
port, else that of a service that depends on it and publishes the same container port
(the demo's HAProxy). It is reached where its running replicas publish that port: the
`host_ip` the port names (a virtual IP), else their host's address.

`Tally` and `describe` are pure; `analyse` does the probing. What a failure leads to
(converge back, or stall after a contract) is decided by controller.transitions.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from validators.model import Check, Cloud

from .desired import LABEL_CLOUD, LABEL_ROLE, LABEL_SERVICE, Desired
from .engines.base import Engine, EngineError
from .keystone import AuthError
from .readiness import Tokens, ask

ANSWER_LIMIT = 400               # characters of the failing answer kept as evidence
_ANY = ("", "0.0.0.0", "::")


def describe_check(check: Check) -> str:
    """One line for a plan: the check's name and what it asks (pure)."""
    if check.type == "exec":
        command = " ".join(check.command or ())
        return f"{check.name} (exec {command if len(command) <= 40 else command[:40] + '…'})"
    want = f" → {','.join(map(str, check.status))}" if check.status else ""
    auth = f", auth {check.auth}" if check.auth else ""
    return f"{check.name} ({check.method} {check.path}{want}{auth})"


def fronts(cloud: Cloud, service: str) -> dict[int, str]:
    """Port of each analysed check -> `front:port` that serves it (pure)."""
    out = {}
    for c in cloud.analysed_checks(service):
        found = cloud.front(service, c.port)
        if found is not None:
            out[c.port] = f"{found[0]}:{found[1].container}"
    return out


def describe(cloud: Cloud, service: str) -> str:
    """What the analysis of `service` will do, for a plan (pure); "" when it has none."""
    svc = cloud.services.get(service)
    checks = cloud.analysed_checks(service)
    if svc is None or not checks:
        return ""
    a = svc.analysis
    through = ", ".join(sorted(set(fronts(cloud, service).values()))) or "no front"
    return (f"{a.window:g}s through {through}: {', '.join(c.name for c in checks)}; "
            f"at most {a.max_failures} failure(s), every {a.interval:g}s")


@dataclass
class Tally:
    """Answers of an analysis and whether they are over the threshold (pure)."""
    max_failures: int
    asked: int = 0
    failed: int = 0
    failures: dict = field(default_factory=dict)      # check -> failed answers
    first: tuple[str, str, float] | None = None        # (check, answer, seconds in) of the first failure

    def add(self, check: str, ok: bool, answer: str, at: float) -> None:
        self.asked += 1
        if ok:
            return
        self.failed += 1
        self.failures[check] = self.failures.get(check, 0) + 1
        if self.first is None:
            self.first = (check, answer if len(answer) <= ANSWER_LIMIT else answer[:ANSWER_LIMIT] + "…", at)

    @property
    def over(self) -> bool:
        return self.failed > self.max_failures

    def evidence(self, service: str, window: float, seconds: float, through: str) -> dict:
        check, answer, at = self.first or ("", "", 0.0)
        return {"service": service, "check": check, "failures": self.failed, "asked": self.asked,
                "max_failures": self.max_failures, "window": window, "seconds": round(seconds, 2),
                "first_failure_at": round(at, 2), "front": through, "answer": answer}


def message(evidence: dict) -> str:
    """The one line status shows for a failed analysis (pure)."""
    return (f"analysis of {evidence['service']} failed: deep check {evidence['check']!r} through the front "
            f"{evidence['front']}: {evidence['failures']} failed of {evidence['asked']} answer(s) in "
            f"{evidence['seconds']:g}s (at most {evidence['max_failures']} allowed in {evidence['window']:g}s): "
            f"{evidence['answer']}")


@dataclass
class Result:
    ok: bool
    seconds: float
    asked: int
    evidence: dict = field(default_factory=dict)       # when not ok: what failed (Tally.evidence)
    cancelled: bool = False


def addresses(cloud: Cloud, engines: Mapping[str, Engine], front: str, port: int,
              host_ip: str = "") -> tuple[list[tuple[str, int]], str]:
    """Where the running replicas of `front` publish container port `port`: ([(address,
    port)], why none). `host_ip`, the address the port is bound to, when it names one."""
    found, why = [], f"the front {front} runs no replica publishing port {port}"
    for host_name, engine in engines.items():
        host = cloud.hosts.get(host_name)
        if host is None:
            continue
        labels = {LABEL_CLOUD: cloud.name, LABEL_SERVICE: front, LABEL_ROLE: "replica"}
        try:
            infos = engine.list_containers(labels, all=False)
        except EngineError as err:
            why = str(err)
            continue
        for info in infos:
            published = info.ports.get(f"{port}/tcp")
            if info.running and published:
                found.append((host_ip if host_ip not in _ANY else host.address, published))
    return sorted(set(found)), why


def analyse(engines: Mapping[str, Engine], desired: Desired, service: str, *,
            cancel: threading.Event | None = None, clock: Callable[[], float] = time.monotonic) -> Result:
    """Ask the service's http deep checks through the front every `interval` seconds for
    `window` seconds; stop at the first failure over `max_failures` (no need to wait out
    the window to know). A token is fresh for every round (a cached one hides a broken
    service password), asked of a serving replica of the auth's service."""
    cloud = desired.cloud
    svc = cloud.services[service]
    window, checks = svc.analysis.window, cloud.analysed_checks(service)
    cancel = cancel or threading.Event()
    tokens = Tokens(cloud, engines, cloud.network, desired.vault)
    routes, through = {}, set()
    for c in checks:
        if c.port in routes:
            continue
        derived = cloud.front(service, c.port)
        if derived is None:                   # `tidegate check` refuses it (semantic.analysis-front)
            routes[c.port] = ([], f"no front publishes port {c.port} of {service}")
            through.add(f"none for port {c.port}")
            continue
        front, port = derived
        found, why = addresses(cloud, engines, front, port.container, port.host_ip)
        routes[c.port] = (found, why)
        through.add(f"{front}:{port.container} ({', '.join(f'{a}:{p}' for a, p in found) or 'none running'})")
    through_text = ", ".join(sorted(through))
    tally = Tally(svc.analysis.max_failures)
    start = clock()
    turn, at = 0, 0.0                     # rounds at 0, interval, 2·interval … and one at `window`
    while True:
        fresh: dict[str, str] = {}
        for c in checks:
            found, why = routes[c.port]
            if not found:
                ok, answer = False, why
            else:
                token, ok, answer = None, True, ""
                if c.auth is not None:
                    try:
                        token = fresh.get(c.auth) or tokens.fresh(c.auth)
                        fresh[c.auth] = token
                    except AuthError as err:
                        ok, answer = False, str(err)
                if ok:
                    address, port = found[turn % len(found)]
                    ok, answer = ask(c, address, port, token)
            tally.add(c.name, ok, answer, clock() - start)
            if tally.over:
                seconds = clock() - start
                return Result(False, seconds, tally.asked, tally.evidence(service, window, seconds, through_text))
        if at >= window:
            break
        turn += 1
        at = min(turn * svc.analysis.interval, window)
        if cancel.wait(max(0.0, start + at - clock())):
            return Result(False, clock() - start, tally.asked, cancelled=True)
    return Result(True, clock() - start, tally.asked)
