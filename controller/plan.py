"""The planner: a PURE function `plan(desired, observed) -> Plan`.

No engine, no clock, no I/O. Given what git says should run and what the engines say
does run (containers found by label), it returns the ordered steps that converge one
to the other:

- a replica whose container carries the desired spec hash and runs is never touched;
- a changed service is replaced replica by replica: successor first, wait healthy,
  then stop (graceful), drain and remove the old one ("surge"); a service that publishes
  host ports cannot run two replicas on one host, so it is replaced in place, at most
  `max_unavailable` replicas at a time; `recreate` stops everything first;
- an upgrade (release goes up) runs the `expand` and `migrate` jobs before the first new
  replica starts and `contract` after the last old one is gone (cloud policy permitting);
- an upgrade's `precheck` jobs (`nova-status upgrade check`) run from the new image before
  ANY service of the change is touched: the plan lists them apart (`Plan.prechecks`) and
  the executor runs them all before the first wave. Only an upgrade runs them — not a
  first deploy, a config or same-release image change, a downgrade or a resumed rollout
  (a successor already runs: the change has begun);
- a first deployment runs the `bootstrap` jobs;
- a rollout interrupted half-way (controller killed) is finished, not restarted: a
  successor that already exists is waited for, not duplicated, and joins its service
  alias only through that wait (executor);
- services go in waves by dependency (depends_on, requires, agents after their project's
  control services, and a project's documented upgrade order — validators/upgrade_order.yaml:
  Nova's conductor, then scheduler and api, then computes); downgrades go in reverse
  order; removals last.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace

from validators import order
from validators.releases import Release

from .analysis import describe as describe_analysis, describe_check
from .desired import Container, Desired, DesiredService, Observed, container_name, job_name

# Rough durations (seconds) for the estimate; the bench measures the real ones.
_EST = {"network": 0.1, "image": 0.2, "config": 0.1, "create": 1.5, "pre-stop": 5.0, "drain": 0.3, "remove": 0.3,
        "job": 10.0}


@dataclass(frozen=True)
class Step:
    action: str                  # network | image | config | job | create | wait-healthy | pre-stop | stop | drain
                                 # | remove
                                 # | analyse (the service through the cloud's front, after its rollout)
    host: str
    service: str = ""
    replica: int | None = None
    container: str = ""          # container name (create) or name/id of an existing one
    phase: str = ""              # job phase: bootstrap | precheck | expand | migrate | contract
    job: int | None = None       # index of the job in its phase
    note: str = ""
    hold: float = 0.0            # wait-healthy: seconds it must then stay healthy (min_ready)

    def describe(self) -> str:
        if self.action == "analyse":
            return f"analyse {self.service} for {self.note}"
        if self.action == "job":
            return f"run {self.phase} job #{self.job + 1} on {self.host}{' (' + self.note + ')' if self.note else ''}"
        what = self.container or self.service
        text = f"{self.action} {what} on {self.host}"
        if self.hold:
            text += f", then healthy for {self.hold:g}s"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class ServicePlan:
    service: str
    change: str                  # deploy | upgrade | downgrade | update | repair | scale | remove
    from_release: str | None
    to_release: str | None
    strategy: str                # surge | in-place | recreate | remove | repair
    steps: tuple[Step, ...]
    phases: tuple[str, ...] = ()          # migration phases that will run
    out_at_once: int = 0                  # replicas out of service at once, at worst
    replicas: int = 0
    estimate: float = 0.0                 # seconds (of `steps`)
    checks: tuple[str, ...] = ()          # the service's deep checks, one line each
    analysis: str = ""                    # the analysis after its rollout, when this plan runs one
    precheck: tuple[Step, ...] = ()       # run before the plan's first wave (Plan.prechecks)


@dataclass(frozen=True)
class Plan:
    cloud: str
    commit: str
    waves: tuple[tuple[ServicePlan, ...], ...]
    untouched: tuple[str, ...]
    blocked: tuple[tuple[str, str], ...] = ()     # (host, why) not planned this time
    unobserved: tuple[str, ...] = ()              # services with replicas on a blocked host

    @property
    def empty(self) -> bool:
        return not self.waves

    @property
    def prechecks(self) -> list[ServicePlan]:
        """Services whose precheck jobs run before the first wave, in wave order."""
        return [sp for wave in self.waves for sp in wave if sp.precheck]

    @property
    def steps(self) -> list[Step]:
        return ([s for sp in self.prechecks for s in sp.precheck]
                + [s for wave in self.waves for sp in wave for s in sp.steps])

    @property
    def estimate(self) -> float:
        return (sum(_estimate(sp.precheck, None) for sp in self.prechecks)
                + sum(max((sp.estimate for sp in wave), default=0.0) for wave in self.waves))

    def as_dict(self) -> dict:
        return {
            "cloud": self.cloud, "commit": self.commit,
            "estimate_seconds": round(self.estimate, 1),
            "waves": [[dict(asdict(sp), steps=[asdict(s) for s in sp.steps]) for sp in wave]
                      for wave in self.waves],
            "untouched": list(self.untouched),
            "unobserved": list(self.unobserved),
            "blocked": [{"host": h, "reason": r} for h, r in self.blocked],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def render(self) -> str:
        lines = [f"plan for cloud {self.cloud} at {self.commit[:12]}"]
        if self.empty:
            lines.append("  nothing to do on the hosts that answered" if self.blocked
                         else "  nothing to do: every service runs its desired spec")
        if self.prechecks:
            lines.append("prechecks (new images, against the running cloud, before any change; "
                         "exit 1 warns, other failures block):")
            for sp in self.prechecks:
                lines.append(f"  {sp.service}:")
                for n, step in enumerate(sp.precheck, 1):
                    lines.append(f"    {n:>2}. {step.describe()}")
        for i, wave in enumerate(self.waves, 1):
            lines.append(f"wave {i}:")
            for sp in wave:
                rel = ""
                if sp.from_release != sp.to_release:
                    rel = f" {sp.from_release or '-'} → {sp.to_release or '-'}"
                phases = f", phases {'/'.join(sp.phases)}" if sp.phases else ""
                lines.append(f"  {sp.service}: {sp.change}{rel} ({sp.strategy}, {sp.replicas} replica(s), "
                             f"at most {sp.out_at_once} out at once{phases}, ~{sp.estimate:.0f}s)")
                if sp.checks:
                    lines.append(f"     deep checks: {', '.join(sp.checks)}")
                if sp.analysis:
                    lines.append(f"     analysis after the last replica: {sp.analysis}")
                for n, step in enumerate(sp.steps, 1):
                    lines.append(f"    {n:>2}. {step.describe()}")
        if self.untouched:
            lines.append(f"untouched: {', '.join(self.untouched)}")
        if self.unobserved:
            lines.append(f"unknown (a host did not answer): {', '.join(self.unobserved)}")
        for host, why in self.blocked:
            lines.append(f"blocked: host {host}: {why}")
        lines.append(f"estimate: ~{self.estimate:.0f}s")
        return "\n".join(lines)


@dataclass
class _Replica:
    index: int
    host: str
    good: Container | None = None                 # carries the desired hash on the right host
    stale: list = field(default_factory=list)     # to be replaced


def plan(desired: Desired, observed: Observed, *, pending_contract: dict | None = None,
         contract_now: frozenset = frozenset(), analyse: bool = True) -> Plan:
    """Steps converging `observed` to `desired`.

    `pending_contract`: service -> spec hash of an upgrade whose expand/migrate ran but
    whose contract has not (from the status record), so an interrupted upgrade still
    contracts once its rollout completes.

    `contract_now`: services whose owed contract an operator asked for (`tidegate
    contract`), which is how a cloud with `policy.contract: manual` closes the window.

    `analyse`: a change that replaces a service's replicas ends with the analysis of the
    service through the cloud's front (its `analysis:`), before its contract; not when
    the controller converges back to the last good commit.
    """
    pending_contract = pending_contract or {}
    cloud = desired.cloud
    down = observed.unreachable
    plans: dict[str, ServicePlan] = {}
    untouched: list[str] = []
    unobserved: list[str] = []
    blocked: set[tuple[str, str]] = {(h, "engine did not answer; retried at the next reconcile") for h in down}

    for name, ds in desired.services.items():
        sp = _plan_service(desired, ds, observed.of(name), down, pending_contract.get(name),
                           _contract_due(desired) or name in contract_now, analyse)
        if sp is not None:
            plans[name] = sp
        elif any(h in down for h in ds.service.placement):
            unobserved.append(name)           # not "untouched": we could not look
        else:
            untouched.append(name)

    for name in sorted({c.service for c in observed.containers} - set(desired.services)):
        steps = []
        for c in sorted(observed.of(name), key=lambda c: (c.replica, c.name)):
            if c.host in down:
                continue
            steps += _retire(c, note="service removed from the cloud; volumes kept")
        if steps:
            releases = {c.release for c in observed.of(name)}
            plans[name] = ServicePlan(name, "remove", max(releases) if releases else None, None, "remove",
                                      tuple(steps), out_at_once=len(observed.of(name)),
                                      estimate=sum(_est(s, None) for s in steps))

    return Plan(cloud.name, desired.commit, _waves(desired, plans), tuple(untouched),
                tuple(sorted(blocked)), tuple(unobserved))


def _retire(c: Container, note: str = "") -> list[Step]:
    """Stop one container gracefully, take it off the network, remove it.

    The stop signal comes first: the replica finishes its in-flight requests and closes
    its listener, and the balancer retries new connections on the other replicas.
    Disconnecting first (the other order) cuts responses in flight — measured: 2 failed
    requests of 2,001 during a 2-replica rolling upgrade, 0 with this order.

    A running container created with a pre-stop hook (lifecycle) runs it first: the
    replica takes itself out of service and finishes its work in flight (a Nova compute
    is disabled and its builds end) before anything stops it."""
    quiesce = [Step("pre-stop", c.host, c.service, c.replica, c.name)] if c.pre_stop and c.running else []
    return [*quiesce,
            Step("stop", c.host, c.service, c.replica, c.name, note=note),
            Step("drain", c.host, c.service, c.replica, c.name),
            Step("remove", c.host, c.service, c.replica, c.name)]


def _plan_service(desired: Desired, ds: DesiredService, found: list[Container], down: frozenset,
                  pending_hash: str | None, contract_due: bool, analyse: bool = True) -> ServicePlan | None:
    svc = ds.service
    cloud = desired.cloud.name
    replicas = [_Replica(i, host) for i, host in enumerate(svc.placement)]

    # Sort what we found into replicas: the good one (desired hash, right host, running
    # preferred) and the stale ones. Containers beyond `replicas` are surplus.
    surplus: list[Container] = []
    by_index = defaultdict(list)
    for c in found:
        by_index[c.replica].append(c)
    for index, cs in by_index.items():
        if index >= len(replicas):
            surplus += cs
            continue
        r = replicas[index]
        good = sorted((c for c in cs if c.hash == ds.hash and c.host == r.host),
                      key=lambda c: (not c.running, c.name))
        if good and good[0].running:
            r.good = good[0]
            r.stale = [c for c in cs if c is not good[0]]
        else:
            r.stale = list(cs)     # a stopped container with the right spec is recreated

    # Hosts that did not answer: plan nothing there (their containers are unknown).
    active = [r for r in replicas if r.host not in down]
    surplus = [c for c in surplus if c.host not in down]
    work = [r for r in active if r.good is None or r.stale or not r.good.joined]
    contract_owed = pending_hash == ds.hash and contract_due and bool(svc.upgrade.phase("contract"))
    if not work and not surplus and not contract_owed:
        return None

    old_releases = {Release.parse(c.release) for c in found if c.hash != ds.hash and c.release}
    new = svc.release
    if not found:
        change = "deploy"
    elif any(r < new for r in old_releases):
        change = "upgrade"
    elif any(r > new for r in old_releases):
        change = "downgrade"
    elif any(c.hash != ds.hash for c in found if c.replica < len(replicas)):
        change = "update"
    elif surplus and not any(r.good is None or r.stale for r in active):
        change = "scale"
    else:
        change = "repair"
    from_release = str(max(old_releases)) if old_releases else (None if change == "deploy" else str(new))

    steps: list[Step] = []
    phases: list[str] = []
    hosts_used = sorted({r.host for r in work if r.good is None})
    job_host = next((r.host for r in active), None)
    for host in sorted(set(hosts_used) | ({job_host} if job_host else set())):
        steps.append(Step("network", host, svc.name, note=desired.cloud.network))
        steps.append(Step("image", host, svc.name, note=svc.image))
        if ds.config:            # checked before any old replica is stopped
            steps.append(Step("config", host, svc.name, note=f"{len(ds.config)} file(s)"))

    def jobs(phase: str, items) -> None:
        if not items or job_host is None:
            return
        phases.append(phase)
        for i, _job in enumerate(items):
            steps.append(Step("job", job_host, svc.name, None,
                              job_name(cloud, svc.name, phase, i, ds.hash), phase=phase, job=i,
                              note=items[i].name))

    new_replica_exists = any(c.hash == ds.hash for c in found)
    precheck: list[Step] = []
    if change == "upgrade" and not new_replica_exists and job_host is not None and svc.upgrade.phase("precheck"):
        # its own network/image/config steps: it runs before the waves, so before the service's own
        precheck = [s for s in steps if s.host == job_host]
        for i, job in enumerate(svc.upgrade.phase("precheck")):
            precheck.append(Step("job", job_host, svc.name, None, job_name(cloud, svc.name, "precheck", i, ds.hash),
                                 phase="precheck", job=i, note=job.name))
        phases.append("precheck")
    if change == "deploy":
        jobs("bootstrap", svc.bootstrap)
    elif change == "upgrade" and not new_replica_exists:
        jobs("expand", svc.upgrade.phase("expand"))
        jobs("migrate", svc.upgrade.phase("migrate"))

    # 1. Finish what an interrupted rollout started: a healthy successor retires its
    #    predecessors before anything new starts.
    #    One that never joined its service alias (stopped between its gate and the
    #    join) is gated again, which joins it.
    for r in work:
        if r.good is not None:
            steps.append(Step("wait-healthy", r.host, svc.name, r.index, r.good.name,
                              note="successor from an interrupted rollout" if r.stale else "not yet in its alias"))
            for c in r.stale:
                steps += _retire(c)
    todo = [r for r in work if r.good is None]
    # A stopped container that already carries the successor's name must go first.
    for r in todo:
        for c in [c for c in r.stale if c.name == _name(cloud, svc.name, r, ds)]:
            r.stale.remove(c)
            steps += _retire(c, note="not running; recreated")

    # 2. Replace the rest.
    # A successor beside its predecessor needs a port of its own, and a service whose
    # identity is its host (strategy in-place: a Nova compute) must never run twice.
    surge_ok = svc.upgrade.strategy != "in-place" and not any(p.host is not None for p in svc.published)
    batch = max(1, svc.upgrade.max_unavailable)
    out_at_once = 0
    if svc.upgrade.strategy == "recreate" and any(r.stale for r in todo):
        strategy = "recreate"
        for r in todo:
            for c in r.stale:
                steps += _retire(c)
        for r in todo:
            steps.append(_create(cloud, svc.name, r, ds))
        for r in todo:
            steps.append(Step("wait-healthy", r.host, svc.name, r.index, _name(cloud, svc.name, r, ds)))
        out_at_once = len(replicas)
    elif surge_ok:
        strategy = "surge" if any(r.stale for r in todo) else ("repair" if change == "repair" else "surge")
        for group in _batches(todo, batch):
            for r in group:
                steps.append(_create(cloud, svc.name, r, ds))
            for r in group:
                steps.append(Step("wait-healthy", r.host, svc.name, r.index, _name(cloud, svc.name, r, ds)))
            for r in group:
                for c in r.stale:
                    steps += _retire(c, note="replaced")
    else:
        strategy = "in-place"
        for group in _batches(todo, batch):
            for r in group:
                for c in r.stale:
                    steps += _retire(c, note="replaced in place" if svc.upgrade.strategy == "in-place"
                                 else "host port: replaced in place")
            for r in group:
                steps.append(_create(cloud, svc.name, r, ds))
            for r in group:
                steps.append(Step("wait-healthy", r.host, svc.name, r.index, _name(cloud, svc.name, r, ds)))
            out_at_once = max(out_at_once, sum(1 for r in group if r.stale))

    # 3. Scale down: surplus replicas go last, highest index first.
    for c in sorted(surplus, key=lambda c: -c.replica):
        steps += _retire(c, note="scaled down")

    # 4. Analysis through the front once the last replica is replaced — before contract,
    #    while going back is still possible.
    analysis = ""
    if analyse and change in ("upgrade", "downgrade", "update") and job_host is not None \
            and any(s.action == "remove" for s in steps) and desired.cloud.analysed_checks(svc.name):
        analysis = describe_analysis(desired.cloud, svc.name)
        steps.append(Step("analyse", job_host, svc.name, note=analysis))

    # 5. Contract once every replica runs the new spec.
    if contract_due and svc.upgrade.phase("contract") and (
            change == "upgrade" or pending_hash == ds.hash) and not any(r.host in down for r in replicas):
        jobs("contract", svc.upgrade.phase("contract"))

    if not steps:
        return None
    steps = _hold(steps, svc.upgrade.min_ready)
    estimate = _estimate(steps, svc)
    return ServicePlan(svc.name, change, from_release, str(new), strategy, tuple(steps), tuple(phases),
                       out_at_once, len(replicas), estimate, tuple(describe_check(c) for c in svc.checks), analysis,
                       tuple(precheck))


def _contract_due(desired: Desired) -> bool:
    return desired.cloud.policy.contract == "after-rollout"


def _name(cloud: str, service: str, r: _Replica, ds: DesiredService) -> str:
    return container_name(cloud, service, r.index, ds.hash)


def _hold(steps: list[Step], min_ready: float) -> list[Step]:
    """A successor that an old replica's retirement waits for must stay healthy for
    `min_ready` seconds first: a load balancer that finds replicas through DNS and its
    own checks needs that long to put it into rotation, and a successor that passes
    one check and then falls over stops the rollout before the old replica is gone."""
    if not min_ready:
        return steps
    out, stop_follows = [], False
    for step in reversed(steps):
        if step.action == "wait-healthy" and stop_follows:
            step = replace(step, hold=min_ready)
        stop_follows = stop_follows or step.action == "stop"
        out.append(step)
    return out[::-1]


def _create(cloud: str, service: str, r: _Replica, ds: DesiredService) -> Step:
    return Step("create", r.host, service, r.index, _name(cloud, service, r, ds))


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _est(step: Step, svc) -> float:
    if step.action == "wait-healthy":
        return 2 * (svc.health.interval if svc is not None and svc.health else 1.0) + step.hold
    if step.action == "stop":
        return min(svc.stop_grace, 3.0) if svc is not None else 3.0
    if step.action == "analyse":
        return svc.analysis.window if svc is not None and svc.analysis is not None else 0.0
    return _EST.get(step.action, 0.5)


def _estimate(steps: list[Step], svc) -> float:
    return sum(_est(s, svc) for s in steps)


def _levels(desired: Desired) -> dict[str, int]:
    """Dependency depth of each service: 0 for services depending on nothing."""
    services = desired.cloud.services
    edges: dict[str, set[str]] = {name: set() for name in services}
    controls = defaultdict(set)
    steps = defaultdict(list)                      # project -> (step in its upgrade order, service)
    for name, svc in services.items():
        if svc.role == "control":
            controls[svc.project].add(name)
        at = order.step(svc)
        if at is not None:
            steps[svc.project].append((at, name))
    for name, svc in services.items():
        edges[name] |= {d for d in svc.depends_on if d in services}
        edges[name] |= {other for other, _ in svc.requires if other in services}
        if svc.role == "agent":
            edges[name] |= controls[svc.project]
        at = order.step(svc)
        if at is not None:
            edges[name] |= {other for step, other in steps[svc.project] if step < at}
        edges[name].discard(name)
    # Iterative depth-first walk (a chain of thousands of services must not hit Python's
    # recursion limit). A cycle — the validators reject those — is broken where it closes.
    level: dict[str, int] = {}
    for root in services:
        if root in level:
            continue
        stack = [(root, iter(sorted(edges[root])))]
        on_path = {root}
        while stack:
            name, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                on_path.discard(name)
                level[name] = 1 + max((level.get(d, -1) for d in edges[name] if d not in on_path), default=-1)
            elif dep not in level and dep not in on_path:
                stack.append((dep, iter(sorted(edges[dep]))))
                on_path.add(dep)
    return level


def _waves(desired: Desired, plans: dict[str, ServicePlan]) -> tuple[tuple[ServicePlan, ...], ...]:
    level = _levels(desired)
    top = max(level.values(), default=0)
    forward, backward, removals = defaultdict(list), defaultdict(list), []
    for name, sp in plans.items():
        if sp.change == "remove":
            removals.append(sp)
        elif sp.change == "downgrade":
            backward[top - level[name]].append(sp)     # agents roll back before their controls
        else:
            forward[level[name]].append(sp)
    waves = [tuple(sorted(forward[k], key=lambda sp: sp.service)) for k in sorted(forward)]
    waves += [tuple(sorted(backward[k], key=lambda sp: sp.service)) for k in sorted(backward)]
    if removals:
        waves.append(tuple(sorted(removals, key=lambda sp: sp.service)))
    return tuple(w for w in waves if w)


# Steps of one batch that may run at once: a replica's retirement ([pre-stop,] stop, drain,
# remove), its successor's create, its health gate. Only on DIFFERENT hosts: on one host the
# order stays as planned (one engine, one set of ports), so a cloud on one host runs as before.
_PARALLEL = {"pre-stop": "retire", "stop": "retire", "create": "create", "wait-healthy": "wait-healthy"}
_RETIRE = (["stop", "drain", "remove"], ["pre-stop", "stop", "drain", "remove"])


def _continues_retirement(chain: list[Step], step: Step) -> bool:
    """`step` is the next step of the retirement that `chain` began (same container)."""
    if chain[-1].container != step.container:
        return False
    actions = [s.action for s in chain] + [step.action]
    return any(actions == full[:len(actions)] for full in _RETIRE)


def parallel_segments(steps) -> list[list[list[Step]]]:
    """The steps in order, as segments of chains: the chains of one segment run at the
    same time (one per host), each chain's steps in order; segments one after another.
    Pure: `max_unavailable` already bounds what one batch takes out of service."""
    chains: list[list[Step]] = []
    for step in steps:
        if chains and _continues_retirement(chains[-1], step):
            chains[-1].append(step)
        else:
            chains.append([step])
    segments: list[tuple[str | None, list[list[Step]]]] = []
    for chain in chains:
        stage = _PARALLEL.get(chain[0].action)
        if stage == "retire" and [s.action for s in chain] not in _RETIRE:
            stage = None
        last = segments[-1] if segments else None
        if stage and last and last[0] == stage and chain[0].host not in {c[0].host for c in last[1]}:
            last[1].append(chain)
        else:
            segments.append((stage, [chain]))
    return [chains_ for _, chains_ in segments]
