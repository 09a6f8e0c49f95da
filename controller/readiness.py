"""Deep readiness checks: real work a successor must do before it joins its service's
alias and before any old replica goes (a service's `checks:`). A health check says a
replica answers; a deep check says it works — `GET /resource_providers` with a fresh
token proves Placement reaches its database and validates tokens with its own service
credentials, which `GET /` does not.

Checks go to the successor ITSELF, by the route its health checks take
(`health.target_of`: its address on the cloud network for an engine on this machine, a
port it publishes on its host's address for a remote one); exec checks run through the
engine. A token is new to the successor (and to the cache its service shares) when it is
first checked; min_ready's rounds ask again with the token it accepted then. Tokens are
asked of a replica of the auth's service that serves (in its alias), by the same route;
the successor is asked only when no other replica serves (a first deploy of Keystone).

`judge` and `excerpt` are pure; `ask` sends one http check (controller/analysis.py asks
the same checks through the cloud's front after a rollout); `DeepChecks` runs a successor's checks (the executor's
gate, `until_ready`, then one `round` per probe of min_ready) and the gate's smoke phase.
"""
from __future__ import annotations

import http.client
import threading
from typing import Mapping

from validators.model import Check, Cloud

from .desired import LABEL_CLOUD, LABEL_ROLE, LABEL_SERVICE
from .engines.base import ContainerInfo, Engine, EngineError
from .engines.common import one_line
from .engines.health import HealthResult, target_of, via
from .keystone import AuthError, fetch_token, password

BODY_EXCERPT = 200           # characters of an unexpected answer's body shown in status
READ_LIMIT = 1 << 20         # bytes of an answer read for a body match


def excerpt(body: bytes, limit: int = BODY_EXCERPT) -> str:
    """A bounded, one-line piece of a body for a status line (pure)."""
    text = one_line(body.decode(errors="replace"))
    return text if len(text) <= limit else text[:limit] + "…"


def judge(check: Check, status: int, body: bytes) -> tuple[bool, str]:
    """Whether an answer passes `check`, and the words for it (pure)."""
    accepted = check.status or tuple(range(200, 300))
    if status not in accepted:
        want = ",".join(map(str, check.status)) if check.status else "2xx"
        piece = excerpt(body)
        return False, f"answered {status} (expected {want})" + (f": {piece}" if piece else "")
    if check.body and check.body.encode() not in body:
        return False, f"answered {status} without {check.body!r} in its body: {excerpt(body)}"
    return True, f"answered {status}"


def ask(check: Check, address: str, port: int, token: str | None = None) -> tuple[bool, str]:
    """One http check sent to address:port (a replica, or the cloud's front): (passed,
    what happened, with a bounded piece of an unexpected answer)."""
    headers = {"User-Agent": "tidegate-check", "Connection": "close", **dict(check.headers)}
    if token is not None:
        headers["X-Auth-Token"] = token
    said = f"{check.method} http://{address}:{port}{check.path}"
    conn = http.client.HTTPConnection(address, port, timeout=check.timeout)
    try:
        conn.request(check.method, check.path, headers=headers)
        response = conn.getresponse()
        body = response.read(READ_LIMIT)
    except (OSError, http.client.HTTPException) as err:
        return False, f"{said}: {getattr(err, 'strerror', None) or err or type(err).__name__}"
    finally:
        conn.close()
    ok, words = judge(check, response.status, body)
    return ok, f"{said} {words}"


class Tokens:
    """Fresh Keystone tokens for the cloud's named credentials, asked of a serving replica
    of the auth's service on any of the cloud's hosts."""

    def __init__(self, cloud: Cloud, engines: Mapping[str, Engine], network: str | None, vault=None):
        self.cloud, self.engines, self.network = cloud, engines, network
        self.vault = vault                # decrypts a password that is the cloud's secret

    def _issuers(self, service: str, port: int, successor: str) -> list[tuple[str, int]]:
        joined, others = [], []
        for host_name, engine in self.engines.items():
            host = self.cloud.hosts.get(host_name)
            if host is None:
                continue
            labels = {LABEL_CLOUD: self.cloud.name, LABEL_SERVICE: service, LABEL_ROLE: "replica"}
            try:
                found = engine.list_containers(labels, all=False)
            except EngineError:
                continue                  # a host away: the others' replicas may answer
            for info in found:
                where = target_of(info, port, self.network, via(engine, host.address))
                if where is None or not info.running:
                    continue
                aliases = info.networks.get(self.network, ("", ()))[1] if self.network else ()
                serving = service in aliases and info.id != successor and info.name != successor
                (joined if serving else others).append(where)
        return joined + others            # the successor (not yet in its alias) last

    def fresh(self, name: str, successor: str = "") -> str:
        """A new token of credentials `name`; AuthError says why none came."""
        auth = self.cloud.auth.get(name)
        if auth is None:
            raise AuthError(f"auth {name} is not declared in cloud.yaml")
        secret = password(self.cloud, auth, self.vault)
        issuers = self._issuers(auth.service, auth.port, successor)
        if not issuers:
            raise AuthError(f"auth {name}: no running replica of {auth.service} to ask for a token")
        last = None
        for address, port in issuers:
            try:
                return fetch_token(auth, secret, address, port)
            except AuthError as err:
                last = err
        raise last


class DeepChecks:
    """The deep checks of one replica. `until_ready` is the gate after the health check:
    each check must pass within its `retries` attempts; `round` runs every check once and
    fails a check after `retries` consecutive failures (min_ready, the gate's smoke)."""

    def __init__(self, engine: Engine, checks: tuple[Check, ...], *, network: str | None, via: str | None,
                 tokens: Tokens | None, cancel: threading.Event | None = None):
        self.engine, self.checks, self.network, self.via = engine, checks, network, via
        self.tokens = tokens
        self.cancel = cancel or threading.Event()
        self.failures = {c.name: 0 for c in checks}
        self.proven: dict[str, str] = {}       # auth name -> a fresh token the replica accepted

    def once(self, check: Check, info: ContainerInfo, fresh: bool = True) -> tuple[bool, str]:
        """One attempt: (passed, what happened). `fresh`: a new token, else the one the
        replica accepted when it was new (min_ready: one Keystone login per replica, not
        one a second — a login is a bcrypt hash, ~0.3 s of Keystone's CPU)."""
        if check.type == "exec":
            try:
                result = self.engine.exec(info.id, list(check.command), timeout=check.timeout)
            except EngineError as err:
                return False, str(err)
            out = excerpt(result.output.strip().encode()[-BODY_EXCERPT * 4:])
            return result.exit_code == 0, f"{' '.join(check.command)} exited {result.exit_code}" + (f": {out}" if out else "")
        where = target_of(info, check.port, self.network, self.via)
        if where is None:
            return False, f"no route to port {check.port} (not on network {self.network}, not published)"
        address, port = where
        token = None
        if check.auth is not None:
            if self.tokens is None:
                return False, f"auth {check.auth}: no credentials to log in with"
            token = None if fresh else self.proven.get(check.auth)
            try:
                token = token or self.tokens.fresh(check.auth, successor=info.id)
            except AuthError as err:
                return False, str(err)
        ok, words = ask(check, address, port, token)
        if ok and token is not None:
            self.proven[check.auth] = token
        return ok, words

    def until_ready(self, info: ContainerInfo) -> HealthResult:
        attempts = 0
        for check in self.checks:
            for attempt in range(1, check.retries + 1):
                if self.cancel.is_set():
                    return HealthResult(False, "cancelled", attempts)
                attempts += 1
                ok, words = self.once(check, info)
                if ok:
                    break
                if attempt == check.retries:
                    return HealthResult(False, f"deep check {check.name!r}: {words} "
                                               f"({attempt} attempt(s))", attempts)
                if self.cancel.wait(check.interval):
                    return HealthResult(False, "cancelled", attempts)
        return HealthResult(True, f"{len(self.checks)} deep check(s) passed", attempts)

    def round(self, info: ContainerInfo) -> str | None:
        """Every check once; the reason when one has now failed `retries` times in a row."""
        for check in self.checks:
            ok, words = self.once(check, info, fresh=False)
            self.failures[check.name] = 0 if ok else self.failures[check.name] + 1
            if self.failures[check.name] >= check.retries:
                return f"deep check {check.name!r}: {words} ({self.failures[check.name]} consecutive failures)"
        return None
