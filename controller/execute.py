"""The executor: the ONLY code that changes engines. It runs a Plan step by step,
health-gates every new replica, and stops at the first failure without losing what
serves: old replicas are retired only after their successors are healthy, and a
successor that fails its gate is removed. The controller and the gate both use it.

Errors are classified (STYLE.md #5): an engine that does not answer is temporary and the
step is retried with backoff; a failed job or health gate is permanent for this commit.

Stopping: `cancel` (the controller's SIGTERM) lets the step in progress finish, health
gates included, and starts no other; the outcome is "interrupted" and the next reconcile
resumes. An exception in the caller's thread (Ctrl-C in the gate) also cuts a health
wait short, so teardown is not kept waiting.

Migration phases are journalled step by step (`journal`), not at the end of the run: a
controller killed between the last replica and the contract job must still know, when it
restarts, that the contract is owed.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from .desired import Desired
from .engines.base import Engine, EngineError
from .engines.health import stay_healthy, wait_healthy
from .plan import Plan, ServicePlan, Step
from .spec import cloud_labels, job_spec, replica_spec

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)      # temporary engine errors: 5 attempts over ~7.5 s
LOG_TAIL = 20


class StepFailed(Exception):
    def __init__(self, step: Step, message: str, logs: str = "", temporary: bool = False):
        super().__init__(message)
        self.step = step
        self.logs = logs
        self.temporary = temporary


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

    def summary(self) -> str:
        if self.ok:
            return f"converged: {self.steps_done} step(s) in {self.seconds:.1f}s"
        if self.interrupted:
            return f"interrupted after {self.steps_done} step(s); the next reconcile resumes"
        if self.failed_step is None:                 # no step failed: hosts did not answer
            return f"not converged: {self.error}"
        return f"failed at step '{self.failed_step.describe()}': {self.error}"


Progress = Callable[[str, Step, str], None]   # (event, step, detail); event: start | done | failed | retry
Journal = Callable[[Step], None]              # called (serialised) after each step that succeeded


class Executor:
    def __init__(self, engines: dict[str, Engine], desired: Desired, *, config_root: str,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 journal: Journal | None = None):
        self.engines = engines
        self.desired = desired
        self.config_root = config_root
        self.progress = progress or (lambda event, step, detail: None)
        self.cancel = cancel or threading.Event()
        self.journal = journal or (lambda step: None)
        self._abort = threading.Event()           # cuts health waits short: the caller is gone
        self._lock = threading.Lock()

    # -- running a plan ------------------------------------------------------
    def run(self, plan: Plan) -> Outcome:
        outcome = Outcome()
        start = time.monotonic()
        for wave in plan.waves:
            if self.cancel.is_set():
                outcome.ok, outcome.interrupted = False, True
                break
            with ThreadPoolExecutor(max_workers=max(1, len(wave)), thread_name_prefix="tidegate-svc") as pool:
                try:
                    results = list(pool.map(lambda sp: self._run_service(sp, outcome), wave))
                except BaseException:
                    # KeyboardInterrupt in this thread: the workers stop at their next step
                    # (and leave health waits) before the pool's exit waits for them
                    self.cancel.set()
                    self._abort.set()
                    raise
            if not all(results):
                outcome.ok = False
                break
        outcome.seconds = time.monotonic() - start
        return outcome

    def _run_service(self, sp: ServicePlan, outcome: Outcome) -> bool:
        created: list[Step] = []         # successors not yet through their health gate
        for step in sp.steps:
            if self.cancel.is_set():
                with self._lock:
                    outcome.ok, outcome.interrupted = False, True
                return False
            self.progress("start", step, "")
            t0 = time.monotonic()
            try:
                self._with_retry(step, self._do)
            except StepFailed as err:
                self.progress("failed", step, str(err))
                self._discard(created)
                with self._lock:
                    if outcome.failed_step is None:
                        outcome.ok = False
                        outcome.failed_step, outcome.error = step, str(err)
                        outcome.logs, outcome.temporary = err.logs, err.temporary
                return False
            self.progress("done", step, f"{time.monotonic() - t0:.1f}s")
            with self._lock:
                outcome.steps_done += 1
                self.journal(step)
            if step.action == "create":
                created.append(step)
            elif step.action == "wait-healthy":
                created = [s for s in created if s.container != step.container]
        return True

    def _with_retry(self, step: Step, fn) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                return fn(step)
            except EngineError as err:
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
                engine.stop(step.container, grace=0)
                engine.remove(step.container)
                self.progress("done", Step("remove", step.host, step.service, step.replica, step.container,
                                           note="failed successor discarded"), "")
            except EngineError as err:
                self.progress("failed", step, f"could not discard {step.container}: {err}")

    # -- one step ------------------------------------------------------------
    def _do(self, step: Step) -> None:
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
        elif step.action == "job":
            ds = desired.services[step.service]
            spec = job_spec(desired, ds, step.phase, step.job, self.config_root)
            timeout = (ds.service.bootstrap if step.phase == "bootstrap"
                       else ds.service.upgrade.phase(step.phase))[step.job].timeout
            result = engine.run_job(spec, timeout=timeout)
            if result.exit_code != 0:
                tail = "\n".join(result.output.splitlines()[-LOG_TAIL:])
                raise StepFailed(step, f"{step.phase} job {' '.join(spec.command)!r} exited {result.exit_code}", tail)
        elif step.action == "create":
            ds = desired.services[step.service]
            spec = replica_spec(desired, ds, step.replica, self.config_root)
            if engine.inspect(spec.name) is None:
                engine.create(spec)
            engine.start(spec.name)
        elif step.action == "wait-healthy":
            self._wait_healthy(engine, step)
        elif step.action == "drain":
            engine.disconnect(step.container, desired.cloud.network)
        elif step.action == "stop":
            svc = desired.services.get(step.service)
            engine.stop(step.container, grace=svc.service.stop_grace if svc else None)
        elif step.action == "remove":
            engine.remove(step.container)
        else:
            raise StepFailed(step, f"unknown step {step.action!r}")

    def _wait_healthy(self, engine: Engine, step: Step) -> None:
        ds = self.desired.services[step.service]
        info = engine.inspect(step.container)
        if info is None:
            raise StepFailed(step, f"{step.container} vanished before it became healthy")
        result = wait_healthy(engine, info, ds.service.health, network=self.desired.cloud.network,
                              cancel=self._abort)
        if result.ok and step.hold:
            result = stay_healthy(engine, info, ds.service.health, step.hold,
                                  network=self.desired.cloud.network, cancel=self._abort)
        if not result.ok:
            raise StepFailed(step, f"{step.container} did not become healthy: {result.reason}",
                             engine.logs(step.container, tail=LOG_TAIL))
