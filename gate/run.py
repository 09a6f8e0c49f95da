"""The gate: a pull request's upgrade, proven on a throw-away test cloud before it merges.

    check ─▶ images ─▶ base ─▶ smoke + create ─▶ upgrade (probes on) ─▶ verify
          ─▶ rollback (probes on) ─▶ verify again ─▶ [contract: upgrade again, contract
          jobs (probes on), verify again] ─▶ destroy ─▶ teardown (always)

The test cloud is the cloud's own files at the base and head commits, rewritten by
`gate.isolate` (unique name, one engine, free ports) and committed to a private git
repository; every convergence is `controller.reconcile.Controller.reconcile` — the same
validation, planner and executor production runs, one commit at a time: base, then head
(its plan's waves rolled out by the executor, `--matrix` verifying between them), then
base again. The phases are small functions in `gate.phases`; this module holds their
sequence, what they share (the test cloud, probes, convergence) and the teardown.

A change cannot weaken the gate that judges it: `gate.config.governing` keeps the base's
endpoints, probes and budget, and `gate.hooks.select` the base's hooks.

Result: a `Report` of phases and cases; exit 0 pass, 1 the change must not merge, 2 the
gate could not run (no engine, bad arguments, unreadable repository).
"""
from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

import pygit2

from validators.load import load_cloud
from validators.tree import MemoryTree

from . import config as gate_config
from . import hooks, phases
from .gitwork import GateError, GitWork, cloud_files, materialize
from .isolate import IsolationError, PortMap, host_names, isolate, new_test_cloud_name
from .probes import Probe
from .report import Case, Phase, Report, write_json

__all__ = ["Case", "Gate", "GateError", "GitWork", "Phase", "Report", "free_port", "remove_test_cloud",
           "write_json"]

LOG_LINES = phases.LOG_LINES


class PhaseFailed(Exception):
    """Ends the gate after a phase that failed (teardown still runs)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gate:
    def __init__(self, repo: str, cloud: str, base: str, head: str, *, kind: str, url: str,
                 rollback: bool = True, matrix: bool = False, keep: bool = False, contract: bool = False,
                 work_dir: str | None = None, out: Callable[[str], None] = print, identities=None):
        from controller.secrets import identities_from_env
        self.identities = list(identities) if identities is not None else identities_from_env()   # the CI key
        self.repo_path, self.cloud, self.kind, self.url = repo, cloud, kind, url
        self.base_rev, self.head_rev = base, head
        self.rollback, self.matrix, self.keep = rollback, matrix, keep
        self.contract = contract                # also gate.yaml `contract: true`
        self.out = out
        self.name = new_test_cloud_name()
        self.prefix = f"clouds/{self.name}/"
        self.work = Path(work_dir or tempfile.mkdtemp(prefix=f"tidegate-{self.name}-"))
        self.report = Report(cloud, base, head, self.name, f"{kind} {url}")
        self.engine = None
        self.ports = PortMap(free_port)
        self.config = gate_config.GateConfig()
        self.base: dict = {}                    # the test cloud's files at base and head
        self.head: dict = {}
        self.probes: list[Probe] = []
        self._orders: dict[int, list[str]] = {}
        self._projects: dict[str, str] | None = None
        self._token = None                      # probes.Token of endpoints with `token: true`
        self.tempest = None                     # the `tempest` program (gate.yaml `tempest:`), once installed
        self._t0 = time.monotonic()
        self.current: Phase | None = None       # the phase running: precheck jobs add their cases to it

    # -- output ---------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self._t0:6.1f}s] {text}")

    def phase(self, name: str) -> tuple[Phase, float]:
        p = Phase(name)
        self.report.phases.append(p)
        self.current = p
        self.say(f"{name} …")
        return p, time.monotonic()

    def end(self, p: Phase, ok: bool | None, message: str = "", t0: float | None = None) -> None:
        p.ok, p.message = ok, message
        if t0 is not None:
            p.seconds = time.monotonic() - t0
        mark = {True: "ok", False: "FAILED", None: "skipped"}[ok]
        self.say(f"{p.name}: {mark} ({p.seconds:.1f}s){': ' + message if message else ''}")
        if ok is False:
            raise PhaseFailed(message)

    # -- the run ----------------------------------------------------------------------
    def run(self) -> Report:
        try:
            self._run()
        except PhaseFailed:
            self._destroy_after_failure()
        except (GateError, IsolationError, gate_config.GateConfigError) as err:
            self.report.error = str(err)
            self.say(f"gate could not run: {err}")
        except KeyboardInterrupt:
            self.report.error = "interrupted"
            self.say("interrupted: tearing down")
        except Exception as err:  # noqa: BLE001 — a bug in the gate is not a verdict on the change
            import traceback
            self.report.error = f"internal error: {type(err).__name__}: {err}"
            self.say(f"gate could not run: {self.report.error}\n{traceback.format_exc()}")
        finally:
            for probe in self.probes:
                probe.stop()
            try:
                self._teardown()
            except KeyboardInterrupt:
                self._teardown()
            self.report.seconds = time.monotonic() - self._t0
        return self.report

    def _run(self) -> None:
        source, commits = self._resolve()
        phases.check(self)
        base_files, head_files = (cloud_files(source, c, self.cloud) for c in commits)
        gate_yaml = f"clouds/{self.cloud}/{gate_config.FILE}"
        self.config, notes = gate_config.governing(base_files.get(gate_yaml, (None, 0))[0],
                                                   head_files.get(gate_yaml, (None, 0))[0], gate_yaml)
        for note in notes:
            self.say(note)
        self.contract = self.contract or self.config.contract
        self.base, self.head = (isolate(files, self.cloud, self.name, kind=self.kind, url=self.url, ports=self.ports,
                                        manual_contract=self.contract) for files in (base_files, head_files))
        self._secrets()                     # before any engine: a gate without the key starts nothing
        self._connect()
        for label, files in (("base", self.base), ("head", self.head)):
            materialize(files, self.work / f"tree-{label}")      # recipes and hooks of each commit
        self.git = GitWork(self.work / "repo")
        phases.images(self)
        phases.base(self)
        phases.smoke_and_create(self)
        phases.upgrade(self)
        phases.verify(self)
        if self.rollback:
            phases.rollback(self)
        else:
            self.report.phases.append(Phase("rollback", None, 0.0, "skipped (--no-rollback)"))
        if self.contract:
            phases.contract(self)
        phases.destroy(self)

    def _destroy_after_failure(self) -> None:
        """The destroy hooks run after a failed phase too (Grenade's contract: whatever the
        create hooks made is cleaned up by its owner), once the create hooks have run."""
        names = [p.name for p in self.report.phases]
        if "smoke+create" not in names or "destroy" in names:
            return
        try:
            phases.destroy(self)
        except PhaseFailed:
            pass

    def _resolve(self) -> tuple[pygit2.Repository, list[pygit2.Commit]]:
        try:
            source = pygit2.Repository(self.repo_path)
        except pygit2.GitError as err:
            raise GateError(f"{self.repo_path}: not a git repository ({err})") from None
        commits = []
        for rev in (self.base_rev, self.head_rev):
            try:
                commits.append(source.revparse_single(rev).peel(pygit2.Commit))
            except (pygit2.GitError, KeyError, ValueError):
                raise GateError(f"{self.repo_path}: unknown revision {rev!r}") from None
        self.report.base, self.report.head = (str(c.id) for c in commits)
        return source, commits

    def _secrets(self) -> None:
        """Every secret base and head use, and gate.yaml's, decrypted with the gate's key (in
        memory): a cloud whose secrets the gate cannot decrypt is the gate's problem (exit 2),
        not a verdict on the change."""
        from controller.desired import desired_state
        from controller.secrets import SecretError, Vault
        vault = None
        for label, files in (("base", self.base), ("head", self.head)):
            loaded = self.loaded(files)
            vault = Vault.of(loaded.tree, loaded.cloud.folder, self.identities)
            desired = desired_state(loaded.cloud, loaded.tree, label, vault)
            problems = vault.problems(desired.secrets_used() | gate_config.secret_names(self.config))
            if problems:
                raise GateError(f"the gate's key cannot decrypt the cloud's secrets at {label}: "
                                f"{problems[0].file.replace(self.name, self.cloud, 1)}: {problems[0].message} "
                                "(give the gate a recipient's key: --age-key or $TIDEGATE_AGE_KEY_FILE)")
        if vault is not None:
            try:
                self.config = gate_config.resolve_env(self.config, vault.text)
            except SecretError as err:
                raise GateError(str(err)) from None

    def _connect(self) -> None:
        from controller.engines import EngineError, connect
        try:
            engine = connect(self.kind, self.url, "gate")
            engine.ping()
            self.engine = engine            # from here on, teardown has something to clean
        except EngineError as err:
            raise GateError(str(err)) from None

    # -- what the phases share ------------------------------------------------------------
    def tree(self, commit: str) -> Path:
        """The test cloud's folder as of `commit` ("base" | "head"): its recipes and hooks."""
        return self.work / f"tree-{commit}" / self.prefix

    def loaded(self, files):
        loaded = load_cloud(MemoryTree({k: v for k, (v, _) in files.items()}), self.name)
        if loaded.cloud is None:
            raise GateError(f"the rewritten test cloud does not load: {loaded.findings[:1]}")
        return loaded

    def order(self, files) -> list[str]:
        """Services in dependency order (the planner's waves for a fresh deploy)."""
        if id(files) not in self._orders:
            from controller.desired import Observed, desired_state
            from controller.plan import plan
            loaded = self.loaded(files)
            the_plan = plan(desired_state(loaded.cloud, loaded.tree, "order"), Observed(()))
            self._orders[id(files)] = [sp.service for wave in the_plan.waves for sp in wave]
        return self._orders[id(files)]

    def projects(self) -> dict[str, str]:
        """service -> project, at base and head (head's word for a service in both)."""
        if self._projects is None:
            found = {}
            for files in (self.base, self.head):
                if files:
                    found.update({name: svc.project for name, svc in self.loaded(files).cloud.services.items()})
            self._projects = found
        return self._projects

    def controller(self, after_wave=None):
        from controller.reconcile import Controller, trust_every_commit
        from controller.source import Source
        return Controller(Source(str(self.git.path)), self.name, state_dir=self.work / "state",
                          engines=dict.fromkeys(host_names(self.base, self.head, name=self.name), self.engine),
                          progress=self._progress,
                          verify_commit=trust_every_commit, after_wave=after_wave, identities=self.identities)

    def _progress(self, event, step, detail) -> None:
        if event in ("done", "warning", "failed"):
            mark = {"done": "ok", "warning": "!?", "failed": "!!"}[event]
            self.out(f"           {mark} {step.service:<14} {step.describe()}"
                     f"{'  ' + detail if detail and event != 'done' else ''}")
        if step.action == "job" and step.phase == "precheck" and event != "start" and self.current is not None:
            phases.precheck_case(self.current, event, step, detail)

    def converge(self, p: Phase, rev: str, what: str, after_wave=None) -> bool:
        """Reconcile the test cloud to `rev` as the controller does; one case for it."""
        t1 = time.monotonic()
        status = self.controller(after_wave).reconcile(rev)
        ok = status.condition() == "Ready" and status.last_applied_revision == rev
        if ok:
            p.case(what, True, time.monotonic() - t1)
            return True
        if status.findings:
            text = "; ".join(f"{f['file']}: {f['message']}" for f in status.findings[:3])
            p.case(what, False, time.monotonic() - t1, f"{what} rejected: {text}")
        else:
            failure = status.failure or {}
            p.case(what, False, time.monotonic() - t1,
                   f"{what}: {failure.get('step') or status.reason}: {failure.get('error') or status.message}",
                   "\n".join((failure.get("logs") or "").splitlines()[-LOG_LINES:]))
        return False

    def endpoint_url(self, name: str) -> str:
        try:
            return hooks.endpoint_url(self.config, self.ports, name)
        except LookupError as err:
            raise GateError(str(err)) from None

    def hook_env(self) -> dict[str, str]:
        try:
            return hooks.environment(self.config, self.ports, self.name)
        except LookupError as err:
            raise GateError(str(err)) from None

    def start_probes(self) -> None:
        self.probes = [Probe(n, self.endpoint_url(n), self.config.endpoint(n).status,
                             timeout=self.config.probe_timeout, token=self.token(n)).start()
                       for n in self.config.probes]

    def token(self, name: str):
        """The shared Keystone token source of an endpoint with `token: true`, else None."""
        if not self.config.endpoint(name).token:
            return None
        if self._token is None:
            from .probes import Token
            self._token = Token(self.endpoint_url(self.config.auth), self.config.env, self.config.probe_timeout)
        return self._token

    def stop_probes(self, label: str) -> tuple[int, float]:
        for probe in self.probes:
            probe.stop()
        failed = sum(pr.failed for pr in self.probes)
        gap = max((pr.longest_gap for pr in self.probes), default=0.0)
        self.report.probes[label] = {pr.name: {"ok": pr.ok, "failed": pr.failed, "timed_out": pr.timed_out,
                                               "timeout": pr.timeout, "longest_gap": round(pr.longest_gap, 3),
                                               "errors": pr.errors[:5]} for pr in self.probes}
        for pr in self.probes:
            self.say(f"  probes {label}: {pr.summary()}")
        self.probes = []
        return failed, gap

    # -- teardown -------------------------------------------------------------------
    def _teardown(self) -> None:
        if self.engine is None:
            shutil.rmtree(self.work, ignore_errors=True)
            return
        if self.keep:
            self.report.kept = {"cloud": self.name, "engine": self.url, "repo": str(self.git.path) if hasattr(self, "git") else "",
                                "endpoints": {e.name: self.endpoint_url(e.name) for e in self.config.endpoints}}
            self.say(f"kept for debugging: test cloud {self.name} on {self.kind} {self.url}")
            for e in self.config.endpoints:
                self.say(f"  {e.name}: {self.endpoint_url(e.name)}")
            self.say(f"  containers: label tidegate.cloud={self.name}; remove them with "
                     f"`tidegate gate --engine {self.kind}={self.url} --cleanup {self.name}`")
            return
        p = Phase("teardown")
        t0 = time.monotonic()
        from controller.engines import EngineError
        try:
            left = remove_test_cloud(self.engine, self.name)
        except EngineError as err:
            left = [f"everything ({err})"]
        p.ok = not left
        p.seconds = time.monotonic() - t0
        p.message = "" if not left else f"could not remove: {', '.join(left)}"
        p.case("teardown", p.ok, p.seconds, p.message)
        self.report.phases.append(p)
        self.say(f"teardown: {'ok' if p.ok else 'FAILED'} ({p.seconds:.1f}s){': ' + p.message if p.message else ''}")
        shutil.rmtree(self.work, ignore_errors=True)


def remove_test_cloud(engine, name: str) -> list[str]:
    """Remove every container, network and volume of test cloud `name`; what is left."""
    from controller.teardown import remove_cloud
    return remove_cloud(engine, name, volumes=True, graceful=False)[1]
