"""The few OpenStack API calls the compute cloud's test and bench make (stdlib only):
a Keystone token, Nova, Neutron and Glance through the cloud's HAProxy front."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class APIError(Exception):
    pass


class Failed(Exception):
    """An answer that waiting longer cannot change (a server in ERROR, a refused request)."""


class Client:
    """`ports`: the front's host port per API (keystone, nova, neutron, glance, placement),
    published on `address` (the front's host: this machine, or a test host's address)."""

    NOVA_VERSION = "2.79"          # served by Nova 31 (2025.1) and 33 (2026.1)

    def __init__(self, ports: dict[str, int], password: str, user: str = "admin", project: str = "admin",
                 address: str = "127.0.0.1"):
        self.ports, self.password, self.user, self.project = ports, password, user, project
        self.address = address
        self._token = ""

    def url(self, api: str, path: str = "") -> str:
        base = {"keystone": "/v3", "nova": "/v2.1"}.get(api, "")
        return f"http://{self.address}:{self.ports[api]}{base}{path}"

    def token(self, refresh: bool = False) -> str:
        if self._token and not refresh:
            return self._token
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": self.user, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"project": {"name": self.project, "domain": {"id": "default"}}}}}
        _, _, headers = self.call("POST", "keystone", "/auth/tokens", body, auth=False)
        self._token = headers["X-Subject-Token"]
        return self._token

    def call(self, method: str, api: str, path: str, body=None, *, auth: bool = True, raw: bytes | None = None,
             headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, object]:
        head = {"Accept": "application/json", **(headers or {})}
        if api == "nova":
            head["OpenStack-API-Version"] = f"compute {self.NOVA_VERSION}"
        data = raw
        if body is not None:
            head["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        if auth:
            head["X-Auth-Token"] = self.token()
        req = urllib.request.Request(self.url(api, path), method=method, data=data, headers=head)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read()
                return r.status, (json.loads(text) if text.strip() else {}), r.headers
        except urllib.error.HTTPError as err:
            raise APIError(f"{method} {api} {path}: HTTP {err.code}: {err.read()[:400].decode(errors='replace')}") \
                from None
        except OSError as err:
            raise APIError(f"{method} {api} {path}: {err}") from None

    def get(self, api: str, path: str) -> dict:
        return self.call("GET", api, path)[1]

    def post(self, api: str, path: str, body) -> dict:
        return self.call("POST", api, path, body)[1]

    # -- resources ---------------------------------------------------------------
    def flavor(self, name: str) -> str:
        found = [f for f in self.get("nova", "/flavors")["flavors"] if f["name"] == name]
        if found:
            return found[0]["id"]
        return self.post("nova", "/flavors", {"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 1}})["flavor"]["id"]

    def image(self, name: str, content: bytes) -> str:
        """A tiny raw image uploaded to Glance (the fake driver never reads it)."""
        made = self.post("glance", "/v2/images", {"name": name, "disk_format": "raw", "container_format": "bare",
                                                  "visibility": "public"})
        self.call("PUT", "glance", f"/v2/images/{made['id']}/file", raw=content,
                  headers={"Content-Type": "application/octet-stream"})
        self.wait(lambda: self.get("glance", f"/v2/images/{made['id']}")["status"] == "active", 60,
                  f"image {name} active")
        return made["id"]

    def network(self, name: str, cidr: str) -> tuple[str, str]:
        net = self.post("neutron", "/v2.0/networks", {"network": {"name": name}})["network"]["id"]
        subnet = self.post("neutron", "/v2.0/subnets", {"subnet": {"name": name, "network_id": net, "ip_version": 4,
                                                                   "cidr": cidr}})["subnet"]["id"]
        return net, subnet

    def port(self, name: str, network: str) -> dict:
        return self.post("neutron", "/v2.0/ports", {"port": {"name": name, "network_id": network}})["port"]

    def boot(self, name: str, flavor: str, image: str, host: str | None = None) -> str:
        """A server with `networks: none` (no agent binds a port here); `host` pins it
        to a compute (admin: the `host` field of microversion 2.74)."""
        server = {"name": name, "flavorRef": flavor, "imageRef": image, "networks": "none"}
        if host:
            server["host"] = host
        made = {}

        def booted():
            try:
                made.update(self.post("nova", "/servers", {"server": server})["server"])
            except APIError as err:
                # a compute that is up may not be mapped to its cell yet: the scheduler
                # discovers new hosts every 10 s (config/nova/nova.conf)
                if "could not be found" not in str(err):
                    raise Failed(str(err)) from None
                return False
            return True
        self.wait(booted, 60, f"server {name} accepted", interval=2)
        return made["id"]

    def server(self, server_id: str) -> dict:
        return self.get("nova", f"/servers/{server_id}")["server"]

    def wait_active(self, server_id: str, timeout: float = 180) -> dict:
        seen = {}

        def active():
            seen.update(self.server(server_id))
            if seen["status"] == "ERROR":
                raise Failed(f"server {server_id} ERROR: {seen.get('fault')}")
            return seen["status"] == "ACTIVE"
        self.wait(active, timeout, f"server {server_id} ACTIVE")
        return seen

    def delete_server(self, server_id: str, timeout: float = 120) -> None:
        self.call("DELETE", "nova", f"/servers/{server_id}")

        def gone():
            try:
                self.server(server_id)
            except APIError as err:
                if "HTTP 404" in str(err):
                    return True
                raise
            return False
        self.wait(gone, timeout, f"server {server_id} deleted")

    def computes(self) -> dict[str, str]:
        """host -> state of each nova-compute service ('up' or 'down')."""
        return {s["host"]: s["state"] for s in self.get("nova", "/os-services?binary=nova-compute")["services"]}

    def compute_status(self) -> dict[str, str]:
        """host -> status of each nova-compute service ('enabled' or 'disabled')."""
        return {s["host"]: s["status"] for s in self.get("nova", "/os-services?binary=nova-compute")["services"]}

    @staticmethod
    def wait(ready, timeout: float, what: str, interval: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            last = None
            try:
                if ready():
                    return
            except APIError as err:      # e.g. a 503 while a replica is replaced
                last = err
            if time.monotonic() > deadline:
                raise APIError(f"{what}: not within {timeout:.0f}s" + (f" ({last})" if last else ""))
            time.sleep(interval)
