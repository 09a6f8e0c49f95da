"""`clouds/<cloud>/tests/gate.yaml`: what the gate probes and gives to the hooks.

    endpoints:                      # the cloud's APIs, reached through its front
      keystone:  {service: haproxy, port: 5000, path: /v3}
      placement: {service: haproxy, port: 8778, path: /}
      users:     {service: haproxy, port: 5000, path: /v3/users, status: [200], token: true}
    auth: keystone                  # the endpoint given to hooks as OS_AUTH_URL
    env:                            # more environment for the hooks (credentials…)
      OS_USERNAME: admin
    probes: [keystone, placement]   # endpoints probed during the upgrade (default: all)
    budget:
      failed_requests: 0            # failed probe requests allowed (default 0)
    hook_timeout: 300               # seconds per hook (default 300)
    probe_timeout: 10               # seconds one probe request may take; a slower answer fails (default 10)
    contract: true                  # test the contract phase too (as --contract does; default false)
    tempest: {regex: "^tempest\\.api\\.identity\\.v3"}   # Tempest tests after each phase (gate/tempest.py)

`service`/`port` name a published container port of a service: the gate replaces host
ports with free ones, so endpoints are given by what they are, not by a host port.
Every key is optional; a cloud without the file gets no probes and no hook environment
beyond TIDEGATE_CLOUD and TIDEGATE_HOOK_STATE. Its schema: `tidegate schema gate`.
With a base, `governing` decides what holds: the base's settings, plus what the head adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from validators.model import SecretRef
from validators.schema import InvalidFile, load_checked

from .tempest import Settings as TempestSettings

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
    token: bool = False                # asked with a token from `auth` (path may hold {project_id})


@dataclass(frozen=True)
class GateConfig:
    endpoints: tuple[Endpoint, ...] = ()
    auth: str | None = None
    env: dict = field(default_factory=dict)
    probes: tuple[str, ...] = ()
    failed_requests: int = 0
    hook_timeout: float = 300.0
    probe_timeout: float = 10.0
    contract: bool = False
    tempest: TempestSettings | None = None

    def endpoint(self, name: str) -> Endpoint:
        return next(e for e in self.endpoints if e.name == name)


def load(data: bytes | None, where: str) -> GateConfig:
    """Parse gate.yaml (None: the file does not exist; an empty file sets nothing).
    Strict YAML and schema/gate.schema.json; errors are one line naming file and field."""
    if data is None or not data.strip():
        return GateConfig()
    try:
        doc = load_checked(data, where, "gate")
    except InvalidFile as err:
        if err.findings[0].rule == "schema.empty":        # comments only: sets nothing
            return GateConfig()
        raise GateConfigError(str(err)) from None
    endpoints = []
    for name, spec in (doc.get("endpoints") or {}).items():
        status = spec.get("status", [])
        endpoints.append(Endpoint(name, spec["service"], spec["port"], spec.get("path", "/"),
                                  tuple(status if isinstance(status, list) else [status]), bool(spec.get("token"))))
    names = {e.name for e in endpoints}
    auth = doc.get("auth")
    if auth is not None and auth not in names:
        raise GateConfigError(f"{where}: auth: {auth!r} is not one of the endpoints")
    for e in endpoints:
        if e.token and auth is None:
            raise GateConfigError(f"{where}: endpoints.{e.name}.token: a token comes from `auth`, which is not set")
    probes = tuple(doc.get("probes") or sorted(names))
    for p in probes:
        if p not in names:
            raise GateConfigError(f"{where}: probes: {p!r} is not one of the endpoints")
    env = {str(k): _text(v) for k, v in (doc.get("env") or {}).items()}
    failed = (doc.get("budget") or {}).get("failed_requests", 0)
    return GateConfig(tuple(endpoints), auth, env, probes, failed, float(doc.get("hook_timeout", 300)),
                      float(doc.get("probe_timeout", 10)), bool(doc.get("contract", False)),
                      _tempest(doc.get("tempest"), auth, where))


def _tempest(doc, auth, where: str) -> TempestSettings | None:
    settings = TempestSettings.from_doc(doc)
    if settings is not None and auth is None:
        raise GateConfigError(f"{where}: tempest: Tempest reaches the cloud through `auth`, which is not set")
    if settings is not None and not settings.regex and not settings.tests:
        raise GateConfigError(f"{where}: tempest: name the tests (regex or tests)")
    return settings


def resolve_env(config: "GateConfig", value_of) -> "GateConfig":
    """`config` with each `{secret: NAME}` of its env replaced by `value_of(NAME)` (the
    gate's decrypted value, in memory)."""
    env = {k: v if isinstance(v, str) else value_of(v.secret) for k, v in config.env.items()}
    return replace(config, env=env)


def secret_names(config: "GateConfig") -> set[str]:
    return {v.secret for v in config.env.values() if isinstance(v, SecretRef)}


def _text(value):
    if isinstance(value, dict):
        return SecretRef(value["secret"])
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def governing(base: bytes | None, head: bytes | None, where: str) -> tuple[GateConfig, list[str]]:
    """The settings that judge a change: a change cannot weaken the gate that judges it.

    The base's endpoints (with the base's definition of each), probes, budget, auth,
    env and hook timeout hold; the head may add endpoints, probes and env, and tighten
    the budget. A head that deletes gate.yaml or empties it keeps the base's. What the
    head tried to loosen takes effect once the change merges (merge it on its own first).
    Returns (config, one note per thing the base kept)."""
    head_config = load(head, where)
    if base is None:
        return head_config, []
    base_config = load(base, f"{where} (base)")
    notes = []
    endpoints = {e.name: e for e in base_config.endpoints}
    for e in head_config.endpoints:
        kept = endpoints.setdefault(e.name, e)
        if kept != e:
            notes.append(f"endpoints.{e.name}: the base's definition holds until the change merges "
                         f"({_describe(kept)}; head: {_describe(e)})")
    if base_config.endpoints and not head_config.endpoints:
        notes.append(f"{where}: {'deleted' if head is None else 'emptied'} by the change; the base's settings hold")
    else:
        notes += [f"probes: {name}: the base probes it, so it is probed still"
                  for name in base_config.probes if name not in head_config.probes]
    probes = tuple(dict.fromkeys(base_config.probes + head_config.probes))
    failed = min(base_config.failed_requests, head_config.failed_requests)
    if head_config.failed_requests > failed:
        notes.append(f"budget: {head_config.failed_requests} failed request(s) allowed at head, {failed} at base: "
                     f"{failed} holds until the change merges")
    env = {**head_config.env, **base_config.env}
    if any(head_config.env.get(k, v) != v for k, v in base_config.env.items()):
        notes.append("env: the base's values hold for the names it sets")
    if base_config.tempest and head_config.tempest != base_config.tempest:
        notes.append("tempest: the base's settings hold until the change merges")
    probe_timeout = min(base_config.probe_timeout, head_config.probe_timeout)     # slower answers: looser
    if head_config.probe_timeout > probe_timeout:
        notes.append(f"probe_timeout: {head_config.probe_timeout:g}s at head, {probe_timeout:g}s at base: "
                     f"{probe_timeout:g}s holds until the change merges")
    config = GateConfig(tuple(endpoints.values()), base_config.auth or head_config.auth, env, probes, failed,
                        base_config.hook_timeout, probe_timeout,
                        base_config.contract or head_config.contract,       # a change cannot switch it off
                        base_config.tempest or head_config.tempest)
    return config, notes


def _describe(e: Endpoint) -> str:
    status = ",".join(map(str, e.status)) or "any below 500"
    return f"{e.service}:{e.port}{e.path} status {status}" + (" with a token" if e.token else "")
