"""Health checks run by tidegate itself — identical on every engine (podman 4.3 without
systemd never updates a container's health status).

http and tcp checks connect to the container's address on the cloud network (reachable
from the controller's machine for a local engine), or, when it has none, to a published
port on the host's address. exec checks run a command in the container.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass

from .base import ContainerInfo, Engine, EngineError


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    reason: str = ""
    attempts: int = 0
    seconds: float = 0.0


def _target(info: ContainerInfo, port: int, network: str | None, host_address: str) -> tuple[str, int] | None:
    ip = info.ip(network) if network else info.ip()
    if ip:
        return ip, port
    published = info.ports.get(f"{port}/tcp")
    if published:
        return host_address, published
    return None


def check_once(engine: Engine, info: ContainerInfo, check, *, network: str | None = None,
               host_address: str = "127.0.0.1") -> tuple[bool, str]:
    """One probe: (healthy, reason)."""
    if check.type == "exec":
        try:
            result = engine.exec(info.id, list(check.command), timeout=check.timeout)
        except EngineError as err:
            return False, str(err)
        return result.exit_code == 0, f"exit {result.exit_code}: {result.output.strip()[-200:]}"
    target = _target(info, check.port, network, host_address)
    if target is None:
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


def wait_healthy(engine: Engine, info: ContainerInfo, check, *, network: str | None = None,
                 host_address: str = "127.0.0.1", cancel: threading.Event | None = None,
                 deadline: float | None = None) -> HealthResult:
    """Probe every `interval` until one probe passes. Failures during `start_period` do
    not count; after it, `retries` consecutive failures mean unhealthy. A container
    that exits is unhealthy at once. No check at all: healthy once running.

    `deadline` (seconds from now) bounds the whole wait; `cancel` ends it early (the
    executor's stop). An engine that stops answering raises EngineError (temporary):
    that says nothing about the container's health."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    attempts = 0
    if check is None:
        current = engine.inspect(info.id)
        ok = current is not None and current.running
        return HealthResult(ok, "running (no health check)" if ok else "not running", 0, 0.0)
    failures = 0
    reason = ""
    while True:
        if cancel.is_set():
            return HealthResult(False, "cancelled", attempts, time.monotonic() - start)
        if deadline is not None and time.monotonic() - start >= deadline:
            return HealthResult(False, f"not healthy within {deadline:g}s (last: {reason or 'no probe yet'})",
                                attempts, time.monotonic() - start)
        current = engine.inspect(info.id)
        if current is None:
            return HealthResult(False, "container disappeared", attempts, time.monotonic() - start)
        if current.state in ("exited", "dead", "stopped"):
            return HealthResult(False, f"container exited with code {current.exit_code}", attempts,
                                time.monotonic() - start)
        if current.state == "created":
            return HealthResult(False, "container was never started", attempts, time.monotonic() - start)
        attempts += 1
        ok, reason = check_once(engine, current, check, network=network, host_address=host_address)
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
                 host_address: str = "127.0.0.1", cancel: threading.Event | None = None) -> HealthResult:
    """After a first good check: keep probing every `interval` for `seconds` (the
    service's min_ready). `retries` consecutive failures, or the container exiting,
    mean it did not stay healthy; a single slow probe on a busy host does not."""
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
        if current is None:
            return HealthResult(False, "container disappeared", attempts, time.monotonic() - start)
        if not current.running:
            return HealthResult(False, f"container exited with code {current.exit_code}", attempts,
                                time.monotonic() - start)
        if check is None:
            continue
        attempts += 1
        ok, reason = check_once(engine, current, check, network=network, host_address=host_address)
        failures = 0 if ok else failures + 1
        if failures >= check.retries:
            return HealthResult(False, f"{reason} ({failures} consecutive failures after it was healthy)",
                                attempts, time.monotonic() - start)
    return HealthResult(True, f"healthy for {seconds:g}s ({reason})", attempts, time.monotonic() - start)
