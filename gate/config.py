"""`clouds/<cloud>/tests/gate.yaml`: what the gate probes and gives to the hooks.

    endpoints:                      # the cloud's APIs, reached through its front
      keystone:  {service: haproxy, port: 5000, path: /v3}
      placement: {service: haproxy, port: 8778, path: /}
    auth: keystone                  # the endpoint given to hooks as OS_AUTH_URL
    env:                            # more environment for the hooks (credentials…)
      OS_USERNAME: admin
    probes: [keystone, placement]   # endpoints probed during the upgrade (default: all)
    budget:
      failed_requests: 0            # failed probe requests allowed (default 0)
    hook_timeout: 300               # seconds per hook (default 300)

`service`/`port` name a published container port of a service: the gate replaces host
ports with free ones, so endpoints are given by what they are, not by a host port.
Every key is optional; a cloud without the file gets no probes and no hook environment
beyond TIDEGATE_CLOUD and TIDEGATE_HOOK_STATE.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import yaml

FILE = "tests/gate.yaml"


class GateConfigError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    name: str
    service: str
    port: int
    path: str = "/"
    status: tuple[int, ...] = ()       # () = any answer below 500


@dataclass(frozen=True)
class GateConfig:
    endpoints: tuple[Endpoint, ...] = ()
    auth: str | None = None
    env: dict = field(default_factory=dict)
    probes: tuple[str, ...] = ()
    failed_requests: int = 0
    hook_timeout: float = 300.0

    def endpoint(self, name: str) -> Endpoint:
        return next(e for e in self.endpoints if e.name == name)


def load(data: bytes | None, where: str) -> GateConfig:
    """Parse gate.yaml (None: the file does not exist). Errors name the file and field."""
    if data is None:
        return GateConfig()
    try:
        doc = yaml.safe_load(data) or {}
    except yaml.YAMLError as err:
        raise GateConfigError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise GateConfigError(f"{where}: expected a mapping")
    unknown = set(doc) - {"endpoints", "auth", "env", "probes", "budget", "hook_timeout"}
    if unknown:
        raise GateConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    endpoints = []
    for name, spec in (doc.get("endpoints") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("service"), str) or not isinstance(spec.get("port"), int):
            raise GateConfigError(f"{where}: endpoints.{name}: needs service (a name) and port (a number)")
        status = spec.get("status", [])
        status = status if isinstance(status, list) else [status]
        if not all(isinstance(s, int) and 100 <= s <= 599 for s in status):
            raise GateConfigError(f"{where}: endpoints.{name}.status: expected HTTP status codes")
        endpoints.append(Endpoint(str(name), spec["service"], spec["port"], str(spec.get("path", "/")), tuple(status)))
    names = {e.name for e in endpoints}
    auth = doc.get("auth")
    if auth is not None and auth not in names:
        raise GateConfigError(f"{where}: auth: {auth!r} is not one of the endpoints")
    probes = tuple(doc.get("probes") or sorted(names))
    for p in probes:
        if p not in names:
            raise GateConfigError(f"{where}: probes: {p!r} is not one of the endpoints")
    env = doc.get("env") or {}
    if not isinstance(env, dict):
        raise GateConfigError(f"{where}: env: expected a mapping of names to values")
    budget = doc.get("budget") or {}
    failed = budget.get("failed_requests", 0) if isinstance(budget, dict) else None
    if not isinstance(failed, int) or failed < 0:
        raise GateConfigError(f"{where}: budget.failed_requests: expected a number ≥ 0")
    timeout = doc.get("hook_timeout", 300)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise GateConfigError(f"{where}: hook_timeout: expected seconds > 0")
    return GateConfig(tuple(endpoints), auth, {str(k): str(v) for k, v in env.items()}, probes, failed, float(timeout))


def governing(base: bytes | None, head: bytes | None, where: str) -> tuple[GateConfig, str]:
    """The head's gate.yaml, except that a change cannot raise its own availability budget:
    the base's budget holds when it is stricter. Returns (config, a note when it applied)."""
    config = load(head, where)
    if base is None:
        return config, ""
    base_budget = load(base, f"{where} (base)").failed_requests
    if base_budget >= config.failed_requests:
        return config, ""
    note = (f"budget: {config.failed_requests} failed request(s) allowed at head, {base_budget} at base: "
            f"{base_budget} holds until the change merges")
    return replace(config, failed_requests=base_budget), note
