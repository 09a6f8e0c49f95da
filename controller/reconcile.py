"""One reconcile: source → validate → observe → plan → execute → status.

Level-triggered and idempotent: every call re-reads the commit and re-observes the
engines, so a restart after a crash, a drift (a container removed by hand) and a new
commit are all the same operation. An invalid commit is never applied: the last good
commit stays the desired state. A commit whose rollout fails its health gate, or whose
analysis after the rollout fails (controller/analysis.py), is not retried until a new
commit arrives (or `retry_failed`); the cloud is converged back to the last good commit
while the rollback window is open.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from validators import order
from validators.check import judge
from validators.findings import Finding
from validators.load import RepoError, load_cloud
from validators.releases import Release

from . import secrets
from .desired import Desired, desired_state
from .engines import Engine, EngineError, connect
from .engines.remote import host_access
from .execute import AfterWave, Executor, Outcome, Progress
from .observe import observe
from .plan import Plan, plan
from .source import Source
from . import transitions
from .status import Status, now

log = logging.getLogger("tidegate.controller")


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
    return {name: connect(h.engine, h.url or urls.get(h.engine) or default_engine_url(h.engine), name,
                          host_access(h))
            for name, h in cloud.hosts.items()}


def trust_every_commit(commit) -> None:
    """The commit check of callers that need none: the gate (it applies commits it made
    itself, in its own throw-away repository) and `tidegate down` (it applies nothing)."""
    return None


class ContractRefused(Exception):
    """`tidegate contract` cannot run the phase (the reason is the message)."""


class BaseUnknown(Exception):
    """A change cannot be judged: what it changes from (the last applied state) is unknown.
    `temporary`: a host did not answer (retried); otherwise the operator must act."""

    def __init__(self, message: str, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary


OVERRIDE = "--assume-base REV"
class ContractUnreachable(Exception):
    """`tidegate contract` could run the phase, but a host's engine does not answer."""


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
                 verify_commit=None, assume_base: str | None = None, after_wave: AfterWave | None = None,
                 identities=None):
        self.source = source
        # the age key(s) this controller decrypts the cloud's secrets with (None: $TIDEGATE_AGE_KEY_FILE)
        self.identities = list(identities) if identities is not None else secrets.identities_from_env()
        self.cloud = cloud
        self.state_dir = Path(state_dir)
        self._fixed_engines = engines             # the gate's and tests' own engines, by host
        self._connections: dict[tuple[str, str, str], Engine] = {}
        self.engine_urls = engine_urls or {}
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.verify_commit = verify_commit        # callable(commit) -> error message or None
        # signed mode: a new tip must descend from what was applied (no force-push back)
        self.require_descent = verify_commit is not None and verify_commit is not trust_every_commit
        self.assume_base = assume_base            # the operator names the base (it is unknown)
        self.after_wave = after_wave              # the gate's between-wave checks (--matrix)

    # -- validation ------------------------------------------------------------
    def target(self, rev: str, *, base: str | tuple[str, ...] | list[str] | None = None) -> Target:
        """`rev` judged as a change from `base` (one commit, several — every one must allow
        it — or none for a cloud that has nothing applied)."""
        commit = self.source.commit(rev)
        cid = str(commit.id)
        bases = [b for b in ([base] if isinstance(base, str) else (base or ())) if b and b != cid]
        if self.verify_commit is not None:
            problem = self.verify_commit(commit)
            if problem:
                return Target(cid, None, [Finding("", None, None, "error", "source.unsigned", problem,
                                                  "sign the commit with a trusted key (git commit -S)")])
        if self.require_descent:
            for b in bases:
                if not self.source.descends(cid, b):
                    return Target(cid, None, [Finding(
                        "", None, None, "error", "source.not-descendant",
                        f"commit {cid[:12]} does not descend from {b[:12]}, the last applied commit: signed mode "
                        "applies only history that moves forward (an older signed commit or another branch "
                        "force-pushed as the branch is refused)",
                        "merge or revert on top of the applied history (git revert makes a descendant)")])
        tree = self.source.tree(cid)
        loaded = load_cloud(tree, self.cloud)
        findings: set[Finding] = set()
        loaded_bases = []
        for b in bases:
            try:
                base_loaded = load_cloud(self.source.tree(b), self.cloud)
            except RepoError:
                base_loaded = None              # the cloud did not exist there: nothing to judge from
            loaded_bases.append(base_loaded)
            findings |= set(judge(loaded, base_loaded,
                                  lambda services, b=b: self.source.prior_states(self.cloud, b, services)))
        if not bases:
            findings |= set(judge(loaded, None))
        findings = sorted(findings)
        if self.verify_commit is None and any(
                lc is not None and lc.cloud is not None and lc.cloud.policy.require_signed
                for lc in (loaded, *loaded_bases)):
            findings.append(Finding(f"clouds/{self.cloud}/cloud.yaml", None, None, "error", "source.unsigned",
                                    "policy.require_signed is on, but this controller was given no trusted keys",
                                    "start it with --allowed-signers FILE and/or --gpg-keyring FILE"))
        if loaded.cloud is None or any(f.severity == "error" for f in findings):
            return Target(cid, None, findings)
        desired = desired_state(loaded.cloud, tree, cid, secrets.Vault.of(tree, loaded.cloud.folder, self.identities))
        problems = desired.vault.problems(desired.secrets_used())     # decrypted in memory, kept there
        if problems:
            return Target(cid, None, sorted(findings + problems))
        return Target(cid, desired, findings)

    def bases(self, status: Status, rev: str) -> tuple[str, ...]:
        """What a change to `rev` is judged from: the last applied commit. When that is not
        known (no status file: a new or a deleted state dir) or gone from the repository (a
        force-push and gc), the newest commits on the running replicas' `tidegate.commit`
        labels. Empty only for a cloud that never applied anything and runs nothing.
        Raises BaseUnknown when neither can tell (the transition rules are never skipped)."""
        if self.assume_base:
            return (str(self.source.commit(self.assume_base).id),)
        last = status.last_applied_revision
        if last and self.source.has(last):
            return (last,)
        if self.verify_commit is not None and self.verify_commit(self.source.commit(rev)):
            return ()                           # rejected for its signature, nothing is applied
        head = load_cloud(self.source.tree(rev), self.cloud)
        if head.cloud is None:
            return ()                           # rejected on its own findings, nothing is applied
        lost = (f"the last applied commit {last[:12]} is not in {self.source.path} (force-pushed away and "
                "garbage-collected?)" if last else f"no status for cloud {self.cloud} in {self.state_dir}")
        observed, unreachable = observe(self._engines_for(head.cloud), self.cloud)
        if unreachable:
            raise BaseUnknown(f"{lost}, and what runs is not known: "
                              + "; ".join(unreachable[h] for h in sorted(unreachable))
                              + ": not applying until every host answers", temporary=True)
        labelled = {c.commit for c in observed.containers if c.commit}
        if not labelled:
            if last:
                raise BaseUnknown(f"{lost}, and no replica of the cloud runs to rebuild it from: nothing is "
                                  f"applied; name the base yourself ({OVERRIDE})")
            return ()
        missing = sorted(c for c in labelled if not self.source.has(c))
        if missing:
            raise BaseUnknown(f"{lost}; replicas run commit {missing[0][:12]}, which is not in the repository "
                              f"either: nothing is applied; fetch it, or name the base yourself ({OVERRIDE})")
        return tuple(sorted(c for c in labelled
                            if not any(o != c and self.source.descends(o, c) for o in labelled)))

    # -- engines -----------------------------------------------------------------
    def engines(self, desired: Desired) -> dict[str, Engine]:
        return self._engines_for(desired.cloud)

    def _engines_for(self, cloud) -> dict[str, Engine]:
        """An engine client per host of `cloud` (a commit's hosts, so a commit that adds a
        host gets it): made at the edge, reused while a host's kind and URL stay the same."""
        if self._fixed_engines is not None:
            unknown = sorted(set(cloud.hosts) - set(self._fixed_engines))
            if unknown:
                raise RepoError(f"cloud {self.cloud}: host(s) {', '.join(unknown)} have no engine here "
                                f"(engines given: {', '.join(sorted(self._fixed_engines)) or 'none'})")
            return {name: self._fixed_engines[name] for name in cloud.hosts}
        out = {}
        for name, h in cloud.hosts.items():
            key = (name, h.engine, h.url or self.engine_urls.get(h.engine) or default_engine_url(h.engine),
                   host_access(h))
            if key not in self._connections:
                self._connections[key] = connect(key[1], key[2], name, key[3])
            out[name] = self._connections[key]
        return out

    # -- plan and apply ------------------------------------------------------------
    def plan(self, desired: Desired, status: Status | None = None, analyse: bool = True
             ) -> tuple[Plan, dict[str, str]]:
        """Observe (read-only) and plan. Changes nothing."""
        status = status or Status.load(self.state_dir, self.cloud)
        observed, unreachable = observe(self.engines(desired), self.cloud)
        return plan(desired, observed, pending_contract=status.pending_contract, analyse=analyse), unreachable

    def reconcile(self, rev: str = "HEAD", *, drift_check: bool = False, retry_failed: bool = False) -> Status:
        """Converge the cloud to `rev` (or keep it at the last good revision). The decisions
        are controller.transitions' pure functions; this does the effects between them.
        `retry_failed`: `rev` is applied even if its rollout (or its analysis) failed before."""
        status = Status.load(self.state_dir, self.cloud)
        if retry_failed:
            status = transitions.retry(status, str(self.source.commit(rev).id), now())
        try:
            bases = self.bases(status, rev)
        except BaseUnknown as err:
            status = transitions.base_unknown(status, str(self.source.commit(rev).id), str(err),
                                              err.temporary, now())
            status.save(self.state_dir)
            return status
        target = self.target(rev, base=bases)
        target.findings += self._half_contracted(status, target)
        verdict = transitions.Verdict(target.commit, target.valid,
                                      tuple(f.as_dict() for f in target.findings if f.severity == "error"))
        status, commit = transitions.begin(status, verdict, now(), self._contract_started(status))
        desired = None if commit is None else target.desired if commit == target.commit else self._last_good(status)
        if desired is None:                          # nothing good to converge to (yet), or hold what runs
            status.save(self.state_dir)
            return status

        # between-wave checks and the analysis after a rollout judge a NEW target, not a
        # return to the last good state nor a repair of what was applied
        new = desired.commit == target.commit and desired.commit != status.last_applied_revision
        outcome, the_plan = self._converge(desired, status,
                                           after_wave=self.after_wave if desired.commit == target.commit else None,
                                           analyse=new)
        first = outcome.ok and desired.commit == target.commit and status.last_applied_revision != desired.commit
        result = self._result(desired, outcome, the_plan, drift_check)
        if outcome.evidence:                         # the analysis failed: can this rollout go back?
            result = replace(result, no_way_back=self._no_way_back(desired, status))
        status, back = transitions.settle(status, verdict, result, now(), self._contract_started(status))
        if first:
            self._note(status, desired, the_plan)
        if back:
            good = self._last_good(status)
            if good is not None:
                # converging says "Progressing" while it runs; the verdict on the failed commit stays
                verdict_said = (status.reason, status.message, status.reconciling, status.stalled)
                back_outcome, _ = self._converge(good, status, analyse=False)
                status.reason, status.message, status.reconciling, status.stalled = verdict_said
                status = transitions.settle_back(status, good.commit, back_outcome.ok)
        status.save(self.state_dir)
        return status

    @staticmethod
    def _result(desired: Desired, outcome: Outcome, the_plan: Plan | None, drift_check: bool) -> transitions.Result:
        failure = {} if outcome.ok else {"step": outcome.failed_step.describe() if outcome.failed_step else "",
                                         "error": outcome.error, "logs": outcome.logs}
        if outcome.failed_step is not None and outcome.failed_step.phase == "precheck":
            failure["phase"] = "precheck"
        return transitions.Result(desired.commit, outcome.ok, outcome.summary(), outcome.seconds,
                                  outcome.interrupted, outcome.temporary, failure,
                                  changed=the_plan is not None and not the_plan.empty, drift_check=drift_check,
                                  evidence=outcome.evidence,
                                  projects={n: ds.service.project for n, ds in desired.services.items()},
                                  services=tuple(sp.service for w in (the_plan.waves if the_plan else ()) for sp in w),
                                  warnings=tuple(outcome.warnings))

    @staticmethod
    def _half_contracted(status: Status, target: Target) -> list[Finding]:
        """A service whose contract phase started and did not finish cannot go down a
        release (a `git revert` included): its database may be half-contracted. Nor can
        the other services of its project, which share that database."""
        if target.desired is None:
            return []
        found = []
        for started_by, started in sorted(status.contract_started.items()):
            mine = target.desired.services.get(started_by)
            project = mine.service.project if mine is not None else None
            for svc, ds in sorted(target.desired.services.items()):
                if svc != started_by and (project is None or ds.service.project != project):
                    continue
                if not Controller._goes_below(ds, started, (status.services.get(svc) or {}).get("release"),
                                              own=svc == started_by):
                    continue
                whose = "" if svc == started_by else f" of {started_by} (project {project}: one database)"
                found.append(Finding(ds.service.file, None, None, "error", "transition.downgrade",
                                     f"{svc}: going back to {ds.service.release} after the contract phase{whose} "
                                     f"of {started.get('revision', '')[:12]} started and did not finish: the database "
                                     "may be half-contracted",
                                     f"retry the contract (tidegate contract --service {started_by}) or fix forward"))
        return found

    @staticmethod
    def _goes_below(ds, started: dict, running: str | None, own: bool) -> bool:
        """Whether `ds` goes below the release a contract started at: for the service that
        started it, any change when no release was recorded; for another service of the
        project, only a step down from what it runs now (one that never moved is left be)."""
        try:
            contracted_at = Release.parse(started.get("release", ""))
        except (TypeError, ValueError):
            return own and ds.hash != started.get("hash")
        if own:
            return ds.service.release < contracted_at
        try:
            return ds.service.release < contracted_at and ds.service.release < Release.parse(running or "")
        except (TypeError, ValueError):
            return False

    @staticmethod
    def _contract_started(status: Status) -> dict[str, str]:
        return {svc: c.get("revision", "") for svc, c in status.contract_started.items()}

    def contract(self, service: str) -> Status:
        """Run the owed contract phase of `service` at the last applied revision (how a cloud
        with `policy.contract: manual` closes the rollback window). Refused, with the reason,
        when no contract is owed or the service's rollout has not finished."""
        status = Status.load(self.state_dir, self.cloud)
        started = status.contract_started.get(service)
        if not status.last_applied_revision and not started:
            raise ContractRefused(f"cloud {self.cloud}: nothing applied yet")
        owed = status.pending_contract.get(service)
        if owed is None:
            ran = status.contracted.get(service)
            raise ContractRefused(f"{service}: no contract phase is owed" + (
                f" (it ran at {ran.get('revision', '')[:12]} on {ran.get('at')})" if ran else ""))
        # a contract that started and failed is retried at the commit whose rollout ran it
        retry = started.get("revision") if started and self.source.has(started.get("revision", "")) else None
        desired = self.target(retry).desired if retry else self._last_good(status)
        if desired is None or service not in desired.services or desired.services[service].hash != owed:
            raise ContractRefused(f"{service}: the upgrade that owes a contract is no longer what runs; "
                                  "apply the branch first")
        observed, unreachable = observe(self.engines(desired), self.cloud)
        if unreachable:
            raise ContractUnreachable(f"{service}: not run: " + "; ".join(unreachable[h] for h in sorted(unreachable)))
        full = plan(desired, observed, pending_contract={service: owed}, contract_now=frozenset({service}))
        mine = [sp for wave in full.waves for sp in wave if sp.service == service]
        if not mine or "contract" not in mine[0].phases or any(
                s.action not in ("network", "image", "config", "job") for s in mine[0].steps):
            raise ContractRefused(f"{service}: its rollout has not finished (every replica must run the new "
                                  "release before contract); apply first")
        executor = Executor(self.engines(desired), desired, progress=self.progress,
                            cancel=self.cancel, journal=lambda step: self._journal(status, desired, step),
                            intent=lambda step: self._intent(status, desired, step))
        outcome = executor.run(Plan(full.cloud, full.commit, ((mine[0],),), ()))
        if outcome.ok:
            status.record(desired.commit, "contract", outcome.seconds, f"{service}: contract phase ran")
            if retry and status.failed_revision == retry:
                # the commit's own rollout stopped at this contract: the next reconcile finishes it
                status.failed_revision, status.stalled, status.reconciling = None, False, True
                status.reason = "ContractRetried"
                status.message = f"{service}: contract ran at {retry[:12]}; the next reconcile finishes its rollout"
            try:
                record = self.source.record(desired.commit, self.cloud)
                contracted = sorted(self.source.contracted_in(record) | {service})
                self.source.add_note(desired.commit, self.cloud, {**record, "contract": contracted})
                status.note_error = None
            except Exception as err:  # noqa: BLE001 — a read-only repo must not hide the result; it is shown
                status.note_error = f"could not write the git note on {desired.commit[:12]}: {type(err).__name__}: {err}"
        else:
            self._failed(status, desired, outcome)
        status.save(self.state_dir)
        if not outcome.ok:
            raise ContractRefused(f"{service}: contract failed: {outcome.summary()}")
        return status

    def _converge(self, desired: Desired, status: Status, after_wave: AfterWave | None = None,
                  analyse: bool = True) -> tuple[Outcome, Plan | None]:
        the_plan, unreachable = self.plan(desired, status, analyse=analyse)
        status.unreachable = unreachable
        if the_plan.empty:
            self._observe_into(status, desired)
            return Outcome(ok=not unreachable, temporary=bool(unreachable),
                           error="; ".join(f"{h}: {e}" for h, e in unreachable.items())), the_plan
        status.reconciling, status.reason = True, "Progressing"
        status.message = f"converging to {desired.commit[:12]}"
        status.save(self.state_dir)
        owing = self._owing(desired, the_plan, status)
        executor = Executor(self.engines(desired), desired,
                            progress=self.progress, cancel=self.cancel,
                            journal=lambda step: self._journal(status, desired, step, owing),
                            intent=lambda step: self._intent(status, desired, step), after_wave=after_wave)
        outcome = executor.run(the_plan)
        status.last_duration = outcome.seconds
        if outcome.ok:
            # an upgrade whose contract is pending (or stopped half-way) but which is no longer
            # desired (reverted, or fixed forward) has nothing left to contract
            for owed in (status.pending_contract, status.contract_started):
                for svc, h in list(owed.items()):
                    h = h.get("hash") if isinstance(h, dict) else h
                    if svc not in desired.services or desired.services[svc].hash != h:
                        owed.pop(svc)
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

    def _intent(self, status: Status, desired: Desired, step) -> None:
        """Record a contract job BEFORE it runs (saved at once): once it has begun, the
        database may be half-contracted, and a failed rollout must not converge back."""
        if step.action != "job" or step.phase != "contract":
            return
        ds = desired.services[step.service]
        status.contract_started[step.service] = {"hash": ds.hash, "release": str(ds.service.release),
                                                 "revision": desired.commit, "at": now()}
        status.save(self.state_dir)

    @staticmethod
    def _owing(desired: Desired, the_plan: Plan, status: Status) -> frozenset:
        """Services the plan upgrades that have contract jobs: their contract is owed once a
        successor runs, whether or not they have expand/migrate jobs too (a service whose
        only job is `contract` owes it as well)."""
        return frozenset(
            sp.service for wave in the_plan.waves for sp in wave
            if sp.change == "upgrade" and sp.service in desired.services
            and desired.services[sp.service].service.upgrade.phase("contract")
            and (status.contracted.get(sp.service) or {}).get("hash") != desired.services[sp.service].hash)

    def _journal(self, status: Status, desired: Desired, step, owing: frozenset = frozenset()) -> None:
        """Record a migration phase the moment it ran (saved at once: a kill -9 right after
        must not forget that a contract is owed, or that the rollback window closed). The
        contract of an upgrade (`owing`) is owed from its first expand/migrate job or its
        first successor on."""
        ds = desired.services.get(step.service)
        if ds is None:
            return
        if step.action == "job" and step.phase == "contract":
            status.pending_contract.pop(step.service, None)
            status.contract_started.pop(step.service, None)
            status.contracted[step.service] = {"hash": ds.hash, "revision": desired.commit, "at": now()}
        elif ((step.action == "job" and step.phase in ("expand", "migrate") and ds.service.upgrade.phase("contract"))
              or (step.action == "create" and step.service in owing)):
            if status.pending_contract.get(step.service) == ds.hash:
                return
            status.pending_contract[step.service] = ds.hash
        else:
            return
        status.save(self.state_dir)

    def record_retry(self, status: Status, at: str) -> None:
        """Write when `run` tries an unreachable engine again (`tidegate status` shows it);
        a status that cannot be written is logged, the retry happens anyway."""
        status.retry_at = at
        try:
            status.save(self.state_dir)
        except OSError as err:
            log.warning("cloud %s: could not record the next try: %s", self.cloud, err)

    @staticmethod
    def _versions(engines: dict[str, Engine], unreachable: dict) -> dict[str, str]:
        """`<kind> <version>` of each engine that answered (for status per host)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(item):
            host, engine = item
            try:
                return host, f"{engine.kind} {engine.ping()}"
            except EngineError:
                return host, ""
        todo = [(h, e) for h, e in engines.items() if h not in unreachable]
        if not todo:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
            return {h: v for h, v in pool.map(one, todo) if v}

    @staticmethod
    def _health(engines: dict[str, Engine], desired: Desired, observed) -> dict[str, tuple[bool, str]]:
        """One probe of each running replica's health check, in parallel: status shows
        replicas that run but do not answer (READY counts only healthy ones)."""
        from concurrent.futures import ThreadPoolExecutor

        from .engines.base import EngineError
        from .engines.health import check_once, via
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
            host = desired.cloud.hosts.get(c.host)
            route = via(engines[c.host], host.address) if host is not None else None
            return c.name, check_once(engines[c.host], info, check, network=desired.cloud.network, via=route)
        if not todo:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(todo)), thread_name_prefix="tidegate-health") as pool:
            return dict(pool.map(probe, todo))

    def _note(self, status: Status, desired: Desired, the_plan: Plan | None) -> None:
        """The git note on a newly applied commit; a failure to write it is kept in status
        (shown by `tidegate status`) until a note is written again."""
        record = {"result": "applied", "at": status.last_applied_at, "hosts": sorted(desired.cloud.hosts),
                  "services": sorted({sp.service for w in (the_plan.waves if the_plan else ()) for sp in w}),
                  "contract": sorted(s for s, c in status.contracted.items() if c.get("revision") == desired.commit)}
        try:
            self.source.add_note(desired.commit, self.cloud, record)
            status.note_error = None
        except Exception as err:  # noqa: BLE001 — a read-only repo must not stop convergence; it is shown
            status.note_error = f"could not write the git note on {desired.commit[:12]}: {type(err).__name__}: {err}"

    def _no_way_back(self, desired: Desired, status: Status) -> dict[str, str]:
        """The projects whose release this rollout raised and that have no downgrade once
        the new release ran (Nova: ServiceTooOld): project -> why (validators/order)."""
        good = self._last_good(status)
        out = {}
        for name, ds in desired.services.items():
            old = good.services.get(name) if good is not None else None
            facts = order.of_project(ds.service.project)
            if old is not None and facts is not None and facts.no_downgrade \
                    and ds.service.release > old.service.release:
                out[ds.service.project] = facts.no_downgrade
        return out

    def _last_good(self, status: Status) -> Desired | None:
        if not status.last_applied_revision or not self.source.has(status.last_applied_revision):
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
        if not unreachable:
            status.retry_at = None
        status.hosts = transitions.hosts_view(status.hosts, desired.cloud.hosts, observed, unreachable,
                                  self._versions(engines, unreachable), now())
