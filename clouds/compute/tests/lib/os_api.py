"""The OpenStack calls of the compute cloud's hooks (stdlib only): a Keystone token, and
Nova, Neutron and Glance through the cloud's front.

Hooks get their endpoints and credentials from the environment (see README.md here):
OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, TIDEGATE_ENDPOINT_<NAME>,
TIDEGATE_HOOK_STATE."""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

NOVA_VERSION = "compute 2.79"        # served by Nova 31 (2025.1) and 33 (2026.1); 2.74: `host` on boot


class APIError(SystemExit):
    pass


def request(method: str, url: str, body=None, token: str | None = None, headers: dict | None = None,
            raw: bytes | None = None, retry_503: float = 20.0) -> tuple[int, dict, dict]:
    """One API call. A 503 is asked again for up to `retry_503` seconds (said on stderr):
    keystonemiddleware answers 503 while it cannot reach Keystone yet; anything else fails
    at once."""
    deadline = time.monotonic() + retry_503
    while True:
        try:
            return _request(method, url, body, token, headers, raw)
        except APIError as err:
            if " HTTP 503: " not in str(err) or time.monotonic() > deadline:
                raise
            print(f"retrying after {err}"[:300], file=sys.stderr)
            time.sleep(1)


def _request(method, url, body, token, headers, raw):
    head = {"Accept": "application/json", **(headers or {})}
    data = raw
    if body is not None:
        head["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if token:
        head["X-Auth-Token"] = token
    req = urllib.request.Request(url, method=method, headers=head, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, (json.loads(text) if text.strip() else {}), dict(r.headers)
    except urllib.error.HTTPError as err:
        raise APIError(f"{method} {url}: HTTP {err.code}: {one_line(err.read()[:600].decode(errors='replace'))}") \
            from None
    except OSError as err:
        raise APIError(f"{method} {url}: {err}") from None


def one_line(text: str) -> str:
    """An answer's body as one line (HAProxy's error pages are HTML: their text, no tags):
    the gate shows a hook's last line."""
    return " ".join(re.sub(r"<[^>]*>", " ", text).split())[:300]


def token() -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": os.environ["OS_USERNAME"], "domain": {"id": "default"}, "password": os.environ["OS_PASSWORD"]}}},
        "scope": {"project": {"name": os.environ["OS_PROJECT_NAME"], "domain": {"id": "default"}}}}}
    _, _, headers = request("POST", os.environ["OS_AUTH_URL"].rstrip("/") + "/auth/tokens", body)
    return headers.get("X-Subject-Token") or headers["x-subject-token"]


def api(name: str, method: str, path: str, tok: str, body=None, headers: dict | None = None,
        raw: bytes | None = None) -> dict:
    """A call to the API of gate.yaml's endpoint `name` (nova, neutron, glance)."""
    base = os.environ[f"TIDEGATE_ENDPOINT_{name.upper()}"].rstrip("/")
    prefix = {"nova": "/v2.1", "neutron": "/v2.0", "glance": "/v2"}[name]
    head = {"OpenStack-API-Version": NOVA_VERSION} if name == "nova" else {}
    return request(method, base + prefix + path, body, tok, {**head, **(headers or {})}, raw)[1]


def wait(ready, timeout: float, what: str, interval: float = 1.0):
    """`ready()` until it returns a true value (given back); APIError and 5xx answers
    while a replica is replaced are waited out until `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = ready()
            if value:
                return value
        except APIError as err:
            if " HTTP 4" in str(err):
                raise
            last = err
        time.sleep(interval)
    raise APIError(f"{what}: not within {timeout:.0f}s" + (f" ({last})" if last else ""))


# -- resources ----------------------------------------------------------------------------

def flavor(tok: str, name: str) -> str:
    found = [f for f in api("nova", "GET", "/flavors", tok)["flavors"] if f["name"] == name]
    if found:
        return found[0]["id"]
    return api("nova", "POST", "/flavors", tok, {"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 1}})[
        "flavor"]["id"]


def image(tok: str, name: str, content: bytes = b"\0" * 4096) -> str:
    """A tiny raw image in Glance (the fake driver never reads it)."""
    made = api("glance", "POST", "/images", tok, {"name": name, "disk_format": "raw", "container_format": "bare",
                                                   "visibility": "public"})
    api("glance", "PUT", f"/images/{made['id']}/file", tok, raw=content,
        headers={"Content-Type": "application/octet-stream"})
    wait(lambda: api("glance", "GET", f"/images/{made['id']}", tok)["status"] == "active", 60, f"image {name} active")
    return made["id"]


def network(tok: str, name: str, cidr: str) -> tuple[str, str]:
    net = api("neutron", "POST", "/networks", tok, {"network": {"name": name}})["network"]["id"]
    subnet = api("neutron", "POST", "/subnets", tok, {"subnet": {"name": name, "network_id": net, "ip_version": 4,
                                                                  "cidr": cidr}})["subnet"]["id"]
    return net, subnet


def port(tok: str, name: str, net: str) -> dict:
    return api("neutron", "POST", "/ports", tok, {"port": {"name": name, "network_id": net}})["port"]


def boot(tok: str, name: str, flavor_id: str, image_id: str, host: str | None = None, timeout: float = 240,
         patient: bool = True) -> dict:
    """A server with `networks: none` (no agent binds a port here), ACTIVE; `host` pins it
    to a compute. A compute that is up may not be mapped to its cell yet (the scheduler
    discovers new hosts every 10 s): "could not be found" and "No valid host" are asked
    again until `timeout` — unless not `patient` (a running cloud's workload: every
    compute is mapped, so either is a failure)."""
    server = {"name": name, "flavorRef": flavor_id, "imageRef": image_id, "networks": "none",
              **({"host": host} if host else {})}
    deadline = time.monotonic() + timeout
    while True:
        try:
            sid = api("nova", "POST", "/servers", tok, {"server": server})["server"]["id"]
        except APIError as err:
            if not patient or "could not be found" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2)
            continue
        seen = wait(lambda: _settled(tok, sid), max(deadline - time.monotonic(), 60), f"server {name} ACTIVE", 2)
        if seen["status"] == "ACTIVE":
            return seen
        fault = (seen.get("fault") or {}).get("message", "")
        delete_server(tok, sid)
        if not patient or "No valid host" not in fault or time.monotonic() > deadline:
            raise APIError(f"server {name}: ERROR: {fault}")
        time.sleep(10)


def _settled(tok: str, sid: str) -> dict | None:
    s = api("nova", "GET", f"/servers/{sid}", tok)["server"]
    return s if s["status"] in ("ACTIVE", "ERROR") else None


def delete_server(tok: str, sid: str, timeout: float = 120) -> None:
    api("nova", "DELETE", f"/servers/{sid}", tok)

    def gone():
        try:
            api("nova", "GET", f"/servers/{sid}", tok)
        except APIError as err:
            if " HTTP 404" in str(err):
                return True
            raise
        return False
    wait(gone, timeout, f"server {sid} deleted")


def computes(tok: str) -> dict[str, str]:
    """host -> state of each nova-compute service ('up' or 'down')."""
    return {s["host"]: s["state"] for s in api("nova", "GET", "/os-services?binary=nova-compute", tok)["services"]}


def workload(name: str, operation) -> None:
    """A load hook's loop: `operation(n)` until the gate makes TIDEGATE_LOAD_STOP, then one
    summary line, exit 0 only if every operation succeeded (the gate's contract)."""
    stop = os.environ["TIDEGATE_LOAD_STOP"]
    during = os.environ.get("TIDEGATE_LOAD_DURING", "?")
    done, failed, errors, t0 = 0, 0, [], time.monotonic()
    while not os.path.exists(stop):
        try:
            operation(done + failed)
            done += 1
        except APIError as err:
            failed += 1
            errors.append(str(err)[:300])
            print(f"{name} #{done + failed}: {err}"[:400], file=sys.stderr, flush=True)
        time.sleep(0.5)
    line = (f"{name} during {during}: {done} ok, {failed} failed in {time.monotonic() - t0:.0f}s"
            + (f"; first: {errors[0]}" if errors else ""))
    print(line)
    sys.exit(1 if failed else 0)


# -- what create leaves for verify and destroy ------------------------------------------------

def state_file(name: str) -> Path:
    return Path(os.environ["TIDEGATE_HOOK_STATE"]) / name


def save(name: str, data: dict) -> None:
    state_file(name).write_text(json.dumps(data, indent=2))


def load(name: str) -> dict:
    path = state_file(name)
    if not path.exists():
        raise APIError(f"{path}: missing (did `create` run?)")
    return json.loads(path.read_text())
