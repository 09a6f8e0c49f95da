"""Grenade-style resource hooks: `clouds/<cloud>/tests/<service>/{create,verify,destroy,load}`
for one service, `clouds/<cloud>/tests/<project>/…` for every service of a project (run
once per project, before its services' own hooks).

Contract (also in README): a hook is an executable (any language; `#!` line). It runs
with the cloud folder as its working directory and gets, besides the caller's PATH:

    TIDEGATE_CLOUD          the (test) cloud's name
    TIDEGATE_SERVICE        the service the hook belongs to (a project's hook: the project)
    TIDEGATE_PROJECT        the OpenStack project of that service (or the project itself)
    TIDEGATE_SERVICES       the services the hook serves, space-separated (one, or the project's)
    TIDEGATE_PHASE          create | verify | destroy | load
    TIDEGATE_LOAD_DURING    (load only) upgrade | rollback | contract
    TIDEGATE_LOAD_STOP      (load only) a path: stop once it exists
    TIDEGATE_HOOK_STATE     a directory kept from create to destroy (ids, names…)
    TIDEGATE_ENDPOINT_<N>   each endpoint of tests/gate.yaml, e.g. TIDEGATE_ENDPOINT_KEYSTONE
    OS_AUTH_URL             the `auth` endpoint's URL, when gate.yaml names one
    …                       the `env` of gate.yaml (credentials)

Exit 0 passes; anything else fails, and the last lines of its output are the message.

A `load` hook is a workload kept running while a phase changes the cloud (upgrade,
rollback, contract): it starts with the phase's availability probes and works until the
file `TIDEGATE_LOAD_STOP` exists (made after the phase's convergence; a file, not a signal,
so a hook that is still starting cannot miss it), then ends its operation in flight and
exits — 0 when every operation succeeded, else non-zero with what failed on its last line.
It gets `hook_timeout` seconds to end, then SIGKILL (and fails). One that ends by itself
earlier is judged by its exit code too.

A change cannot weaken the hooks that judge it: the BASE commit's hooks always run (from
the base's files, even when the head deleted or emptied them); a head hook that is new
or differs from the base's runs too, after it, with its own TIDEGATE_HOOK_STATE.
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PHASES = ("create", "verify", "destroy", "load")


def endpoint_url(config, ports, name: str) -> str:
    """http://127.0.0.1:<host port><path> of a gate.yaml endpoint in a test cloud."""
    e = config.endpoint(name)
    port = ports.lookup(e.service, e.port)
    if port is None:
        raise LookupError(f"tests/gate.yaml: endpoints.{name}: service {e.service} publishes no port {e.port}")
    return f"http://127.0.0.1:{port}{e.path}"


def environment(config, ports, cloud: str) -> dict[str, str]:
    """What every hook gets (see the module's contract)."""
    env = {"TIDEGATE_CLOUD": cloud, **config.env}
    for e in config.endpoints:
        env[f"TIDEGATE_ENDPOINT_{e.name.upper().replace('-', '_')}"] = endpoint_url(config, ports, e.name)
    if config.auth:
        env["OS_AUTH_URL"] = endpoint_url(config, ports, config.auth)
    return env


@dataclass
class HookResult:
    service: str
    phase: str
    ok: bool
    seconds: float
    output: str
    code: int | None = None          # exit code; None when it never ran to an end

    @property
    def message(self) -> str:
        lines = [ln for ln in self.output.strip().splitlines() if ln.strip()]
        text = lines[-1] if lines else ("ok" if self.ok else "failed without output")
        return text if self.ok or self.code is None else f"{text} (exit {self.code})"


@dataclass(frozen=True)
class Hook:
    service: str                     # the folder: a service, or a project for a project's hook
    phase: str
    commit: str                      # "base" | "head": whose file it is
    path: str                        # tests/<service or project>/<phase>, inside the cloud folder
    project: str = ""
    services: tuple[str, ...] = ()   # the services it serves

    def environment(self) -> dict[str, str]:
        return {"TIDEGATE_PROJECT": self.project or self.service,
                "TIDEGATE_SERVICES": " ".join(self.services or (self.service,))}


def units(order: list[str], projects: dict[str, str] | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
    """(folder, project, services) in `order`: a project's folder before its first service
    (when the project's name is not itself a service's), then each service's own."""
    projects = projects or {}
    members: dict[str, list[str]] = {}
    for service in order:
        members.setdefault(projects.get(service, ""), []).append(service)
    out, seen = [], set()
    for service in order:
        project = projects.get(service, "")
        if project and project not in seen and project not in order:
            seen.add(project)
            out.append((project, project, tuple(members[project])))
        out.append((service, project, ()))        # () : the service itself
    return out


def select(base: dict, head: dict, prefix: str, phase: str, order: list[str],
           projects: dict[str, str] | None = None) -> list[Hook]:
    """The hooks of `phase` to run, in `order`: the base's always, the head's when new or
    changed. `base`/`head`: path -> (content, mode) of the two commits' files; `projects`:
    service -> project, for the hooks of a project (tests/<project>/)."""
    chosen = []
    for folder, project, services in units(order, projects):
        rel = f"tests/{folder}/{phase}"
        at_base, at_head = base.get(prefix + rel), head.get(prefix + rel)
        if at_base is not None:
            chosen.append(Hook(folder, phase, "base", rel, project, services))
        if at_head is not None and at_head != at_base:
            chosen.append(Hook(folder, phase, "head", rel, project, services))
    return chosen


def find(cloud_dir: Path, phase: str, order: list[str]) -> list[tuple[str, Path]]:
    """The hooks of one phase, in `order` (dependency order; destroy: reversed by the caller)."""
    found = []
    for service in order:
        path = cloud_dir / "tests" / service / phase
        if path.is_file():
            found.append((service, path))
    return found


def _environment(service: str, phase: str, env: dict[str, str], state: Path) -> dict[str, str]:
    # no __pycache__ written into the cloud folder (a git working tree)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            **env, "TIDEGATE_SERVICE": service, "TIDEGATE_PHASE": phase, "TIDEGATE_HOOK_STATE": str(state)}


def run(path: Path, service: str, phase: str, env: dict[str, str], state_dir: Path, cwd: Path,
        timeout: float) -> HookResult:
    state = state_dir / service
    state.mkdir(parents=True, exist_ok=True)
    full = _environment(service, phase, env, state)
    t0 = time.monotonic()
    if not os.access(path, os.X_OK):
        return HookResult(service, phase, False, 0.0, f"{path}: not executable (chmod +x, and a #! line)")
    try:
        proc = subprocess.run([str(path)], cwd=cwd, env=full, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        return HookResult(service, phase, False, time.monotonic() - t0, out + f"\ntimed out after {timeout:g}s")
    except OSError as err:
        return HookResult(service, phase, False, time.monotonic() - t0, f"{path}: cannot run: {err.strerror}")
    return HookResult(service, phase, proc.returncode == 0, time.monotonic() - t0, proc.stdout + proc.stderr,
                      proc.returncode)


class Load:
    """A `load` hook running in the background (see the module's contract)."""

    def __init__(self, path: Path, service: str, env: dict[str, str], state_dir: Path, cwd: Path, during: str):
        self.service, self.path = service, path
        state = state_dir / service
        state.mkdir(parents=True, exist_ok=True)
        self.out = tempfile.TemporaryFile(mode="w+", prefix=f"load-{service}-")
        self.stop_file = state / f"load-{during}.stop"
        self.stop_file.unlink(missing_ok=True)
        self.t0 = time.monotonic()
        self.proc: subprocess.Popen | None = None
        self.problem = ""
        if not os.access(path, os.X_OK):
            self.problem = f"{path}: not executable (chmod +x, and a #! line)"
            return
        try:
            self.proc = subprocess.Popen([str(path)], cwd=cwd, stdin=subprocess.DEVNULL, stdout=self.out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**_environment(service, "load", env, state),
                                              "TIDEGATE_LOAD_DURING": during,
                                              "TIDEGATE_LOAD_STOP": str(self.stop_file)})
        except OSError as err:
            self.problem = f"{path}: cannot run: {err.strerror}"

    def stop(self, timeout: float) -> HookResult:
        """The stop file, then at most `timeout` seconds to end (its operation in flight),
        then SIGKILL."""
        if self.proc is None:
            return HookResult(self.service, "load", False, 0.0, self.problem)
        self.stop_file.touch()
        try:
            code = self.proc.wait(timeout=timeout)
            tail = ""
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            code, tail = None, f"\ndid not stop within {timeout:g}s of being told: killed"
        self.out.seek(0)
        output = self.out.read() + tail
        self.out.close()
        return HookResult(self.service, "load", code == 0, time.monotonic() - self.t0, output, code)
