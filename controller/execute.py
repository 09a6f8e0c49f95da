"""The executor: the ONLY code that changes engines. It runs a Plan step by step,
health-gates every new replica, and stops at the first failure without losing what
serves: old replicas are retired only after their successors are healthy, and a
successor that fails its gate is removed. The controller and the gate both use it.

Errors are classified (STYLE.md #5): an engine that does not answer is temporary and the
step is retried with backoff; a failed job or health gate is permanent for this commit.

A successor joins its service's DNS alias (what the balancer resolves) only after its
health gate and its deep readiness checks passed (`readiness`): a sick replica never
receives a user's request. The deep checks run again with every probe of min_ready.

After a service's last replica is replaced, an `analyse` step asks its deep checks
through the cloud's front for its analysis window (controller/analysis.py); a failure
carries its evidence in the outcome, and the controller decides what follows.

Stopping: `cancel` (the controller's SIGTERM) lets the step in progress finish, health
gates and an analysis window included, and starts no other; the outcome is
"interrupted" and the next reconcile resumes. An exception in the caller's thread
(Ctrl-C in the gate) also cuts a health wait or an analysis short, so teardown is not
kept waiting.

Lifecycle hooks (controller/lifecycle.py) are the replica's own: its pre-stop runs before
its stop signal (a Nova compute disables itself and lets its builds end) and a failure
leaves it running, put back by its post-ready; a successor's post-ready runs after its
health gate and deep checks, before it joins its alias.

Pre-upgrade checks (`precheck` jobs, controller.precheck) run before the first wave, so
before anything of the change is applied: exit 1 is a warning (`Outcome.warnings`, the
progress event "warning") and the rollout goes on; any other failure stops it with every
old replica untouched.

Migration phases are journalled step by step (`journal`), not at the end of the run: a
controller killed between the last replica and the contract job must still know, when it
restarts, that the contract is owed.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .desired import Desired
from .engines.base import Engine, EngineError
from .engines.common import one_line
from .engines.health import stay_healthy, via, wait_healthy
from . import lifecycle, precheck
from .plan import Plan, ServicePlan, Step, parallel_segments
from .secrets import SecretError
from .spec import (ConfigError, cloud_labels, config_files, job_spec, replica_spec, secret_files,
                   service_aliases)
from .analysis import analyse, message as analysis_message
from .readiness import DeepChecks, Tokens
from .volumes import place as place_volumes

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)      # temporary engine errors: 5 attempts over ~7.5 s
LOG_TAIL = 20


def unexpected(err: BaseException) -> str:
    """One line for an error no step expects (a full disk, a bug): what and where."""
    if isinstance(err, OSError) and err.strerror:
        return one_line(f"{err.strerror}: {err.filename}" if err.filename else err.strerror)
    return one_line(f"{type(err).__name__}: {err}")


class StepFailed(Exception):
    def __init__(self, step: Step, message: str, logs: str = "", temporary: bool = False,
                 evidence: dict | None = None):
        super().__init__(message)
        self.step = step
        self.logs = logs
        self.temporary = temporary
        self.evidence = evidence or {}           # a failed analysis: what failed, through which front


@dataclass
class Outcome:
    ok: bool = True
    interrupted: bool = False
    steps_done: int = 0
    failed_step: Step | None = None
    error: str = ""
    logs: str = ""                                   # last lines of the failing container
    temporary: bool = False                          # worth retrying as is (engine trouble)
    seconds: float = 0.0
    evidence: dict = field(default_factory=dict)     # the failed step was an analysis: its evidence
    warnings: list = field(default_factory=list)     # precheck jobs that exited 1: dicts (Executor._do)

    def summary(self) -> str:
        if self.ok:
            warned = (f"; {len(self.warnings)} precheck warning(s): "
                      + ", ".join(sorted({w['service'] for w in self.warnings}))) if self.warnings else ""
            return f"converged: {self.steps_done} step(s) in {self.seconds:.1f}s{warned}"
        if self.interrupted:
            return f"interrupted after {self.steps_done} step(s); the next reconcile resumes"
        if self.failed_step is None:                 # no step failed: hosts did not answer
            return f"not converged: {self.error}"
        return f"failed at step '{self.failed_step.describe()}': {self.error}"


Progress = Callable[[str, Step, str], None]   # (event, step, detail); event: start | done | warning | failed | retry
Journal = Callable[[Step], None]              # called (serialised) after each step that succeeded
# `intent` is called (serialised) before each step runs: what a crash or a failure must know began
# Called after each wave that converged, with (wave number from 1, number of waves, the wave);
# a message stops the rollout like a failed step (the gate's --matrix verifies there).
# Also called INSIDE a wave that is one in-place service (Nova's computes), after each of
# its batches but the last, with batch=(service, batches done, batches): one host's
# replica at the new release, another's still at the old, nothing else moving.
AfterWave = Callable[..., "str | None"]


class Executor:
    def __init__(self, engines: dict[str, Engine], desired: Desired, *,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 journal: Journal | None = None, intent: Journal | None = None,
                 after_wave: AfterWave | None = None):
        self.engines = engines
        self.desired = desired
        self.progress = progress or (lambda event, step, detail: None)
        self.cancel = cancel or threading.Event()
        self.journal = journal or (lambda step: None)
        self.intent = intent or (lambda step: None)
        self.after_wave = after_wave
        self._abort = threading.Event()           # cuts health waits short: the caller is gone
        self._lock = threading.Lock()
        self._warnings: list = []                 # the running Outcome's

    # -- running a plan ------------------------------------------------------
    def run(self, plan: Plan) -> Outcome:
        outcome = Outcome()
        start = time.monotonic()
        self._warnings = outcome.warnings
        for sp in plan.prechecks:
            # before the first wave: a blocking check leaves everything of the change undone
            end = self._run_chain(list(sp.precheck), outcome, [], threading.Event())
            if end != "done":
                outcome.ok = False
                outcome.seconds = time.monotonic() - start
                return outcome
        for number, wave in enumerate(plan.waves, 1):
            if self.cancel.is_set():
                outcome.ok, outcome.interrupted = False, True
                break
            with ThreadPoolExecutor(max_workers=max(1, len(wave)), thread_name_prefix="tidegate-svc") as pool:
                try:
                    results = list(pool.map(
                        lambda sp: self._run_service(sp, outcome, (number, len(plan.waves), wave)), wave))
                except BaseException:
                    # KeyboardInterrupt in this thread: the workers stop at their next step
                    # (and leave health waits) before the pool's exit waits for them
                    self.cancel.set()
                    self._abort.set()
                    raise
            if not all(results):
                outcome.ok = False
                break
            problem = self.after_wave(number, len(plan.waves), wave) if self.after_wave else None
            if problem:
                outcome.ok, outcome.error = False, f"after wave {number} ({', '.join(sp.service for sp in wave)}): {problem}"
                break
        outcome.seconds = time.monotonic() - start
        return outcome

    def _run_service(self, sp: ServicePlan, outcome: Outcome, where: tuple = (1, 1, ())) -> bool:
        """The service's steps in order; the chains of a batch on different hosts at once
        (plan.parallel_segments: a per-host agent on 100 hosts is not rolled one host at
        a time when max_unavailable allows more). `where`: (wave number, waves, the wave)."""
        created: list[Step] = []         # successors not yet through their health gate
        stop = threading.Event()         # a chain failed or was cancelled: the others start nothing new
        segments = parallel_segments(sp.steps)
        batches = sum(1 for segment in segments if segment[0][0].action == "wait-healthy")
        done = 0
        for i, segment in enumerate(segments):
            if len(segment) == 1:
                ends = [self._run_chain(segment[0], outcome, created, stop)]
            else:
                with ThreadPoolExecutor(max_workers=len(segment), thread_name_prefix="tidegate-host") as pool:
                    ends = list(pool.map(lambda chain: self._run_chain(chain, outcome, created, stop), segment))
            if "failed" in ends:
                self._discard(created)
                return False
            if "cancelled" in ends:
                return False             # successors already made are waited for by the next run
            if segment[0][0].action == "wait-healthy":
                done += 1
                if not self._within_wave(sp, where, segments[i + 1:], (done, batches), outcome):
                    return False
        return True

    def _within_wave(self, sp: ServicePlan, where: tuple, rest, batch: tuple[int, int], outcome: Outcome) -> bool:
        """After a batch of an in-place service alone in its wave, with old replicas still
        to go: the mixed state within it, for `after_wave` (the gate's --matrix)."""
        number, total, wave = where
        if self.after_wave is None or sp.strategy != "in-place" or len(wave) != 1 or self.cancel.is_set() \
                or not any(chain[0].action in ("pre-stop", "stop") for segment in rest for chain in segment):
            return True
        problem = self.after_wave(number, total, wave, batch=(sp.service, *batch))
        if problem:
            with self._lock:
                outcome.ok = False
                outcome.error = f"within wave {number} ({sp.service}, after batch {batch[0]} of {batch[1]}): {problem}"
        return not problem

    def _run_chain(self, chain: list[Step], outcome: Outcome, created: list[Step], stop: threading.Event) -> str:
        """One host's steps of a batch, in order: "done", "failed" or "cancelled"."""
        for step in chain:
            if self.cancel.is_set() or stop.is_set():
                if self.cancel.is_set():
                    with self._lock:
                        outcome.ok, outcome.interrupted = False, True
                stop.set()
                return "cancelled"
            self.progress("start", step, "")
            t0 = time.monotonic()
            if step.action == "create":
                with self._lock:
                    created.append(step)     # a create that fails half-way leaves a container too
            try:
                with self._lock:
                    self._announce(step)
                warning = self._with_retry(step, self._do)
                with self._lock:
                    outcome.steps_done += 1
                    self._record(step)
            except StepFailed as err:
                self.progress("failed", step, str(err))
                with self._lock:
                    if outcome.failed_step is None:
                        outcome.ok = False
                        outcome.failed_step, outcome.error = step, str(err)
                        outcome.logs, outcome.temporary = err.logs, err.temporary
                        outcome.evidence = err.evidence
                stop.set()
                return "failed"
            if warning:
                self.progress("warning", step, f"{time.monotonic() - t0:.1f}s: {warning}")
            else:
                self.progress("done", step, f"{time.monotonic() - t0:.1f}s")
            if step.action == "wait-healthy":
                with self._lock:
                    created[:] = [s for s in created if s.container != step.container]
        return "done"

    def _announce(self, step: Step) -> None:
        """Record that a step begins (a contract job: after it started, going back is
        unsafe); a record that cannot be written stops the rollout before the step runs."""
        try:
            self.intent(step)
        except Exception as err:                 # noqa: BLE001 — not begun, because not recorded
            raise StepFailed(step, f"not started, its beginning could not be recorded: {unexpected(err)}") from err

    def _record(self, step: Step) -> None:
        """Journal a step that succeeded; a journal that cannot be written (disk full)
        fails the step: a migration phase nobody recorded must not go on unnoticed."""
        try:
            self.journal(step)
        except Exception as err:                 # noqa: BLE001 — any failure to record stops the rollout
            raise StepFailed(step, f"done, but not recorded: {unexpected(err)}") from err

    def _with_retry(self, step: Step, fn):
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                return fn(step)
            except StepFailed:
                raise
            except Exception as err:             # noqa: BLE001 — classified here, never a traceback
                if not isinstance(err, EngineError):
                    # a bug, a full disk, a path that is a directory: permanent for this
                    # commit, and handled like a failed health gate (the old replicas serve)
                    raise StepFailed(step, unexpected(err)) from err
                if not err.temporary:
                    raise StepFailed(step, str(err)) from None
                if delay is None or self.cancel.is_set():
                    raise StepFailed(step, str(err), temporary=True) from None
                self.progress("retry", step, f"{err} (retry {attempt + 1} in {delay}s)")
                self.cancel.wait(delay)

    def _discard(self, created: list[Step]) -> None:
        """Remove successors that never passed their gate; their predecessors still serve."""
        for step in created:
            engine = self.engines[step.host]
            try:
                if engine.inspect(step.container) is None:
                    continue                     # its create failed before the engine made it
                engine.stop(step.container, grace=0)
                engine.remove(step.container)
                self.progress("done", Step("remove", step.host, step.service, step.replica, step.container,
                                           note="failed successor discarded"), "")
            except Exception as err:             # noqa: BLE001 — reported; the next reconcile retires it
                self.progress("failed", step, f"could not discard {step.container}: {unexpected(err)}")

    def _join(self, engine: Engine, step: Step, info) -> None:
        """Add the service alias to a replica that passed its health gate (Engine.rejoin:
        it leaves the network and joins again, asking for the address it had, so
        connections it opened during its gate — a database pool — stay valid)."""
        network = self.desired.cloud.network
        aliases = service_aliases(step.service, step.replica)
        address, current = info.networks.get(network, ("", ()))
        if set(aliases) <= set(current):
            return                               # joined already (created by an older tidegate)
        engine.rejoin(step.container, network, aliases)
        after = engine.inspect(step.container)
        now = after.networks.get(network) if after is not None else None
        if now is None or not set(aliases) <= set(now[1]):
            raise StepFailed(step, f"{step.container} did not join alias {aliases[0]} on {network}")
        if address and now[0] != address:
            raise StepFailed(step, f"{step.container} came back on {network} as {now[0]}, not {address} "
                                   "(another container took it): connections it opened would hang",
                             temporary=True)

    # -- one step ------------------------------------------------------------
    def _do(self, step: Step) -> str | None:
        """Run one step; a precheck that warns returns its warning (else None)."""
        engine = self.engines[step.host]
        desired = self.desired
        if step.action == "network":
            engine.ensure_network(desired.cloud.network, cloud_labels(desired.cloud.name))
        elif step.action == "image":
            ds = desired.services[step.service]
            if not engine.image_exists(ds.service.image):
                hint = (f"build it with `tidegate images build --cloud {desired.cloud.name} {ds.service.build}`"
                        if ds.service.build else "import or pull it on that host")
                raise StepFailed(step, f"image {ds.service.image} is not on host {step.host}: {hint}")
        elif step.action == "config":
            ds = desired.services[step.service]
            try:
                config_files(desired, ds)
                secret_files(desired, ds)       # the key decrypts them: checked before anything stops
            except SecretError as err:
                raise StepFailed(step, f"config of {ds.name}: {err}") from None
            except ConfigError as err:
                raise StepFailed(step, str(err)) from None
        elif step.action == "job":
            ds = desired.services[step.service]
            spec = place_volumes(engine, job_spec(desired, ds, step.phase, step.job, step.host))
            timeout = (ds.service.bootstrap if step.phase == "bootstrap"
                       else ds.service.upgrade.phase(step.phase))[step.job].timeout
            result = engine.run_job(spec, timeout=timeout)
            if step.phase == "precheck":
                return self._precheck(step, spec.command, result)
            if result.exit_code != 0:
                tail = "\n".join(result.output.splitlines()[-LOG_TAIL:])
                raise StepFailed(step, f"{step.phase} job {' '.join(spec.command)!r} exited {result.exit_code}", tail)
        elif step.action == "create":
            ds = desired.services[step.service]
            spec = replica_spec(desired, ds, step.replica)
            if engine.inspect(spec.name) is None:
                engine.create(place_volumes(engine, spec))
            engine.start(spec.name)
        elif step.action == "wait-healthy":
            self._wait_healthy(engine, step)
        elif step.action == "pre-stop":
            self._pre_stop(engine, step)
        elif step.action == "drain":
            engine.disconnect(step.container, desired.cloud.network)
        elif step.action == "stop":
            svc = desired.services.get(step.service)
            engine.stop(step.container, grace=svc.service.stop_grace if svc else None)
        elif step.action == "remove":
            engine.remove(step.container)
        elif step.action == "analyse":
            result = analyse(self.engines, desired, step.service, cancel=self._abort)
            if result.cancelled:
                raise StepFailed(step, f"analysis of {step.service} cut short after {result.seconds:.1f}s")
            if not result.ok:
                raise StepFailed(step, analysis_message(result.evidence), evidence=result.evidence)
        else:
            raise StepFailed(step, f"unknown step {step.action!r}")

    def _pre_stop(self, engine: Engine, step: Step) -> None:
        try:
            lifecycle.pre_stop(engine, step.container)
        except lifecycle.HookFailed as err:
            raise StepFailed(step, str(err), err.output) from None

    def _post_ready(self, engine: Engine, step: Step, info) -> None:
        try:
            lifecycle.post_ready(engine, step.container, info)
        except lifecycle.HookFailed as err:
            raise StepFailed(step, str(err), err.output) from None

    def _precheck(self, step: Step, command, result) -> str | None:
        """Exit 0 passes; 1 is a warning, kept in the outcome; anything else blocks."""
        found = precheck.verdict(result.exit_code, result.output)
        what = f"precheck {step.note} of {step.service} ({' '.join(command)!r})"
        if found.result == precheck.FAILURE:
            raise StepFailed(step, f"{what} exited {result.exit_code}, the rollout is blocked: {found.summary}",
                             found.excerpt)
        if found.result == precheck.WARNING:
            with self._lock:
                self._warnings.append({"service": step.service, "job": step.note, "exit_code": result.exit_code,
                                       "summary": found.summary, "output": found.excerpt})
            return f"{what} warns (exit 1): {found.summary}"
        return None

    def _wait_healthy(self, engine: Engine, step: Step) -> None:
        """The health gate, probed at the replica's own address; only a replica that
        passed it joins its service's alias, and then holds `min_ready` in it."""
        ds = self.desired.services[step.service]
        info = engine.inspect(step.container)
        if info is None:
            raise StepFailed(step, f"{step.container} vanished before it became healthy")
        network = self.desired.cloud.network
        route = via(engine, self.desired.cloud.hosts[step.host].address)
        result = wait_healthy(engine, info, ds.service.health, network=network, via=route, cancel=self._abort)
        deep = None
        if result.ok and ds.service.checks:
            # real work before the alias: a replica that answers but does not work never
            # receives a user's request, and no old replica goes for it
            deep = DeepChecks(engine, ds.service.checks, network=network, via=route,
                              tokens=Tokens(self.desired.cloud, self.engines, network, self.desired.vault), cancel=self._abort)
            ready = deep.until_ready(info)
            if not ready.ok:
                raise StepFailed(step, f"{step.container} is healthy but failed its {ready.reason}",
                                 engine.logs(step.container, tail=LOG_TAIL))
        if result.ok:
            self._post_ready(engine, step, info)
            self._join(engine, step, info)
        if result.ok and step.hold:
            result = stay_healthy(engine, info, ds.service.health, step.hold, network=network, via=route,
                                  cancel=self._abort, also=deep.round if deep is not None else None)
        if not result.ok and result.reason.startswith("deep check"):
            raise StepFailed(step, f"{step.container} failed its {result.reason} during min_ready",
                             engine.logs(step.container, tail=LOG_TAIL))
        if not result.ok:
            raise StepFailed(step, f"{step.container} did not become healthy: {result.reason}",
                             engine.logs(step.container, tail=LOG_TAIL))
