"""Desired and observed state, as the planner sees them — plain values, no I/O here
beyond reading config blobs from the validated tree.

Desired: each service of a validated cloud with the content of its config mounts and
the hash that goes on its containers (`tidegate.spec-hash`): the service spec plus the
config files' contents plus the ciphertext of every secret it uses, so a config or
secret change rolls the service like an image change (and only the services using it).

Observed: the labelled containers found on each host, and the hosts that did not answer.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from functools import cached_property

from validators import secrets as secret_refs
from validators import templates
from validators.model import Cloud, Service

from .secrets import Vault

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
LABEL_VOLUME = "tidegate.volume"      # on named volumes: the volume's name in the service file
# The host (cloud.yaml's name) a replica was created for: several hosts of one cloud may
# share an engine (hosts on one machine), and each sees only its own replicas there.
LABEL_HOST = "tidegate.host"
# A replica's own `lifecycle:` hooks as it was created with them (controller/lifecycle.py).
LABEL_PRE_STOP = "tidegate.pre-stop"
LABEL_POST_READY = "tidegate.post-ready"


@dataclass(frozen=True)
class ConfigFile:
    source: str          # path relative to the cloud folder
    target: str          # absolute path in the container
    sha256: str          # of the file as committed (a template: before rendering)
    secrets: tuple[str, ...] = ()    # secrets a template refers to: rendered in memory, never on disk
    owner: str | None = None
    mode: int = 0o440
    per_host: bool = False           # a template saying ${host}: rendered per container (validators.templates)


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
    vault: object = field(default=None, compare=False)         # controller.secrets.Vault: values in memory

    def secrets_used(self) -> set[str]:
        return {name for ds in self.services.values() for name in uses(ds)}


def uses(ds: DesiredService) -> list[str]:
    """The secrets a desired service refers to (templates and environment), sorted."""
    names = {n for c in ds.config for n in c.secrets}
    names |= {name for _where, name in secret_refs.service_references(ds.service)}
    return sorted(names)


def desired_state(cloud: Cloud, tree, commit: str, vault=None) -> Desired:
    """Resolve a validated cloud against its tree: config contents and spec hashes.
    `vault` (controller.secrets.Vault) gives the secrets' ciphertexts for the hash and,
    later, their values to the container specs; by default it is read from the tree
    without a key (planning needs no value)."""
    if vault is None:
        vault = Vault.of(tree, cloud.folder)
    files: dict[str, bytes] = {}
    services = {}
    for name, svc in cloud.services.items():
        config = []
        for mount in svc.config:
            root = f"{cloud.folder}/{posixpath.normpath(mount.source)}"
            for rel, content in _walk(tree, root):
                refs = tuple(secret_refs.references(content)) if mount.template else ()
                if mount.template and not refs:     # only literals ($${secret:…}): no secret in it
                    content = secret_refs.render(content, None)
                digest = hashlib.sha256(content).hexdigest()
                files[digest] = content
                target = mount.target if not rel else posixpath.join(mount.target, rel)
                source = posixpath.normpath(mount.source) if not rel else posixpath.join(posixpath.normpath(mount.source), rel)
                per_host = mount.template and templates.refers_to_host(content)
                config.append(ConfigFile(source, target, digest, refs, mount.owner or svc.user, mount.mode, per_host))
        used = {n for c in config for n in c.secrets} | {n for _w, n in secret_refs.service_references(svc)}
        digests = {n: vault.digest(n) for n in sorted(used) if n in vault.ciphertexts}
        services[name] = DesiredService(svc, tuple(config), container_hash(svc, config, digests))
    return Desired(cloud, commit, services, files, vault)


# What a container is made of. Placement (replicas, hosts), ordering (depends_on,
# requires), rollout settings and tidegate's own health checks are not: changing them
# must not restart a replica.
CONTAINER_FIELDS = ("release", "image", "command", "entrypoint", "user", "ports", "published", "reach",
                    "environment", "volumes", "stop_signal", "stop_grace", "ulimits")


def container_hash(svc: Service, config, secrets: dict | None = None) -> str:
    """`secrets`: name -> digest of the ciphertext of each secret the service uses."""
    spec = svc.spec()
    fields = {k: spec[k] for k in CONTAINER_FIELDS if k not in ("published", "reach")}
    fields["ports"] = [_port_blob(p) for p in spec["ports"]]
    if spec["secret_files"]:            # only when used: no other service's hash moves
        fields["secret_files"] = spec["secret_files"]
    # The topology of a cloud of several machines (validators/topology.py), only where it
    # adds something: on one machine no hash moves with a tidegate that knows it.
    if spec["published"] != spec["ports"]:
        fields["published"] = [_port_blob(p) for p in spec["published"]]
    if spec["reach"]:
        fields["reach"] = spec["reach"]
    blob = json.dumps(fields, sort_keys=True, default=str)
    h = hashlib.sha256(blob.encode())
    for c in config:
        h.update(f"\0{c.target}\0{c.sha256}".encode())
        if c.secrets:
            h.update(f"\0{c.owner}\0{c.mode:o}".encode())
    for name, digest in sorted((secrets or {}).items()):
        h.update(f"\0secret\0{name}\0{digest}".encode())
    return h.hexdigest()[:12]


def _port_blob(port: dict) -> dict:
    """A port as the hash saw it before ports could be published on the host's address."""
    return {k: v for k, v in port.items() if k != "on_host_address" or v}


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
    joined: bool = True             # in its service's DNS alias (passed its health gate)
    pre_stop: bool = False          # has a pre-stop hook (lifecycle): run before its stop signal

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
    """Volumes are per cloud: two clouds (or a gate's test cloud) on one engine never share data.

    `_` joins them: the schema allows it in volume names but never in cloud names, so the
    cloud is everything before the first `_` and no two (cloud, volume) pairs share a name
    (`a` + `b-data` is `a_b-data`, `a-b` + `data` is `a-b_data`)."""
    return f"{cloud}_{volume}"


def legacy_volume_name(cloud: str, volume: str) -> str:
    """The name tidegate gave volumes before `volume_name`, unlabelled and ambiguous
    (`a` + `b-data` and `a-b` + `data` were both `a-b-data`): adopted, never made."""
    return f"{cloud}-{volume}"
