"""Keystone tokens for deep readiness checks: the credentials a check names (cloud.yaml
`auth:`, validators.model.Auth), the token request built from them and the answer read
(both pure), and the one POST that asks for it.

The password is looked up in one place, `password()`: today a service's environment
value; a secret reference is the other kind it will resolve. A token is asked afresh for
every round of checks: a token a replica has seen before may sit in keystonemiddleware's
cache, and a successor with a wrong service password answers cached tokens but refuses
every new one (measured on the demo: `GET /` 200, fresh tokens 503).
"""
from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from validators.model import Auth, Cloud

USER_AGENT = "tidegate-check"


class AuthError(Exception):
    """No token: one line naming the credentials and why."""


def password(cloud: Cloud, auth: Auth, vault=None) -> str:
    """The password `auth` names (the validators made sure it exists): a secret of the
    cloud, decrypted by `vault` (controller.secrets.Vault), or a service's environment
    value (itself possibly a secret reference)."""
    ref = auth.password
    if ref.secret is not None:
        if vault is None:
            raise AuthError(f"auth {auth.name}: its password is secret {ref.secret!r} and no key was given")
        return vault.text(ref.secret)
    svc = cloud.services.get(ref.service)
    value = dict(svc.environment).get(ref.env) if svc is not None else None
    if value is None:
        raise AuthError(f"auth {auth.name}: no password: services/{ref.service}.yaml sets no {ref.env}")
    if not isinstance(value, str):                   # {secret: NAME} in that environment
        if vault is None:
            raise AuthError(f"auth {auth.name}: {ref.env} of {ref.service} is a secret and no key was given")
        return vault.text(value.secret)
    return value


@dataclass(frozen=True)
class TokenRequest:
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


def token_request(auth: Auth, secret: str) -> TokenRequest:
    """The Keystone v3 password login for `auth`, scoped to its project (pure)."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth.user, "password": secret, "domain": {"name": auth.user_domain}}}},
        "scope": {"project": {"name": auth.project, "domain": {"name": auth.project_domain}}}}}
    return TokenRequest(auth.path.rstrip("/") + "/auth/tokens",
                        (("Content-Type", "application/json"), ("User-Agent", USER_AGENT)),
                        json.dumps(body).encode())


def read_token(auth: Auth, status: int, token: str | None, body: bytes) -> str:
    """The token of Keystone's answer, or AuthError saying what came instead (pure)."""
    if status == 201 and token:
        return token
    text = body[:200].decode(errors="replace").replace("\n", " ").strip()
    raise AuthError(f"auth {auth.name}: token request for user {auth.user} answered {status}"
                    + (f": {text}" if text else ""))


def fetch_token(auth: Auth, secret: str, address: str, port: int, timeout: float = 10.0) -> str:
    """A new token from the identity API at address:port (one attempt)."""
    request = token_request(auth, secret)
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("POST", request.path, body=request.body, headers=dict(request.headers))
        response = conn.getresponse()
        body = response.read(65536)
    except (OSError, http.client.HTTPException) as err:
        raise AuthError(f"auth {auth.name}: POST http://{address}:{port}{request.path}: "
                        f"{getattr(err, 'strerror', None) or err}") from None
    finally:
        conn.close()
    return read_token(auth, response.status, response.getheader("X-Subject-Token"), body)
