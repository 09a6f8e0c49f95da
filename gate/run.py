"""The gate: a pull request's upgrade, proven on a throw-away test cloud before it merges.

    check ─▶ images ─▶ base ─▶ smoke + create ─▶ upgrade (probes on) ─▶ verify
          ─▶ rollback (probes on) ─▶ verify again ─▶ destroy ─▶ teardown (always)

The test cloud is the cloud's own files at the base and head commits, rewritten by
`gate.isolate` (unique name, one engine, free ports) and committed to a private git
repository; every convergence is `controller.reconcile.Controller.reconcile` — the same
validation, planner and executor production runs. The upgrade is committed one wave of
the plan at a time (as production would roll it out, service by service); `matrix`
verifies after each wave, so every mixed-version state is tested.

Result: a `Report` of phases and cases; exit 0 pass, 1 the change must not merge, 2 the
gate could not run (no engine, bad arguments, unreadable repository).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pygit2

from validators.load import RepoError, load_cloud
from validators.tree import MemoryTree

from . import config as gate_config
from . import hooks
from .isolate import IsolationError, PortMap, isolate
from .probes import Probe, get, good

LOG_LINES = 20


class GateError(Exception):
    """The gate could not run (exit 2): engine, repository, arguments."""


@dataclass
class Case:
    name: str
    ok: bool | None                  # None: skipped
    seconds: float = 0.0
    message: str = ""
    output: str = ""


@dataclass
class Phase:
    name: str
    ok: bool | None = None           # None: skipped / not reached
    seconds: float = 0.0
    message: str = ""
    cases: list[Case] = field(default_factory=list)

    def case(self, name: str, ok: bool | None, seconds: float = 0.0, message: str = "", output: str = "") -> Case:
        c = Case(name, ok, seconds, message, output)
        self.cases.append(c)
        return c


@dataclass
class Report:
    cloud: str
    base: str
    head: str
    test_cloud: str = ""
    engine: str = ""
    phases: list[Phase] = field(default_factory=list)
    probes: dict = field(default_factory=dict)
    seconds: float = 0.0
    kept: dict | None = None
    error: str = ""                  # why the gate could not run (exit 2)

    @property
    def exit_code(self) -> int:
        """0 pass; 1 the change must not merge; 2 the gate could not run, or could not
        clean up after a change that passed (infrastructure, not a verdict)."""
        if self.error:
            return 2
        failed = self.failure()
        if failed is None:
            return 0
        return 2 if failed.name == "teardown" else 1

    def failure(self) -> Phase | None:
        return next((p for p in self.phases if p.ok is False), None)

    def as_dict(self) -> dict:
        return {"cloud": self.cloud, "base": self.base, "head": self.head, "test_cloud": self.test_cloud,
                "engine": self.engine, "result": {0: "pass", 1: "fail", 2: "error"}[self.exit_code],
                "exit_code": self.exit_code, "seconds": round(self.seconds, 2), "error": self.error or None,
                "probes": self.probes, "kept": self.kept,
                "phases": [{"name": p.name, "result": _result(p.ok), "seconds": round(p.seconds, 2),
                            "message": p.message,
                            "cases": [{"name": c.name, "result": _result(c.ok), "seconds": round(c.seconds, 2),
                                       "message": c.message, "output": c.output[-4000:]} for c in p.cases]}
                           for p in self.phases]}


def _result(ok: bool | None) -> str:
    return "pass" if ok else ("skip" if ok is None else "fail")


class PhaseFailed(Exception):
    """Ends the gate after a phase that failed (teardown still runs)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloud_files(repo: pygit2.Repository, commit: pygit2.Commit, cloud: str) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every file under clouds/<cloud>/ at `commit`."""
    try:
        top = commit.tree[f"clouds/{cloud}"]
    except KeyError:
        raise GateError(f"no clouds/{cloud}/ at {str(commit.id)[:12]}") from None
    out = {}

    def walk(tree, prefix):
        for entry in tree:
            obj = repo[entry.id]
            if entry.type_str == "tree":
                walk(obj, f"{prefix}{entry.name}/")
            elif entry.type_str == "blob":
                out[f"{prefix}{entry.name}"] = (obj.data, entry.filemode)
    walk(repo[top.id], f"clouds/{cloud}/")
    return out


class GitWork:
    """The test cloud's private repository (working tree + git CLI, as an operator has)."""

    ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "tidegate gate", "GIT_AUTHOR_EMAIL": "gate@tidegate.invalid",
           "GIT_COMMITTER_NAME": "tidegate gate", "GIT_COMMITTER_EMAIL": "gate@tidegate.invalid"}

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.files: dict[str, tuple[bytes, int]] = {}

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True,
                              env={**os.environ, **self.ENV})
        if proc.returncode != 0:
            raise GateError(f"git {args[0]} in {self.path}: {proc.stderr.strip().splitlines()[-1:]}")
        return proc.stdout.strip()

    def commit(self, files: dict[str, tuple[bytes, int]], message: str) -> str:
        for rel in set(self.files) - set(files):
            (self.path / rel).unlink()
        for rel, (data, mode) in files.items():
            p = self.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            p.chmod(0o755 if mode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE else 0o644)
        self.files = dict(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def _service_of(path: str, prefix: str) -> str | None:
    rel = path[len(prefix):]
    if rel.startswith("services/") and rel.count("/") == 1:
        return rel.split("/", 1)[1].rsplit(".", 1)[0]
    return None


class Gate:
    def __init__(self, repo: str, cloud: str, base: str, head: str, *, kind: str, url: str,
                 rollback: bool = True, matrix: bool = False, keep: bool = False,
                 work_dir: str | None = None, out: Callable[[str], None] = print):
        self.repo_path, self.cloud, self.kind, self.url = repo, cloud, kind, url
        self.base_rev, self.head_rev = base, head
        self.rollback, self.matrix, self.keep = rollback, matrix, keep
        self.out = out
        self.name = f"gate-{uuid.uuid4().hex[:8]}"
        self.work = Path(work_dir or tempfile.mkdtemp(prefix=f"tidegate-{self.name}-"))
        self.report = Report(cloud, base, head, self.name, f"{kind} {url}")
        self.engine = None
        self.ports = PortMap(free_port)
        self.config = gate_config.GateConfig()
        self.probes: list[Probe] = []
        self._t0 = time.monotonic()

    # -- output ---------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self._t0:6.1f}s] {text}")

    def _phase(self, name: str) -> tuple[Phase, float]:
        p = Phase(name)
        self.report.phases.append(p)
        self.say(f"{name} …")
        return p, time.monotonic()

    def _end(self, p: Phase, ok: bool | None, message: str = "", t0: float | None = None) -> None:
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
            pass
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
        base_commit, head_commit = commits
        self.report.base, self.report.head = str(base_commit.id), str(head_commit.id)

        self._check()
        base_files = cloud_files(source, base_commit, self.cloud)
        head_files = cloud_files(source, head_commit, self.cloud)
        gate_yaml = f"clouds/{self.cloud}/{gate_config.FILE}"
        self.config, note = gate_config.governing(base_files.get(gate_yaml, (None, 0))[0],
                                                  head_files.get(gate_yaml, (None, 0))[0], gate_yaml)
        if note:
            self.say(note)

        from controller.engines import EngineError, connect
        try:
            engine = connect(self.kind, self.url, "gate")
            engine.ping()
            self.engine = engine            # from here on, teardown has something to clean
        except EngineError as err:
            raise GateError(str(err)) from None
        base = isolate(base_files, self.cloud, self.name, kind=self.kind, url=self.url, ports=self.ports)
        head = isolate(head_files, self.cloud, self.name, kind=self.kind, url=self.url, ports=self.ports)
        self.git = GitWork(self.work / "repo")

        self._images(base, head)
        order = self._base(base)
        self._smoke_and_create(order)
        self._upgrade(base, head)
        self._verify("verify", head_order := self._order(head))
        if self.rollback:
            self._rollback(base, order)
        else:
            self.report.phases.append(Phase("rollback", None, 0.0, "skipped (--no-rollback)"))
        self._destroy(list(reversed(head_order)))

    # -- phases -------------------------------------------------------------------------
    def _check(self) -> None:
        from controller.commands.check import check
        p, t0 = self._phase("check")
        try:
            report = check(self.repo_path, rev=self.report.head, base=self.report.base, cloud=self.cloud)
        except RepoError as err:
            raise GateError(str(err)) from None
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        for f in errors:
            where = f["file"] + (f":{f['line']}" if f.get("line") else "")
            p.case(f["rule"], False, message=f"{where}: {f['message']}", output=f.get("hint") or "")
        if not errors:
            p.case("validators", True)
        first = errors[0] if errors else None
        self._end(p, not errors, f"{len(errors)} error(s); first: {first['file']}"
                  f"{':' + str(first['line']) if first.get('line') else ''}: {first['message']} [{first['rule']}]"
                  if first else "", t0)

    def _loaded(self, files):
        tree = MemoryTree({k: v for k, (v, _) in files.items()})
        loaded = load_cloud(tree, self.name)
        if loaded.cloud is None:
            raise GateError(f"the rewritten test cloud does not load: {loaded.findings[:1]}")
        return loaded

    def _order(self, files) -> list[str]:
        """Services in dependency order (the planner's waves for a fresh deploy)."""
        from controller.desired import Observed, desired_state
        from controller.plan import plan
        loaded = self._loaded(files)
        the_plan = plan(desired_state(loaded.cloud, loaded.tree, "order"), Observed(()))
        return [sp.service for wave in the_plan.waves for sp in wave]

    def _images(self, base, head) -> None:
        from controller import images
        from controller.engines import EngineError
        p, t0 = self._phase("images")
        built = 0
        for label, files in (("base", base), ("head", head)):
            folder = self.work / f"images-{label}"
            prefix = f"clouds/{self.name}/images/"
            for path, (data, mode) in files.items():
                if path.startswith(prefix):
                    dest = folder / path[len(prefix):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
            for name, svc in sorted(self._loaded(files).cloud.services.items()):
                if not svc.build:
                    if not self.engine.image_exists(svc.image):
                        p.case(f"{label}:{name}", False, message=f"image {svc.image} is not on the engine and the "
                                                                "service names no recipe (build:) to make it")
                    continue
                # always through the builder: an image of the same name from another recipe (another
                # cloud's) must not stand in for this one; an up-to-date one costs a tag lookup
                t1 = time.monotonic()
                try:
                    info, did = images.build(self.engine, images.load_recipe(folder, svc.build),
                                             log=lambda line: None)
                    built += did
                    if did:
                        p.case(f"{label}:{name}", True, time.monotonic() - t1, f"built {svc.image}")
                except images.BuildError as err:
                    p.case(f"{label}:{name}", False, time.monotonic() - t1, str(err), err.log)
                except EngineError as err:
                    raise GateError(str(err)) from None
        failed = [c for c in p.cases if c.ok is False]
        self._end(p, not failed, failed[0].message if failed else f"{built} built, the rest cached", t0)

    def controller(self):
        from controller.reconcile import Controller, trust_every_commit
        from controller.source import Source
        return Controller(Source(str(self.git.path)), self.name, state_dir=self.work / "state",
                          engines={"gate": self.engine}, progress=self._progress,
                          verify_commit=trust_every_commit)

    def _progress(self, event, step, detail) -> None:
        if event in ("done", "failed"):
            self.out(f"           {'ok' if event == 'done' else '!!'} {step.service:<14} {step.describe()}"
                     f"{'  ' + detail if detail and event == 'failed' else ''}")

    def _converge(self, p: Phase, rev: str, what: str) -> bool:
        t1 = time.monotonic()
        status = self.controller().reconcile(rev)
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

    def _base(self, base) -> list[str]:
        p, t0 = self._phase("base")
        rev = self.git.commit(base, f"base: {self.cloud} at {self.report.base[:12]}")
        ok = self._converge(p, rev, "converge base")
        self._end(p, ok, "" if ok else p.cases[-1].message, t0)
        return self._order(base)

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

    def _smoke(self, p: Phase, label: str) -> None:
        for e in self.config.endpoints:
            url = self.endpoint_url(e.name)
            status, error = None, ""
            deadline = time.monotonic() + 30           # a front may need a moment to find new backends
            while time.monotonic() < deadline:
                status, error = get(url)
                if good(status, e.status):
                    break
                time.sleep(0.5)
            ok = good(status, e.status)
            p.case(f"{label}:{e.name}", ok, message=f"GET {url} → {status or error}")

    def _run_hooks(self, p: Phase, phase: str, order: list[str], label: str = "") -> None:
        cloud_dir = self.git.path / "clouds" / self.name
        for service, path in hooks.find(cloud_dir, phase, order):
            result = hooks.run(path, service, phase, self.hook_env(), self.work / "hooks", cloud_dir,
                               self.config.hook_timeout)
            p.case(f"{label or phase}:{service}", result.ok, result.seconds, result.message, result.output)
            self.say(f"  {phase} {service}: {'ok' if result.ok else 'FAILED'}: {result.message}")

    def _failed(self, p: Phase) -> str:
        bad = [c for c in p.cases if c.ok is False]
        return f"{bad[0].name}: {bad[0].message}" if bad else ""

    def _smoke_and_create(self, order: list[str]) -> None:
        p, t0 = self._phase("smoke+create")
        self._smoke(p, "smoke")
        if not self._failed(p):
            self._run_hooks(p, "create", order)
        self._end(p, not self._failed(p), self._failed(p), t0)

    def _start_probes(self) -> None:
        self.probes = [Probe(n, self.endpoint_url(n), self.config.endpoint(n).status).start()
                       for n in self.config.probes]

    def _stop_probes(self, label: str) -> tuple[int, float]:
        for probe in self.probes:
            probe.stop()
        failed = sum(pr.failed for pr in self.probes)
        gap = max((pr.longest_gap for pr in self.probes), default=0.0)
        self.report.probes[label] = {pr.name: {"ok": pr.ok, "failed": pr.failed, "longest_gap": round(pr.longest_gap, 3),
                                               "errors": pr.errors[:5]} for pr in self.probes}
        for pr in self.probes:
            self.say(f"  probes {label}: {pr.summary()}")
        self.probes = []
        return failed, gap

    def _budget(self, p: Phase, label: str, failed: int, gap: float) -> None:
        probes = self.report.probes[label]
        total = sum(v["ok"] + v["failed"] for v in probes.values())
        ok = failed <= self.config.failed_requests
        # name the endpoints that failed, and how: "placement: 12 failed (first: HTTP 500)"
        which = "; ".join(f"{name}: {v['failed']} failed (first: {v['errors'][0].split(' ', 1)[-1]})"
                          for name, v in probes.items() if v["failed"] and v["errors"])
        output = "\n".join(f"{name}: {e}" for name, v in probes.items() for e in v["errors"])
        if not ok:       # what the front saw: which backends it marked down, and why
            output += self._front_logs([name for name, v in probes.items() if v["failed"]])
        p.case(f"availability:{label}", ok, message=f"{failed} failed of {total} probe requests "
               f"(budget {self.config.failed_requests}), longest gap {gap:.2f}s" + (f" — {which}" if which else ""),
               output=output)

    def _front_logs(self, endpoints: list[str]) -> str:
        """The last log lines of the services that serve the failing endpoints."""
        from controller.desired import LABEL_CLOUD, LABEL_SERVICE
        from controller.engines.base import EngineError
        text = ""
        for service in sorted({self.config.endpoint(n).service for n in endpoints}):
            try:
                for c in self.engine.list_containers({LABEL_CLOUD: self.name, LABEL_SERVICE: service}):
                    text += f"\n--- {c.name} (last {LOG_LINES} log lines) ---\n"
                    text += self.engine.logs(c.name, tail=LOG_LINES).rstrip("\n")
            except EngineError as err:
                text += f"\n--- {service}: logs unavailable: {err} ---"
        return text

    def _waves(self, base, head) -> list[list[str]]:
        """The services the change touches, grouped by the planner's waves."""
        from controller.desired import Container, Observed, desired_state
        from controller.plan import plan
        b, h = self._loaded(base), self._loaded(head)
        bd = desired_state(b.cloud, b.tree, "base")
        hd = desired_state(h.cloud, h.tree, "head")
        observed = Observed(tuple(
            Container("gate", f"{n}-{r}", f"{n}-{r}", n, r, ds.hash, str(ds.service.release), "running")
            for n, ds in bd.services.items() for r in range(ds.service.replicas)))
        return [[sp.service for sp in wave] for wave in plan(hd, observed).waves]

    def _upgrade(self, base, head) -> None:
        p, t0 = self._phase("upgrade")
        waves = self._waves(base, head)
        prefix = f"clouds/{self.name}/"
        self._start_probes()
        try:
            current = {k: v for k, v in base.items()}
            # shared files (cloud.yaml, config/, images/, tests/) change with the first wave
            for path in set(current) | set(head):
                if _service_of(path, prefix) is None:
                    if path in head:
                        current[path] = head[path]
                    else:
                        current.pop(path, None)
            for i, wave in enumerate(waves or [[]], 1):
                for path in set(base) | set(head):
                    if _service_of(path, prefix) in wave:
                        if path in head:
                            current[path] = head[path]
                        else:
                            current.pop(path, None)
                label = ", ".join(wave) or "no service change"
                rev = self.git.commit(current, f"wave {i}: {label}")
                self.say(f"  wave {i}/{len(waves)}: {label}")
                if not self._converge(p, rev, f"wave {i}: {label}"):
                    break
                if self.matrix and i < len(waves):
                    self._run_hooks(p, "verify", self._order(current), label=f"verify after wave {i}")
                    if self._failed(p):
                        break
            if not self._failed(p) and current != head:        # anything the waves did not cover
                rev = self.git.commit(head, "head")
                self._converge(p, rev, "head")
        finally:
            failed, gap = self._stop_probes("upgrade")
        self._budget(p, "upgrade", failed, gap)
        self._end(p, not self._failed(p), self._failed(p), t0)

    def _verify(self, name: str, order: list[str]) -> None:
        p, t0 = self._phase(name)
        self._smoke(p, "smoke")
        self._run_hooks(p, "verify", order)
        self._end(p, not self._failed(p), self._failed(p), t0)

    def _rollback(self, base, order: list[str]) -> None:
        p, t0 = self._phase("rollback")
        rev = self.git.commit(base, f"Revert to base {self.report.base[:12]} (as git revert would)")
        target = self.controller().target(rev, base=self.git.git("rev-parse", "HEAD~1"))
        refused = [f for f in target.findings if f.severity == "error"]
        if refused:
            why = "; ".join(f"{f.file}: {f.message}" for f in refused[:3])
            p.case("rollback allowed", None, message=why)
            self._end(p, None, f"the transition rules forbid rolling back: {why}", t0)
            return
        self._start_probes()
        try:
            self._converge(p, rev, "converge back to base")
        finally:
            failed, gap = self._stop_probes("rollback")
        self._budget(p, "rollback", failed, gap)
        if not self._failed(p):
            self._smoke(p, "smoke")
            self._run_hooks(p, "verify", order, label="verify after rollback")
        self._end(p, not self._failed(p), self._failed(p), t0)

    def _destroy(self, order: list[str]) -> None:
        p, t0 = self._phase("destroy")
        self._run_hooks(p, "destroy", order)
        self._end(p, not self._failed(p), self._failed(p), t0)

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


def write_json(report: Report, path: str) -> None:
    Path(path).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
