"""A cloud's files, rewritten into a throw-away test cloud (pure: bytes in, bytes out).

The gate must never touch the real cloud, nor another gate on the same engine:

- the cloud gets a unique name (`clouds/<name>/`, `name:`): every container, the network
  (`tidegate-<name>`) and every named volume (`<name>_<volume>`, labelled) carry it, and the
  controller only ever touches containers labelled with it;
- every host of the cloud keeps its name and runs on the gate's one engine (its address,
  keys and URL go): a service keeps its `hosts` and `max_per_host`, so replicas keep their
  hosts and whatever a host's name means to them (a Nova compute's `host = ${host}`: two
  compute hosts stay two computes); the controller tells hosts sharing an engine apart by
  the `tidegate.host` label. A cloud without hosts gets one host, `gate`;
- published host ports are replaced by free ports on 127.0.0.1 (`PortMap` says which),
  so two gates, or a gate beside the real cloud, never collide;
- a fixed network name or subnet goes (the engine picks one);
- a URL naming one of the cloud's own published ports on this machine
  (`http://127.0.0.1:15000`, `http://localhost:15000`, e.g. Keystone's catalog in a
  bootstrap job) names the test cloud's port instead, in service files and config files:
  a client that follows the catalog (Tempest) reaches the test cloud, not the real one;
- when the gate tests the contract phase (`--contract`), `policy.contract` becomes
  `manual`: the upgrade leaves the rollback window open, the rollback phase tests it,
  and the contract phase runs the contract jobs as `tidegate contract` would.

The same rewrite is applied to the base and the head state, so the transition between
them is the pull request's transition, and only that.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Callable

import yaml

GATE_HOST = "gate"
TEST_CLOUD_NAME = re.compile(r"gate-[0-9a-f]{8}")     # the only names a gate gives (and removes)


def new_test_cloud_name() -> str:
    return f"gate-{uuid.uuid4().hex[:8]}"


def is_test_cloud_name(name: str) -> bool:
    """True for names of the gate's own form: `--cleanup` removes nothing else (a real
    cloud's name, e.g. `demo`, is never a test cloud)."""
    return TEST_CLOUD_NAME.fullmatch(name) is not None


class IsolationError(Exception):
    """The cloud cannot run as a one-engine test cloud (a file and field are named)."""


@dataclass
class PortMap:
    """(service, container port, protocol) -> host port on 127.0.0.1, stable across the
    base and head states so that probes keep one address through the upgrade."""
    allocate: Callable[[], int]
    ports: dict[tuple[str, int, str], int] = field(default_factory=dict)

    def host_port(self, service: str, container: int, protocol: str = "tcp") -> int:
        key = (service, container, protocol)
        if key not in self.ports:
            self.ports[key] = self.allocate()
        return self.ports[key]

    def lookup(self, service: str, container: int, protocol: str = "tcp") -> int | None:
        return self.ports.get((service, container, protocol))


def _load(path: str, data: bytes) -> dict:
    try:
        value = yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise IsolationError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise IsolationError(f"{path}: not a mapping")
    return value


def _dump(value: dict) -> bytes:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=None).encode()


def _container_port(path: str, entry) -> tuple[int, str]:
    if isinstance(entry, str):
        spec, _, proto = entry.partition("/")
        _, _, container = spec.rpartition(":")
        try:
            return int(container), proto or "tcp"
        except ValueError:
            raise IsolationError(f"{path}: ports: cannot read {entry!r}") from None
    if isinstance(entry, dict) and "container" in entry:
        return int(entry["container"]), entry.get("protocol", "tcp")
    raise IsolationError(f"{path}: ports: cannot read {entry!r}")


def _host_port(entry) -> int | None:
    """The host port a `ports` entry publishes on (None: the engine picks one)."""
    if isinstance(entry, str):
        parts = entry.partition("/")[0].split(":")
        return int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else None
    if isinstance(entry, dict) and isinstance(entry.get("host"), int):
        return entry["host"]
    return None


def _self_urls(files: dict, prefix: str, ports: PortMap) -> dict[bytes, bytes]:
    """`://127.0.0.1:<published port>` (and `localhost`) -> the same with the test cloud's port."""
    found: dict[bytes, bytes] = {}
    for path, (data, _mode) in files.items():
        rel = path[len(prefix):] if path.startswith(prefix) else ""
        if not (rel.startswith("services/") and rel.endswith((".yaml", ".yml")) and rel.count("/") == 1):
            continue
        doc = _load(path, data)
        service = rel.split("/", 1)[1].rsplit(".", 1)[0]
        for entry in doc.get("ports") or []:
            host = _host_port(entry)
            if host is None:
                continue
            container, protocol = _container_port(path, entry)
            new = ports.host_port(service, container, protocol)
            for address in (b"127.0.0.1", b"localhost"):
                found[b"://" + address + b":" + str(host).encode()] = b"://127.0.0.1:" + str(new).encode()
    return found


def _rewrite_urls(data: bytes, urls: dict[bytes, bytes]) -> bytes:
    for old, new in urls.items():
        # ":1500" must not rewrite ":15000": only where the port ends
        data = re.sub(re.escape(old) + rb"(?![0-9])", lambda _match, new=new: new, data)
    return data


def host_names(*states: dict[str, tuple[bytes, int]], name: str) -> list[str]:
    """The hosts of the test cloud `name` in any of the isolated `states` (base and head:
    a change may add a host), each of which the gate runs on its one engine."""
    found: set[str] = set()
    for files in states:
        entry = files.get(f"clouds/{name}/cloud.yaml")
        if entry is not None:
            hosts = (yaml.safe_load(entry[0]) or {}).get("hosts")
            found |= {str(h) for h in hosts} if isinstance(hosts, dict) else set()
    return sorted(found) or [GATE_HOST]


def isolate(files: dict[str, tuple[bytes, int]], cloud: str, name: str, *, kind: str, url: str,
            ports: PortMap, manual_contract: bool = False) -> dict[str, tuple[bytes, int]]:
    """Rewrite `files` (path -> (content, git file mode)) of `clouds/<cloud>/` into the
    files of `clouds/<name>/`. Other clouds' files are left out."""
    prefix, new_prefix = f"clouds/{cloud}/", f"clouds/{name}/"
    urls = _self_urls(files, prefix, ports)
    out: dict[str, tuple[bytes, int]] = {}
    for path, (data, mode) in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        if rel == "cloud.yaml":
            doc = _load(path, data)
            doc["name"] = name
            names = list(doc.get("hosts") or {}) if isinstance(doc.get("hosts"), dict) else []
            doc["hosts"] = {str(h): {"engine": kind, "url": url} for h in names or [GATE_HOST]}
            doc.pop("network", None)
            if manual_contract:
                policy = doc.get("policy") if isinstance(doc.get("policy"), dict) else {}
                doc["policy"] = {**policy, "contract": "manual"}
            data = _dump(doc)
        elif rel.startswith("services/") and rel.endswith((".yaml", ".yml")) and rel.count("/") == 1:
            doc = _load(path, data)
            service = rel.split("/", 1)[1].rsplit(".", 1)[0]
            published = doc.get("ports") or []
            if published and int(doc.get("replicas", 1)) > 1:
                raise IsolationError(
                    f"{path}: ports: {service} publishes host ports from {doc.get('replicas')} replicas; the gate runs "
                    "every host on one engine, where only one container can hold a host port — publish the service "
                    "through a front (e.g. HAProxy) instead")
            rewritten = []
            for entry in published:
                container, protocol = _container_port(path, entry)
                rewritten.append({"container": container, "host": ports.host_port(service, container, protocol),
                                  "protocol": protocol, "host_ip": "127.0.0.1"})
            if published:
                doc["ports"] = rewritten
            data = _rewrite_urls(_dump(doc), urls)
        elif rel.startswith("config/"):
            data = _rewrite_urls(data, urls)
        out[new_prefix + rel] = (data, mode)
    if new_prefix + "cloud.yaml" not in out:
        raise IsolationError(f"clouds/{cloud}/cloud.yaml: no such file")
    return out
