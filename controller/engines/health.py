"""Health checks run by tidegate itself — identical on every engine (podman 4.3 without
systemd never updates a container's health status).

Where an http/tcp check connects (`via`): for an engine on this machine, the container's
address on the cloud network (or, without one, a port published on 127.0.0.1); for a
remote engine ONLY a port the container publishes on its host's address. A remote host's
container address means nothing here: dialled from this machine it leaves through the
default route, and whatever answers there could pass the check. exec checks run a
command in the container through the engine.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .base import ContainerInfo, Engine, EngineError


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    reason: str = ""
    attempts: int = 0
    seconds: float = 0.0


def via(engine: Engine, host_address: str) -> str | None:
    """The address checks of `engine`'s containers go through: None for an engine on
    this machine (the containers' own addresses), the host's address for a remote one."""
    return host_address if engine.remote else None


def target_of(info: ContainerInfo, port: int, network: str | None, via: str | None) -> tuple[str, int] | None:
    published = info.ports.get(f"{port}/tcp")
    if via is not None:
        return (via, published) if published else None
    ip = info.ip(network) if network else info.ip()
    if ip:
        return ip, port
    if published:
        return "127.0.0.1", published
    return None


def check_once(engine: Engine, info: ContainerInfo, check, *, network: str | None = None,
               via: str | None = None) -> tuple[bool, str]:
    """One probe: (healthy, reason)."""
    if check.type == "exec":
        try:
            result = engine.exec(info.id, list(check.command), timeout=check.timeout)
        except EngineError as err:
            return False, str(err)
        return result.exit_code == 0, f"exit {result.exit_code}: {result.output.strip()[-200:]}"
    target = target_of(info, check.port, network, via)
    if target is None:
        if via is not None:
            return False, f"port {check.port} is not published on the host's address {via} (a remote host's container is probed only there)"
        return False, f"no address for port {check.port} (not on network {network}, not published)"
    address, port = target
    if check.type == "tcp":
        try:
            with socket.create_connection((address, port), timeout=check.timeout):
                return True, f"tcp {address}:{port} open"
        except OSError as err:
            return False, f"tcp {address}:{port}: {err.strerror or err}"
    where = f"GET http://{address}:{port}{check.path}"
    conn = http.client.HTTPConnection(address, port, timeout=check.timeout)
    try:
        conn.request("GET", check.path or "/", headers={"User-Agent": "tidegate-health"})
        response = conn.getresponse()
        body = response.read(65536).decode(errors="replace")
    except (OSError, http.client.HTTPException) as err:
        return False, f"{where}: {getattr(err, 'strerror', None) or err}"
    finally:
        conn.close()
    accepted = check.status or tuple(range(200, 400))
    if response.status not in accepted:
        server = response.getheader("Server")
        return False, f"{where} answered {response.status}" + (f" (Server: {server})" if server else "")
    if check.body and check.body not in body:
        return False, f"{where} body lacks {check.body!r}"
    return True, f"GET {check.path} answered {response.status}"


_DOWN = ("exited", "dead", "stopped", "restarting", "removing")


def fell_over(first: ContainerInfo, current: ContainerInfo | None) -> str | None:
    """Why a container being health-gated is out already, or None while it still runs.

    Looked at every round, before any probe: a replica that exits, or that its restart
    policy brings back (a crash loop looks "running" most of the time), fails its gate
    at once instead of after `start_period` (measured: 128 s for a crash-looping
    Placement successor)."""
    if current is None:
        return "container disappeared"
    if current.state == "created":
        return "container was never started"
    restarts = current.restart_count - first.restart_count
    restarted = restarts > 0 or (first.started_at and current.started_at
                                 and current.started_at != first.started_at)
    if current.state in _DOWN or restarted:
        if not restarted:
            return f"container exited with code {current.exit_code}"
        # (the exit code of a container running again is not the last run's on podman)
        return f"container exited and was restarted ({max(restarts, 1)} restart(s) during its health gate)"
    return None


def wait_healthy(engine: Engine, info: ContainerInfo, check, *, network: str | None = None,
                 via: str | None = None, cancel: threading.Event | None = None,
                 deadline: float | None = None) -> HealthResult:
    """Probe every `interval` until one probe passes. Failures during `start_period` do
    not count; after it, `retries` consecutive failures mean unhealthy. A container
    that exits or restarts is unhealthy at once (`fell_over`). No check at all: healthy once running.

    `deadline` (seconds from now) bounds the whole wait; `cancel` ends it early (the
    executor's stop). An engine that stops answering raises EngineError (temporary):
    that says nothing about the container's health."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    attempts = 0
    if check is None:
        out = fell_over(info, engine.inspect(info.id))
        return HealthResult(out is None, out or "running (no health check)", 0, 0.0)
    failures = 0
    reason = ""
    while True:
        if cancel.is_set():
            return HealthResult(False, "cancelled", attempts, time.monotonic() - start)
        if deadline is not None and time.monotonic() - start >= deadline:
            return HealthResult(False, f"not healthy within {deadline:g}s (last: {reason or 'no probe yet'})",
                                attempts, time.monotonic() - start)
        current = engine.inspect(info.id)
        out = fell_over(info, current)
        if out is not None:
            return HealthResult(False, out, attempts, time.monotonic() - start)
        attempts += 1
        ok, reason = check_once(engine, current, check, network=network, via=via)
        elapsed = time.monotonic() - start
        if ok:
            return HealthResult(True, reason, attempts, elapsed)
        if elapsed >= check.start_period:
            failures += 1
            if failures >= check.retries:
                return HealthResult(False, f"{reason} ({failures} consecutive failures)", attempts, elapsed)
        if cancel.wait(check.interval):
            return HealthResult(False, "cancelled", attempts, time.monotonic() - start)


def stay_healthy(engine: Engine, info: ContainerInfo, check, seconds: float, *, network: str | None = None,
                 via: str | None = None, cancel: threading.Event | None = None,
                 also: Callable[[ContainerInfo], str | None] | None = None) -> HealthResult:
    """After a first good check: keep probing every `interval` for `seconds` (the
    service's min_ready). `retries` consecutive failures, or the container exiting,
    mean it did not stay healthy; a single slow probe on a busy host does not.
    `also` runs after each probe (the deep checks' round): a reason it returns ends
    the wait as unhealthy."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    attempts = failures = 0
    step = check.interval if check is not None else min(seconds, 0.5) or 0.5
    reason = "running"
    while True:
        remaining = seconds - (time.monotonic() - start)
        if remaining <= 0:
            break
        if cancel.wait(min(step, remaining)):
            return HealthResult(False, "cancelled", attempts, time.monotonic() - start)
        current = engine.inspect(info.id)
        out = fell_over(info, current) or (None if current.running else f"container is {current.state}")
        if out is not None:
            return HealthResult(False, out, attempts, time.monotonic() - start)
        if check is not None:
            attempts += 1
            ok, reason = check_once(engine, current, check, network=network, via=via)
            failures = 0 if ok else failures + 1
            if failures >= check.retries:
                return HealthResult(False, f"{reason} ({failures} consecutive failures after it was healthy)",
                                    attempts, time.monotonic() - start)
        broken = also(current) if also is not None else None
        if broken:
            return HealthResult(False, broken, attempts, time.monotonic() - start)
    return HealthResult(True, f"healthy for {seconds:g}s ({reason})", attempts, time.monotonic() - start)
