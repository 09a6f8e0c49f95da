"""One reconcile: source → validate → observe → plan → execute → status.

Level-triggered and idempotent: every call re-reads the commit and re-observes the
engines, so a restart after a crash, a drift (a container removed by hand) and a new
commit are all the same operation. An invalid commit is never applied: the last good
commit stays the desired state. A commit whose rollout fails its health gate is not
retried until a new commit arrives; the cloud is converged back to the last good commit.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from validators.check import check_state, check_transition
from validators.findings import Finding
from validators.load import RepoError, load_cloud

from .desired import Desired, desired_state
from .engines import Engine, connect
from .execute import Executor, Outcome, Progress
from .observe import observe
from .plan import Plan, plan
from .source import Source
from .status import Status, now


def default_engine_url(kind: str) -> str:
    """The engine a host without `url` uses: $TIDEGATE_<KIND>_URL, else the local
    engine `tidegate engine up` started, else the system socket."""
    env = os.environ.get(f"TIDEGATE_{kind.upper()}_URL")
    if env:
        return env
    try:
        from .engines import local
        url = local.default_url(kind)
        if url:
            return url
    except (ImportError, AttributeError):
        pass
    return {"podman": "unix:///run/podman/podman.sock", "docker": "unix:///var/run/docker.sock"}[kind]


def connect_hosts(cloud, urls: dict[str, str] | None = None) -> dict[str, Engine]:
    """One engine client per host of the cloud (lazy: nothing is contacted here)."""
    urls = urls or {}
    return {name: connect(h.engine, h.url or urls.get(h.engine) or default_engine_url(h.engine), name)
            for name, h in cloud.hosts.items()}


def trust_every_commit(commit) -> None:
    """The commit check of callers that need none: the gate (it applies commits it made
    itself, in its own throw-away repository) and `tidegate down` (it applies nothing)."""
    return None


class ContractRefused(Exception):
    """`tidegate contract` cannot run the phase (the reason is the message)."""


@dataclass
class Target:
    """A validated revision: what the controller would converge to."""
    commit: str
    desired: Desired | None
    findings: list[Finding]

    @property
    def valid(self) -> bool:
        return self.desired is not None and not any(f.severity == "error" for f in self.findings)


class Controller:
    def __init__(self, source: Source, cloud: str, *, state_dir: str | os.PathLike,
                 engines: dict[str, Engine] | None = None, engine_urls: dict[str, str] | None = None,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 verify_commit=None):
        self.source = source
        self.cloud = cloud
        self.state_dir = Path(state_dir)
        self._engines = engines
        self.engine_urls = engine_urls or {}
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.verify_commit = verify_commit        # callable(commit) -> error message or None

    # -- validation ------------------------------------------------------------
    def target(self, rev: str, *, base: str | None = None) -> Target:
        commit = self.source.commit(rev)
        cid = str(commit.id)
        if self.verify_commit is not None:
            problem = self.verify_commit(commit)
            if problem:
                return Target(cid, None, [Finding("", None, None, "error", "source.unsigned", problem,
                                                  "sign the commit with a trusted key (git commit -S)")])
        tree = self.source.tree(cid)
        loaded = load_cloud(tree, self.cloud)
        findings = check_state(loaded)
        base_loaded = None
        if base and base != cid and loaded.cloud is not None:
            try:
                base_loaded = load_cloud(self.source.tree(base), self.cloud)
            except RepoError:
                base_loaded = None
        if self.verify_commit is None and any(
                lc is not None and lc.cloud is not None and lc.cloud.policy.require_signed
                for lc in (loaded, base_loaded)):
            findings.append(Finding(f"clouds/{self.cloud}/cloud.yaml", None, None, "error", "source.unsigned",
                                    "policy.require_signed is on, but this controller was given no trusted keys",
                                    "start it with --allowed-signers FILE and/or --gpg-keyring FILE"))
        if base_loaded is not None and not any(f.severity == "error" for f in findings):
            if base_loaded.cloud is not None:
                down = [s for s, svc in loaded.cloud.services.items()
                        if s in base_loaded.cloud.services and svc.release < base_loaded.cloud.services[s].release]
                history = self.source.prior_states(self.cloud, base, down) if down else {}
                findings += check_transition(base_loaded, loaded, history)
        if loaded.cloud is None or any(f.severity == "error" for f in findings):
            return Target(cid, None, findings)
        return Target(cid, desired_state(loaded.cloud, tree, cid), findings)

    # -- engines -----------------------------------------------------------------
    def engines(self, desired: Desired) -> dict[str, Engine]:
        if self._engines is None:
            self._engines = connect_hosts(desired.cloud, self.engine_urls)
        return self._engines

    def config_root(self) -> str:
        return str(self.state_dir / self.cloud / "config")

    # -- plan and apply ------------------------------------------------------------
    def plan(self, desired: Desired, status: Status | None = None) -> tuple[Plan, dict[str, str]]:
        """Observe (read-only) and plan. Changes nothing."""
        status = status or Status.load(self.state_dir, self.cloud)
        observed, unreachable = observe(self.engines(desired), self.cloud)
        return plan(desired, observed, pending_contract=status.pending_contract), unreachable

    def reconcile(self, rev: str = "HEAD", *, drift_check: bool = False) -> Status:
        """Converge the cloud to `rev` (or keep it at the last good revision)."""
        status = Status.load(self.state_dir, self.cloud)
        target = self.target(rev, base=status.last_applied_revision)
        new_commit = target.commit != status.last_attempted_revision
        if new_commit:
            status.last_attempted_revision, status.last_attempted_at = target.commit, now()
            status.failure, status.findings = {}, []

        if not target.valid:
            status.findings = [f.as_dict() for f in target.findings if f.severity == "error"]
            status.stalled, status.reason = True, "ValidationFailed"
            status.message = f"{target.commit[:12]} is not applied: {len(status.findings)} error(s); keeping {(status.last_applied_revision or 'nothing')[:12]}"
            if new_commit:
                status.errors_total += 1
                status.record(target.commit, "rejected", None, status.findings[0]["message"] if status.findings else "invalid")
            desired = self._last_good(status)
        elif target.commit == status.failed_revision:
            desired = self._last_good(status)        # already failed its rollout: do not retry
        else:
            desired = target.desired

        if desired is None:                          # nothing good to converge to yet
            status.save(self.state_dir)
            return status

        outcome, the_plan = self._converge(desired, status)
        if outcome.ok:
            if the_plan is not None and not the_plan.empty and drift_check and desired.commit == status.last_applied_revision:
                status.drift_repairs += 1
            if desired.commit == target.commit:
                self._applied(status, desired, the_plan, outcome)
            return self._finish(status, desired)

        if outcome.interrupted:              # stopped on request (SIGTERM): not a failure; resumed later
            status.reconciling, status.reason, status.message = True, "Interrupted", outcome.summary()
            status.save(self.state_dir)
            return status

        # A failed rollout: report it, and go back to the last good state.
        self._failed(status, desired, outcome)
        if outcome.temporary:
            status.reconciling, status.stalled = True, False
            status.reason, status.message = "EngineUnavailable", outcome.summary()
        else:
            status.stalled, status.reason, status.message = True, "RolloutFailed", outcome.summary()
            if desired.commit == target.commit and target.commit != status.last_applied_revision:
                status.failed_revision = target.commit
                status.record(target.commit, "failed", outcome.seconds, outcome.summary())
                good = self._last_good(status)
                if good is not None:
                    back, _ = self._converge(good, status)
                    status.message += f"; converged back to {good.commit[:12]}" if back.ok else "; restoring the last good state failed too"
        status.save(self.state_dir)
        return status

    def contract(self, service: str) -> Status:
        """Run the owed contract phase of `service` at the last applied revision (how a cloud
        with `policy.contract: manual` closes the rollback window). Refused, with the reason,
        when no contract is owed or the service's rollout has not finished."""
        status = Status.load(self.state_dir, self.cloud)
        if not status.last_applied_revision:
            raise ContractRefused(f"cloud {self.cloud}: nothing applied yet")
        owed = status.pending_contract.get(service)
        if owed is None:
            ran = status.contracted.get(service)
            raise ContractRefused(f"{service}: no contract phase is owed" + (
                f" (it ran at {ran.get('revision', '')[:12]} on {ran.get('at')})" if ran else ""))
        desired = self._last_good(status)
        if desired is None or service not in desired.services or desired.services[service].hash != owed:
            raise ContractRefused(f"{service}: the upgrade that owes a contract is no longer what runs; "
                                  "apply the branch first")
        observed, unreachable = observe(self.engines(desired), self.cloud)
        if unreachable:
            raise ContractRefused(f"{service}: host(s) {', '.join(sorted(unreachable))} did not answer")
        full = plan(desired, observed, pending_contract={service: owed}, contract_now=frozenset({service}))
        mine = [sp for wave in full.waves for sp in wave if sp.service == service]
        if not mine or "contract" not in mine[0].phases or any(
                s.action not in ("network", "image", "job") for s in mine[0].steps):
            raise ContractRefused(f"{service}: its rollout has not finished (every replica must run the new "
                                  "release before contract); apply first")
        executor = Executor(self.engines(desired), desired, config_root=self.config_root(), progress=self.progress,
                            cancel=self.cancel, journal=lambda step: self._journal(status, desired, step))
        outcome = executor.run(Plan(full.cloud, full.commit, ((mine[0],),), ()))
        if outcome.ok:
            status.record(desired.commit, "contract", outcome.seconds, f"{service}: contract phase ran")
            try:
                record = self.source.record(desired.commit, self.cloud)
                contracted = sorted(self.source.contracted_in(record) | {service})
                self.source.add_note(desired.commit, self.cloud, {**record, "contract": contracted})
            except Exception as err:  # noqa: BLE001 — a read-only repo must not hide the result
                status.message = f"could not write git note: {err}"
        else:
            self._failed(status, desired, outcome)
        status.save(self.state_dir)
        if not outcome.ok:
            raise ContractRefused(f"{service}: contract failed: {outcome.summary()}")
        return status

    def _converge(self, desired: Desired, status: Status) -> tuple[Outcome, Plan | None]:
        the_plan, unreachable = self.plan(desired, status)
        status.unreachable = unreachable
        if the_plan.empty:
            self._observe_into(status, desired)
            return Outcome(ok=not unreachable, temporary=bool(unreachable),
                           error="; ".join(f"{h}: {e}" for h, e in unreachable.items())), the_plan
        status.reconciling, status.reason = True, "Progressing"
        status.message = f"converging to {desired.commit[:12]}"
        status.save(self.state_dir)
        executor = Executor(self.engines(desired), desired, config_root=self.config_root(),
                            progress=self.progress, cancel=self.cancel,
                            journal=lambda step: self._journal(status, desired, step))
        outcome = executor.run(the_plan)
        status.last_duration = outcome.seconds
        if outcome.ok:
            # an upgrade whose contract is pending but which is no longer desired (reverted,
            # or superseded) has nothing left to contract: its window closed with it
            for svc, h in list(status.pending_contract.items()):
                if svc not in desired.services or desired.services[svc].hash != h:
                    status.pending_contract.pop(svc)
        self._observe_into(status, desired)
        if outcome.ok and unreachable:
            outcome.ok, outcome.temporary = False, True
            outcome.error = "; ".join(f"host {h}: {e}" for h, e in unreachable.items())
        return outcome, the_plan

    @staticmethod
    def _failed(status: Status, desired: Desired, outcome: Outcome) -> None:
        status.errors_total += 1
        status.failure = {"revision": desired.commit,
                          "step": outcome.failed_step.describe() if outcome.failed_step else "",
                          "error": outcome.error, "logs": outcome.logs}

    def _journal(self, status: Status, desired: Desired, step) -> None:
        """Record a migration phase the moment it ran (saved at once: a kill -9 right after
        must not forget that a contract is owed, or that the rollback window closed)."""
        if step.action != "job" or step.phase not in ("expand", "migrate", "contract"):
            return
        ds = desired.services[step.service]
        if step.phase == "contract":
            status.pending_contract.pop(step.service, None)
            status.contracted[step.service] = {"hash": ds.hash, "revision": desired.commit, "at": now()}
        elif ds.service.upgrade.phase("contract"):        # nothing is owed by an upgrade without one
            status.pending_contract[step.service] = ds.hash
        else:
            return
        status.save(self.state_dir)

    @staticmethod
    def _health(engines: dict[str, Engine], desired: Desired, observed) -> dict[str, tuple[bool, str]]:
        """One probe of each running replica's health check, in parallel: status shows
        replicas that run but do not answer (READY counts only healthy ones)."""
        from concurrent.futures import ThreadPoolExecutor

        from .engines.base import EngineError
        from .engines.health import check_once
        todo = [(c, desired.services[c.service].service.health) for c in observed.containers
                if c.running and c.service in desired.services and desired.services[c.service].service.health]

        def probe(item):
            c, check = item
            try:
                info = engines[c.host].inspect(c.id)
            except EngineError as err:
                return c.name, (False, str(err))
            if info is None:
                return c.name, (False, "container disappeared")
            return c.name, check_once(engines[c.host], info, check, network=desired.cloud.network)
        if not todo:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(todo)), thread_name_prefix="tidegate-health") as pool:
            return dict(pool.map(probe, todo))

    def _applied(self, status: Status, desired: Desired, the_plan: Plan | None, outcome: Outcome) -> None:
        first = status.last_applied_revision != desired.commit
        status.last_applied_revision, status.last_applied_at = desired.commit, now()
        status.failed_revision = None
        if first:
            status.record(desired.commit, "applied", outcome.seconds, outcome.summary())
            record = {"result": "applied", "at": status.last_applied_at,
                      "hosts": sorted(self._engines or {}),
                      "services": sorted({sp.service for w in (the_plan.waves if the_plan else ()) for sp in w}),
                      "contract": sorted(s for s, c in status.contracted.items() if c.get("revision") == desired.commit)}
            try:
                self.source.add_note(desired.commit, self.cloud, record)
            except Exception as err:  # noqa: BLE001 — a read-only repo must not stop convergence
                status.message = f"could not write git note: {err}"

    def _finish(self, status: Status, desired: Desired) -> Status:
        status.ready, status.reconciling = True, False
        if status.failed_revision is None and not status.findings:
            status.stalled = False
            status.reason, status.message = "Applied", f"running {desired.commit[:12]}"
        status.save(self.state_dir)
        return status

    def _last_good(self, status: Status) -> Desired | None:
        if not status.last_applied_revision:
            return None
        target = self.target(status.last_applied_revision)
        return target.desired

    def _observe_into(self, status: Status, desired: Desired) -> None:
        engines = self.engines(desired)
        observed, unreachable = observe(engines, self.cloud)
        health = self._health(engines, desired, observed)
        services = {}
        for name, ds in desired.services.items():
            found = observed.of(name)
            services[name] = {
                "release": str(ds.service.release), "image": ds.service.image, "replicas": ds.service.replicas,
                "hash": ds.hash,
                "running": [{"host": c.host, "name": c.name, "state": c.state, "release": c.release,
                             "current": c.hash == ds.hash,
                             **({"healthy": health[c.name][0], "health": health[c.name][1]}
                                if c.name in health else {})} for c in found],
                "stale": sum(1 for c in found if c.hash != ds.hash),
            }
        status.services = services
        status.unreachable = dict(unreachable)
