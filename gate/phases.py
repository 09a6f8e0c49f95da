"""The gate's phases, one small function each (Grenade's shape), in the order run.py runs
them: check, images, base, smoke+create, upgrade, verify, rollback, contract (with
--contract), destroy.

Each takes the running `Gate` (run.py: the test cloud, its engine, the report, and the
helpers every phase shares) and adds one `Phase` of cases to the report; a phase that
fails raises PhaseFailed through `gate.end`, and teardown still runs.
"""
from __future__ import annotations

import re
import time

# The one judge of a change the gate calls (the --json document of `tidegate check`);
# point this import at the shared library function when there is one.
from controller.report import check as judge_change
from validators.load import RepoError

from . import hooks
from .gitwork import GateError
from .probes import get, good
from .report import Phase

LOG_LINES = 20


def failed(p: Phase) -> str:
    """'case: message' of the phase's first failed case, '' when none failed."""
    bad = [c for c in p.cases if c.ok is False]
    return f"{bad[0].name}: {bad[0].message}" if bad else ""


# -- the phases ---------------------------------------------------------------------

def check(g) -> None:
    """The validators on head and on base → head: no container starts for a bad change."""
    p, t0 = g.phase("check")
    try:
        report = judge_change(g.repo_path, rev=g.report.head, base=g.report.base, cloud=g.cloud)
    except RepoError as err:
        raise GateError(str(err)) from None
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    for f in errors:
        where = f["file"] + (f":{f['line']}" if f.get("line") else "")
        p.case(f["rule"], False, message=f"{where}: {f['message']}", output=f.get("hint") or "")
    if not errors:
        p.case("validators", True)
    first = errors[0] if errors else None
    g.end(p, not errors, f"{len(errors)} error(s); first: {first['file']}"
          f"{':' + str(first['line']) if first.get('line') else ''}: {first['message']} [{first['rule']}]"
          if first else "", t0)


def images(g) -> None:
    """Images the test cloud needs at base and head, built from their recipes when missing."""
    from controller import images as builder
    from controller.engines import EngineError
    p, t0 = g.phase("images")
    built = 0
    for label, files in (("base", g.base), ("head", g.head)):
        folder = g.tree(label) / "images"
        for name, svc in sorted(g.loaded(files).cloud.services.items()):
            if not svc.build:
                if not g.engine.image_exists(svc.image):
                    p.case(f"{label}:{name}", False, message=f"image {svc.image} is not on the engine and the "
                                                            "service names no recipe (build:) to make it")
                continue
            # always through the builder: an image of the same name from another recipe (another
            # cloud's) must not stand in for this one; an up-to-date one costs a tag lookup
            t1 = time.monotonic()
            try:
                info, did = builder.build(g.engine, builder.load_recipe(folder, svc.build), log=lambda line: None)
                built += did
                if did:
                    p.case(f"{label}:{name}", True, time.monotonic() - t1, f"built {svc.image}")
            except builder.BuildError as err:
                p.case(f"{label}:{name}", False, time.monotonic() - t1, str(err), err.log)
            except EngineError as err:
                raise GateError(str(err)) from None
    if g.config.tempest is not None and not failed(p):
        from . import tempest as tp
        t1 = time.monotonic()
        try:
            g.tempest = tp.install(g.config.tempest.version, log=g.say)
        except tp.TempestError as err:
            raise GateError(str(err)) from None
        p.case(f"tempest {g.config.tempest.version}", True, time.monotonic() - t1, str(g.tempest))
    g.end(p, not failed(p), failed(p) or f"{built} built, the rest cached", t0)


def base(g) -> None:
    """A throw-away test cloud at the base commit, converged by the controller."""
    p, t0 = g.phase("base")
    rev = g.git.commit(g.base, f"base: {g.cloud} at {g.report.base[:12]}")
    g.converge(p, rev, "converge base")
    g.end(p, not failed(p), failed(p), t0)


def smoke_and_create(g) -> None:
    p, t0 = g.phase("smoke+create")
    smoke(g, p, "smoke")
    deep_checks(g, p, g.base, "smoke")
    if not failed(p):
        run_hooks(g, p, "create", g.order(g.base))
    if not failed(p):
        tempest(g, p, "tempest")
    g.end(p, not failed(p), failed(p), t0)


def upgrade(g) -> None:
    """The head commit, converged once as the controller will (one plan, its waves, the
    same executor) under availability probes; --matrix runs the verify hooks between waves
    and inside a wave of one in-place service after each host but the last (Nova's
    computes: one at the new release, one at the old), and a failing one stops the rollout
    like a failed step."""
    p, t0 = g.phase("upgrade")
    rev = g.git.commit(g.head, f"head: {g.cloud} at {g.report.head[:12]}")
    order = g.order(g.head)
    since = [time.monotonic()]

    def after_wave(number: int, total: int, wave, batch=None) -> str | None:
        names = ", ".join(sp.service for sp in wave)
        if batch is not None:        # inside an in-place wave: one host's replica new, another's old
            service, done, batches = batch
            if g.matrix:
                g.say(f"  wave {number}/{total}: {service}: {done} of {batches} hosts converged")
                run_hooks(g, p, "verify", order, label=f"verify within wave {number} ({service} {done}/{batches})")
            return failed(p) or None
        p.case(f"wave {number}: {names}", True, time.monotonic() - since[0])
        g.say(f"  wave {number}/{total}: {names}: converged")
        if g.matrix and number < total:
            run_hooks(g, p, "verify", order, label=f"verify after wave {number}")
        since[0] = time.monotonic()
        return failed(p) or None

    g.start_probes()
    loads = start_loads(g, "upgrade", order)
    try:
        g.converge(p, rev, "converge head", after_wave=after_wave)
    finally:
        failures, gap = g.stop_probes("upgrade")
        stop_loads(g, p, loads, "load during upgrade")
    budget(g, p, "upgrade", failures, gap)
    g.end(p, not failed(p), failed(p), t0)


def verify(g) -> None:
    p, t0 = g.phase("verify")
    smoke(g, p, "smoke")
    deep_checks(g, p, g.head, "smoke")
    run_hooks(g, p, "verify", g.order(g.head))
    tempest(g, p, "tempest after upgrade")
    g.end(p, not failed(p), failed(p), t0)


def rollback(g) -> None:
    """Base committed again, as `git revert` would, converged under probes, verified by
    the base's hooks; skipped (with the reason) when the transition rules forbid it."""
    p, t0 = g.phase("rollback")
    rev = g.git.commit(g.base, f"Revert to base {g.report.base[:12]} (as git revert would)")
    target = g.controller().target(rev, base=g.git.git("rev-parse", "HEAD~1"))
    refused = [f for f in target.findings if f.severity == "error"]
    if refused:
        why = "; ".join(f"{f.file}: {f.message}" for f in refused[:3])
        p.case("rollback allowed", None, message=why)
        g.end(p, None, f"the transition rules forbid rolling back: {why}", t0)
        return
    g.start_probes()
    loads = start_loads(g, "rollback", g.order(g.base), head_hooks=False)
    try:
        g.converge(p, rev, "converge back to base")
    finally:
        failures, gap = g.stop_probes("rollback")
        stop_loads(g, p, loads, "load during rollback")
    budget(g, p, "rollback", failures, gap)
    if not failed(p):
        smoke(g, p, "smoke")
        deep_checks(g, p, g.base, "smoke")
        run_hooks(g, p, "verify", g.order(g.base), label="verify after rollback", head_hooks=False)
        tempest(g, p, "tempest after rollback")
    g.end(p, not failed(p), failed(p), t0)


def contract(g) -> None:
    """The contract phase, as production will run it after the rollout: head again (after
    a rollback to base) under probes, then every owed contract job — what `tidegate
    contract` runs — under probes, then smoke and the verify hooks again. Skipped when no
    service of head has a contract job to owe."""
    from controller.reconcile import ContractRefused, ContractUnreachable
    from controller.status import Status
    p, t0 = g.phase("contract")
    g.start_probes()
    loads = start_loads(g, "contract", g.order(g.head))
    try:
        if g.git.files != g.head:                 # the rollback phase committed base again
            rev = g.git.commit(g.head, f"head again: {g.cloud} at {g.report.head[:12]}, to contract")
            g.converge(p, rev, "converge head again")
        owed = [] if failed(p) else [s for s in g.order(g.head)
                                     if s in Status.load(g.work / "state", g.name).pending_contract]
        ctl = g.controller()
        for service in owed:
            t1 = time.monotonic()
            try:
                ctl.contract(service)
                p.case(f"contract:{service}", True, time.monotonic() - t1)
            except (ContractRefused, ContractUnreachable) as err:
                status = Status.load(g.work / "state", g.name)
                p.case(f"contract:{service}", False, time.monotonic() - t1, str(err),
                       "\n".join(((status.failure or {}).get("logs") or "").splitlines()[-LOG_LINES:]))
                break
    finally:
        failures, gap = g.stop_probes("contract")
        stop_loads(g, p, loads, "load during contract")
    if not failed(p) and not owed:
        g.end(p, None, "no service of head owes a contract phase (no contract jobs)", t0)
        return
    budget(g, p, "contract", failures, gap)
    if not failed(p):
        smoke(g, p, "smoke")
        run_hooks(g, p, "verify", g.order(g.head), label="verify after contract")
        tempest(g, p, "tempest after contract")
    g.end(p, not failed(p), failed(p), t0)


def destroy(g) -> None:
    p, t0 = g.phase("destroy")
    run_hooks(g, p, "destroy", list(reversed(g.order(g.head))))
    g.end(p, not failed(p), failed(p), t0)


# -- what the phases share ------------------------------------------------------------

def precheck_case(p: Phase, event: str, step, detail: str) -> None:
    """One case per precheck job the executor ran (its progress event): a warning (exit 1)
    passes with the check's words, a failure fails the phase that converged."""
    if event not in ("done", "warning", "failed"):
        return
    seconds, _, words = detail.partition("s: ") if event == "warning" else (detail.rstrip("s"), "", "")
    try:
        took = float(seconds)
    except ValueError:
        took, words = 0.0, detail
    p.case(f"precheck:{step.service}:{step.note}", event != "failed", took,
           "warning: " + words if event == "warning" else words if event == "failed" else "")


def smoke(g, p: Phase, label: str) -> None:
    """Every endpoint answers with one of its status codes (a front may need a moment)."""
    for e in g.config.endpoints:
        url = g.endpoint_url(e.name)
        status, error = None, ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, error = get(url, g.config.probe_timeout, g.token(e.name))
            if good(status, e.status):
                break
            time.sleep(0.5)
        p.case(f"{label}:{e.name}", good(status, e.status), message=f"GET {url} → {status or error}")


def deep_checks(g, p: Phase, files, label: str) -> None:
    """Every service's deep readiness checks on every replica that runs, by the executor's
    own code (controller.readiness): what production demands of a successor, the gate
    demands of the whole test cloud (a successor was checked already when it came up)."""
    from controller.desired import LABEL_CLOUD, LABEL_REPLICA, LABEL_ROLE, LABEL_SERVICE
    from controller.engines.base import EngineError
    from controller.engines.health import via
    from controller.readiness import DeepChecks, Tokens
    from controller.secrets import Vault
    loaded = g.loaded(files)
    cloud = loaded.cloud
    engines = {host: g.engine for host in cloud.hosts}
    tokens = Tokens(cloud, engines, cloud.network, Vault.of(loaded.tree, cloud.folder, g.identities))
    for name, svc in sorted(cloud.services.items()):
        if not svc.checks:
            continue
        t1, problems, replicas = time.monotonic(), [], 0
        try:
            found = g.engine.list_containers({LABEL_CLOUD: cloud.name, LABEL_SERVICE: name, LABEL_ROLE: "replica"},
                                             all=False)
        except EngineError as err:
            raise GateError(str(err)) from None
        for info in sorted(found, key=lambda c: c.name):
            index = int(info.labels.get(LABEL_REPLICA, "0"))
            host = svc.placement[index % len(svc.placement)] if svc.placement else next(iter(cloud.hosts))
            route = via(g.engine, cloud.hosts[host].address)
            result = DeepChecks(g.engine, svc.checks, network=cloud.network, via=route, tokens=tokens).until_ready(info)
            replicas += 1
            if not result.ok:
                problems.append(f"{info.name}: {result.reason}")
        p.case(f"{label}:deep:{name}", not problems and replicas > 0, time.monotonic() - t1,
               "; ".join(problems) if problems else
               (f"{len(svc.checks)} check(s) passed on {replicas} replica(s)" if replicas else "no replica runs"))


def run_hooks(g, p: Phase, phase: str, order: list[str], label: str = "", head_hooks: bool = True) -> None:
    """The base's hooks of `phase` (always), then the head's new or changed ones."""
    for hook in hooks.select(g.base, g.head if head_hooks else {}, g.prefix, phase, order, g.projects()):
        cloud_dir = g.tree(hook.commit)
        result = hooks.run(cloud_dir / hook.path, hook.service, phase, {**g.hook_env(), **hook.environment()},
                           g.work / "hooks" / hook.commit, cloud_dir, g.config.hook_timeout)
        name = (label or phase) + (" (head)" if hook.commit == "head" else "")
        p.case(f"{name}:{hook.service}", result.ok, result.seconds, result.message, result.output)
        g.say(f"  {name} {hook.service}: {'ok' if result.ok else 'FAILED'}: {result.message}")


def start_loads(g, during: str, order: list[str], head_hooks: bool = True) -> list:
    """The `load` hooks (base's, and head's new or changed ones), started in the background
    for the phase `during` (see gate.hooks: a workload while the cloud changes)."""
    running = []
    for hook in hooks.select(g.base, g.head if head_hooks else {}, g.prefix, "load", order, g.projects()):
        cloud_dir = g.tree(hook.commit)
        running.append((hook, hooks.Load(cloud_dir / hook.path, hook.service, {**g.hook_env(), **hook.environment()},
                                         g.work / "hooks" / hook.commit, cloud_dir, during)))
        g.say(f"  load {hook.service}{' (head)' if hook.commit == 'head' else ''}: started")
    return running


def stop_loads(g, p: Phase, running: list, label: str) -> None:
    """SIGTERM to each load hook, then one case each with its verdict and summary line."""
    for hook, load in running:
        result = load.stop(g.config.hook_timeout)
        name = label + (" (head)" if hook.commit == "head" else "")
        output = result.output
        if not result.ok:    # a write the front failed: what it saw (a workload calls any endpoint)
            output += front_logs(g, [e.name for e in g.config.endpoints])
        p.case(f"{name}:{hook.service}", result.ok, result.seconds, result.message, output)
        g.say(f"  {name} {hook.service}: {'ok' if result.ok else 'FAILED'}: {result.message}")


def tempest(g, p: Phase, label: str) -> None:
    """The Tempest tests gate.yaml names, against the test cloud: one case with the counts."""
    if g.config.tempest is None:
        return
    from . import tempest as tp
    settings = g.config.tempest
    workspace = g.work / "tempest"
    conf = tp.conf(settings, g.endpoint_url(g.config.auth), g.config.env, set(g.projects().values()),
                   workspace / "logs")
    try:
        result = tp.run(g.tempest, settings, conf, workspace)
    except tp.TempestError as err:
        raise GateError(str(err)) from None
    p.case(label, result.ok, result.seconds, result.summary(), "" if result.ok else result.output)
    g.say(f"  {label}: {'ok' if result.ok else 'FAILED'}: {result.summary()}")


def budget(g, p: Phase, label: str, failures: int, gap: float) -> None:
    """The availability case: failed probe requests against the governing budget."""
    probes = g.report.probes[label]
    total = sum(v["ok"] + v["failed"] for v in probes.values())
    ok = failures <= g.config.failed_requests
    # name the endpoints that failed, and how: "placement: 12 failed (first: HTTP 500)"
    which = "; ".join(f"{name}: {v['failed']} failed"
                      + (f", {v['timed_out']} of them timed out after {v['timeout']:g}s" if v.get("timed_out") else "")
                      + f" (first: {v['errors'][0].split(' ', 1)[-1]})"
                      for name, v in probes.items() if v["failed"] and v["errors"])
    output = "\n".join(f"{name}: {e}" for name, v in probes.items() for e in v["errors"])
    if not ok:       # what the front saw: which backends it marked down, and why
        output += front_logs(g, [name for name, v in probes.items() if v["failed"]])
    p.case(f"availability:{label}", ok, message=f"{failures} failed of {total} probe requests "
           f"(budget {g.config.failed_requests}), longest gap {gap:.2f}s" + (f" — {which}" if which else ""),
           output=output)


def front_logs(g, endpoints: list[str]) -> str:
    """The last log lines of the services that serve the failing endpoints."""
    from controller.desired import LABEL_CLOUD, LABEL_SERVICE
    from controller.engines.base import EngineError
    text = ""
    for service in sorted({g.config.endpoint(n).service for n in endpoints}):
        try:
            for c in g.engine.list_containers({LABEL_CLOUD: g.name, LABEL_SERVICE: service}):
                if c.labels.get(LABEL_CLOUD) != g.name or c.labels.get(LABEL_SERVICE) != service:
                    continue                 # an engine that matched any, not every, label
                lines = once(g.engine.logs(c.name, tail=2 * LOG_LINES).splitlines())[-LOG_LINES:]
                text += f"\n--- {c.name} (last {len(lines)} log lines) ---\n" + "\n".join(lines)
        except EngineError as err:
            text += f"\n--- {service}: logs unavailable: {err} ---"
    return text


_LEVEL = re.compile(r"^\[(?:NOTICE|WARNING|ALERT)\]\s+\(\d+\)\s*:\s*")


def once(lines: list[str]) -> list[str]:
    """Log lines with each event once: HAProxy in the foreground writes a server's state
    change both to its log (stdout) and, as `[WARNING]  (8) : …`, to stderr — the same
    line twice in the container's log."""
    out: list[str] = []
    recent: list[str] = []
    for line in lines:
        text = _LEVEL.sub("", line).strip()
        if text and text in recent:
            continue
        out.append(line)
        recent = (recent + [text])[-4:]
    return out
