"""A few lines of the OpenStack APIs for the demo's hooks (stdlib only).

Hooks get their endpoints and credentials from the environment (see README.md here):
OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, TIDEGATE_ENDPOINT_<NAME>,
TIDEGATE_HOOK_STATE."""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PLACEMENT_VERSION = "placement 1.28"     # served by Placement 13 (2025.1) and 15 (2026.1)


class APIError(SystemExit):
    pass


def request(method: str, url: str, body=None, token: str | None = None, headers: dict | None = None,
            ok=(200, 201, 202, 204), retry_503: float = 20.0) -> tuple[int, dict, dict]:
    """One API call. A 503 is retried for up to `retry_503` seconds (said on stderr):
    keystonemiddleware answers 503 while it cannot reach Keystone yet, as a client sees
    right after a service was deployed; anything else fails at once."""
    deadline = time.monotonic() + retry_503
    while True:
        try:
            return _request(method, url, body, token, headers, ok)
        except APIError as err:
            if " HTTP 503: " not in str(err) or time.monotonic() > deadline:
                raise
            print(f"retrying after {err}"[:300], file=sys.stderr)
            time.sleep(1)


def _request(method, url, body, token, headers, ok):
    head = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    if token:
        head["X-Auth-Token"] = token
    req = urllib.request.Request(url, method=method, headers=head,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else {}), dict(r.headers)
    except urllib.error.HTTPError as err:
        if err.code in ok:
            return err.code, {}, dict(err.headers)
        raise APIError(f"{method} {url}: HTTP {err.code}: {err.read()[:300].decode(errors='replace')}") from None
    except OSError as err:
        raise APIError(f"{method} {url}: {err}") from None


def auth_url() -> str:
    return os.environ["OS_AUTH_URL"].rstrip("/")


def token(user: str | None = None, password: str | None = None, project: str | None = None) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user or os.environ["OS_USERNAME"], "domain": {"id": "default"},
        "password": password or os.environ["OS_PASSWORD"]}}},
        "scope": {"project": {"name": project or os.environ["OS_PROJECT_NAME"], "domain": {"id": "default"}}}}}
    _, _, headers = request("POST", f"{auth_url()}/auth/tokens", body)
    return headers.get("X-Subject-Token") or headers["x-subject-token"]


def placement(method: str, path: str, body=None, token_: str | None = None, ok=(200, 201, 202, 204)):
    base = os.environ["TIDEGATE_ENDPOINT_PLACEMENT"].rstrip("/")
    return request(method, base + path, body, token_, {"OpenStack-API-Version": PLACEMENT_VERSION}, ok)


def state_file(name: str) -> Path:
    return Path(os.environ["TIDEGATE_HOOK_STATE"]) / name


def save(name: str, data: dict) -> None:
    state_file(name).write_text(json.dumps(data, indent=2))


def load(name: str) -> dict:
    path = state_file(name)
    if not path.exists():
        raise APIError(f"{path}: missing (did `create` run?)")
    return json.loads(path.read_text())
