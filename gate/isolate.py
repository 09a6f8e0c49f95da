"""A cloud's files, rewritten into a throw-away test cloud (pure: bytes in, bytes out).

The gate must never touch the real cloud, nor another gate on the same engine:

- the cloud gets a unique name (`clouds/<name>/`, `name:`): every container, the network
  (`tidegate-<name>`) and every named volume (`<name>-<volume>`) carry it, and the
  controller only ever touches containers labelled with it;
- all hosts collapse onto the gate's one engine (one host `gate`): a service's `hosts`
  and `max_per_host` go, its replicas stay;
- published host ports are replaced by free ports on 127.0.0.1 (`PortMap` says which),
  so two gates, or a gate beside the real cloud, never collide;
- a fixed network name or subnet goes (the engine picks one).

The same rewrite is applied to the base and the head state, so the transition between
them is the pull request's transition, and only that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import yaml

GATE_HOST = "gate"


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


def isolate(files: dict[str, tuple[bytes, int]], cloud: str, name: str, *, kind: str, url: str,
            ports: PortMap) -> dict[str, tuple[bytes, int]]:
    """Rewrite `files` (path -> (content, git file mode)) of `clouds/<cloud>/` into the
    files of `clouds/<name>/`. Other clouds' files are left out."""
    prefix, new_prefix = f"clouds/{cloud}/", f"clouds/{name}/"
    out: dict[str, tuple[bytes, int]] = {}
    for path, (data, mode) in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        if rel == "cloud.yaml":
            doc = _load(path, data)
            doc["name"] = name
            doc["hosts"] = {GATE_HOST: {"engine": kind, "url": url}}
            doc.pop("network", None)
            data = _dump(doc)
        elif rel.startswith("services/") and rel.endswith((".yaml", ".yml")) and rel.count("/") == 1:
            doc = _load(path, data)
            service = rel.split("/", 1)[1].rsplit(".", 1)[0]
            doc.pop("hosts", None)
            doc.pop("max_per_host", None)
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
            data = _dump(doc)
        out[new_prefix + rel] = (data, mode)
    if new_prefix + "cloud.yaml" not in out:
        raise IsolationError(f"clouds/{cloud}/cloud.yaml: no such file")
    return out
