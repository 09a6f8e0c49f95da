"""Desired and observed state, as the planner sees them — plain values, no I/O here
beyond reading config blobs from the validated tree.

Desired: each service of a validated cloud with the content of its config mounts and
the hash that goes on its containers (`tidegate.spec-hash`): the service spec plus the
config files' contents, so a config change rolls the service like an image change.

Observed: the labelled containers found on each host, and the hosts that did not answer.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from functools import cached_property

from validators.model import Cloud, Service

# Labels on every container tidegate creates (DESIGN.md). Unlabelled containers are
# never touched.
LABEL_MANAGED = "tidegate.managed-by"
LABEL_CLOUD = "tidegate.cloud"
LABEL_SERVICE = "tidegate.service"
LABEL_REPLICA = "tidegate.replica"
LABEL_HASH = "tidegate.spec-hash"
LABEL_RELEASE = "tidegate.release"
LABEL_COMMIT = "tidegate.commit"
LABEL_ROLE = "tidegate.role"          # "replica" | "job"


@dataclass(frozen=True)
class ConfigFile:
    source: str          # path relative to the cloud folder
    target: str          # absolute path in the container
    sha256: str


@dataclass(frozen=True)
class DesiredService:
    service: Service
    config: tuple[ConfigFile, ...] = ()
    hash: str = ""

    @property
    def name(self) -> str:
        return self.service.name


@dataclass(frozen=True)
class Desired:
    cloud: Cloud
    commit: str
    services: dict                           # name -> DesiredService
    files: dict = field(default_factory=dict, compare=False)   # sha256 -> bytes (config contents)


def desired_state(cloud: Cloud, tree, commit: str) -> Desired:
    """Resolve a validated cloud against its tree: config contents and spec hashes."""
    files: dict[str, bytes] = {}
    services = {}
    for name, svc in cloud.services.items():
        config = []
        for mount in svc.config:
            root = f"{cloud.folder}/{posixpath.normpath(mount.source)}"
            for rel, content in _walk(tree, root):
                digest = hashlib.sha256(content).hexdigest()
                files[digest] = content
                target = mount.target if not rel else posixpath.join(mount.target, rel)
                source = posixpath.normpath(mount.source) if not rel else posixpath.join(posixpath.normpath(mount.source), rel)
                config.append(ConfigFile(source, target, digest))
        services[name] = DesiredService(svc, tuple(config), container_hash(svc, config))
    return Desired(cloud, commit, services, files)


# What a container is made of. Placement (replicas, hosts), ordering (depends_on,
# requires), rollout settings and tidegate's own health checks are not: changing them
# must not restart a replica.
CONTAINER_FIELDS = ("release", "image", "command", "entrypoint", "user", "ports", "environment",
                    "volumes", "stop_signal", "stop_grace", "ulimits")


def container_hash(svc: Service, config) -> str:
    spec = svc.spec()
    blob = json.dumps({k: spec[k] for k in CONTAINER_FIELDS}, sort_keys=True, default=str)
    h = hashlib.sha256(blob.encode())
    for c in config:
        h.update(f"\0{c.target}\0{c.sha256}".encode())
    return h.hexdigest()[:12]


def _walk(tree, path: str, rel: str = ""):
    kind = tree.kind(path)
    if kind == "file":
        yield rel, tree.read(path)
    elif kind == "dir":
        for name in tree.listdir(path):
            yield from _walk(tree, f"{path}/{name}", posixpath.join(rel, name) if rel else name)


@dataclass(frozen=True)
class Container:
    """One labelled container as observed on a host."""
    host: str
    id: str
    name: str
    service: str
    replica: int
    hash: str
    release: str
    state: str                      # running | exited | created | ...
    commit: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class Observed:
    containers: tuple[Container, ...] = ()
    unreachable: frozenset = frozenset()     # hosts whose engine did not answer

    def of(self, service: str) -> list[Container]:
        return list(self._by_service.get(service, ()))

    @cached_property
    def _by_service(self) -> dict[str, list[Container]]:
        # planning asks once per service: an index keeps it linear (1,000 services, 3,000 containers)
        index: dict[str, list[Container]] = {}
        for c in self.containers:
            index.setdefault(c.service, []).append(c)
        return index


def container_name(cloud: str, service: str, replica: int, spec_hash: str) -> str:
    """Unique per spec, so a successor can run beside the replica it replaces."""
    return f"{cloud}-{service}-{replica}-{spec_hash[:8]}"


def job_name(cloud: str, service: str, phase: str, index: int, spec_hash: str) -> str:
    return f"{cloud}-{service}-{phase}{index}-{spec_hash[:8]}"


def volume_name(cloud: str, volume: str) -> str:
    """Volumes are per cloud: two clouds (or a gate's test cloud) on one engine never share data."""
    return f"{cloud}-{volume}"
