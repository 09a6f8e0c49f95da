"""The engine interface: the only vocabulary the executor, the gate and the image
builder use to talk to a container engine.

A driver (podman, docker) is chosen once, at the edge (`controller.engines.connect`),
and everything inside talks to `Engine`. Values crossing this interface are plain,
engine-neutral dataclasses; driver objects (podman-py / docker-py) never leak out.

Errors are values with a class (STYLE.md, principle 5): every failure of the engine
becomes an `EngineError` naming the host and the operation, flagged `temporary` when a
retry may help (engine unreachable, timeout) and permanent otherwise (no such image,
bad spec).
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence


class EngineError(Exception):
    """A container engine refused or failed an operation.

    `str(err)` is one line an operator can act on: "host ctl1 (podman): create
    keystone-1: image 'x' not found".
    """

    def __init__(self, host: str, kind: str, operation: str, message: str,
                 *, temporary: bool = False):
        self.host = host
        self.kind = kind
        self.operation = operation
        self.message = message
        self.temporary = temporary
        super().__init__(f"host {host} ({kind}): {operation}: {message}")


class EngineUnreachable(EngineError):
    """The engine's API did not answer: always temporary (retry with backoff)."""

    def __init__(self, host: str, kind: str, operation: str, message: str):
        super().__init__(host, kind, operation, message, temporary=True)


@dataclass(frozen=True)
class PortMapping:
    """Publish container port `container` on the host's `host` port."""
    container: int
    host: int | None = None          # None: the engine picks a free port
    protocol: str = "tcp"            # tcp | udp
    host_ip: str = ""                # "" = all addresses


@dataclass(frozen=True)
class VolumeMount:
    """A named volume mounted at `target`. Named volumes outlive every container.
    `labels` go on the volume when `create` makes it (an existing volume keeps its own)."""
    name: str
    target: str
    read_only: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BindMount:
    """A host file or directory mounted into the container (config files: read-only)."""
    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class FileCopy:
    """A file put into the container through the engine's API after `create`, before
    `start`: config files, and files that hold secrets. Nothing of it lives on the
    controller's or the host's disk outside the container, so a remote host needs no path
    of the controller's machine. `owner` is a user of the image (name or uid, optionally
    :group or :gid), resolved in the container's own /etc/passwd; None: the user the
    container runs as (root when it names none). The content never appears in a repr."""
    target: str                      # absolute path inside the container
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container, engine-neutral."""
    name: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)   # may hold secret values
    ports: Sequence[PortMapping] = ()
    volumes: Sequence[VolumeMount] = ()
    mounts: Sequence[BindMount] = ()
    files: Sequence[FileCopy] = ()   # put in by `create`, before the container first starts
    network: str | None = None
    aliases: Sequence[str] = ()      # DNS names on `network` (the service name, for LB)
    extra_hosts: Sequence[tuple[str, str]] = ()   # /etc/hosts lines (name, address); a name may repeat
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    stop_grace: float = 10.0         # seconds between stop_signal and SIGKILL
    restart_policy: str = "no"       # no | on-failure | always | unless-stopped
    ulimits: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name -> (soft, hard)
    user: str | None = None
    workdir: str | None = None


@dataclass(frozen=True)
class ContainerInfo:
    """What the engine says about one container (observed state)."""
    id: str
    name: str
    image: str                       # the reference it was created from
    image_id: str
    labels: Mapping[str, str]
    state: str                       # created | running | exited | paused | ...
    exit_code: int | None = None
    started_at: str | None = None
    restart_count: int = 0           # restarts by the engine's restart policy
    # network name -> (ip address, aliases on that network)
    networks: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # "5000/tcp" -> host port
    ports: Mapping[str, int] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()    # the named volumes it mounts

    @property
    def running(self) -> bool:
        return self.state == "running"

    def ip(self, network: str | None = None) -> str | None:
        """The container's address on `network` (or on any network)."""
        if network is not None:
            entry = self.networks.get(network)
            return entry[0] if entry and entry[0] else None
        for address, _aliases in self.networks.values():
            if address:
                return address
        return None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str                      # stdout and stderr, interleaved


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)


class Engine(abc.ABC):
    """One container engine on one host.

    Implementations must be safe to use from several threads of one process (the
    executor converges hosts in parallel, one thread per host).
    """

    kind: str = ""                   # "podman" | "docker"

    def __init__(self, host: str, url: str, access=None):
        self.host = host             # the host's name in cloud.yaml
        self.url = url
        self.access = access         # remote.Access: known_hosts, ssh key, TLS files (None: defaults)

    @property
    def remote(self) -> bool:
        """Reached over the network (ssh://, tcp://): its containers' addresses are the
        host's own business, not reachable from this machine."""
        return not self.url.startswith("unix://")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} host={self.host} url={self.url}>"

    def error(self, operation: str, message: str, *, temporary: bool = False) -> EngineError:
        return EngineError(self.host, self.kind, operation, message, temporary=temporary)

    # -- engine ---------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> str:
        """Return the engine's version; raise EngineUnreachable if it does not answer."""

    def close(self) -> None:
        """Release the API connection."""

    # -- containers -----------------------------------------------------------
    @abc.abstractmethod
    def list_containers(self, labels: Mapping[str, str], *, all: bool = True) -> list[ContainerInfo]:
        """Containers carrying every given label (value "" matches any value)."""

    @abc.abstractmethod
    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        """The container, or None when it does not exist."""

    @abc.abstractmethod
    def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Create (not start) a container; ensures its network and named volumes, and
        puts `spec.files` in (a container whose files could not be put is removed)."""

    @abc.abstractmethod
    def start(self, name_or_id: str) -> None: ...

    @abc.abstractmethod
    def stop(self, name_or_id: str, grace: float | None = None) -> None:
        """Send the container's stop signal, SIGKILL after `grace` seconds (default:
        the grace it was created with). Stopping a stopped container is not an error."""

    @abc.abstractmethod
    def remove(self, name_or_id: str) -> None:
        """Remove a stopped (or kill and remove a running) container. Never removes
        named volumes. Removing a missing container is not an error."""

    @abc.abstractmethod
    def logs(self, name_or_id: str, tail: int | None = 50) -> str:
        """The last `tail` lines of stdout and stderr (None: all of it)."""

    @abc.abstractmethod
    def exec(self, name_or_id: str, command: Sequence[str], *,
             environment: Mapping[str, str] | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command inside a running container (exec health checks, jobs)."""

    @abc.abstractmethod
    def wait(self, name_or_id: str, timeout: float | None = None) -> int:
        """Wait for the container to exit; return its exit code."""

    def run_job(self, spec: ContainerSpec, timeout: float | None = None) -> ExecResult:
        """Run a one-off container to completion (migration jobs: db_sync --expand…),
        return its exit code and output, and remove it. Volumes stay."""
        existing = self.inspect(spec.name)
        if existing is not None:
            self.remove(existing.id)
        info = self.create(spec)
        try:
            self.start(info.id)
            try:
                code = self.wait(info.id, timeout=timeout)
            except EngineError:
                self.stop(info.id, grace=0)
                raise
            output = self.logs(info.id, tail=None)
            # podman 4.3 can report a fast job exited before its log is readable:
            # look again briefly before believing the job printed nothing.
            for _ in range(10):
                if output:
                    break
                time.sleep(0.1)
                output = self.logs(info.id, tail=None)
            return ExecResult(code, output)
        finally:
            self.remove(info.id)

    # -- networks -------------------------------------------------------------
    @abc.abstractmethod
    def ensure_network(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Create a bridge network with DNS (aliases resolve) unless it exists."""

    @abc.abstractmethod
    def remove_network(self, name: str) -> None: ...

    @abc.abstractmethod
    def list_networks(self, labels: Mapping[str, str]) -> list[str]: ...

    @abc.abstractmethod
    def connect(self, name_or_id: str, network: str, aliases: Sequence[str] = ()) -> None: ...

    def rejoin(self, name_or_id: str, network: str, aliases: Sequence[str]) -> None:
        """Leave `network` and join it again with `aliases` (neither engine adds an alias
        to a container already on a network), as the same host where the engine lets us
        ask: same address (connections the container opened stay valid) and same MAC
        (a peer's ARP entry stays right). The caller checks the address it got."""
        self.disconnect(name_or_id, network)
        self.connect(name_or_id, network, aliases)

    @abc.abstractmethod
    def disconnect(self, name_or_id: str, network: str) -> None:
        """Take the container off `network` (drain: the balancer stops resolving it)."""

    # -- volumes --------------------------------------------------------------
    @abc.abstractmethod
    def ensure_volume(self, name: str, labels: Mapping[str, str] | None = None) -> None: ...

    @abc.abstractmethod
    def list_volumes(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the volumes carrying every given label (value "" matches any value)."""

    @abc.abstractmethod
    def volume_labels(self, name: str) -> Mapping[str, str] | None:
        """The volume's labels ({} when it has none), or None when it does not exist."""

    @abc.abstractmethod
    def remove_volume(self, name: str) -> None:
        """Explicit only (demo-down --volumes, gate teardown); convergence never calls it."""

    # -- images ---------------------------------------------------------------
    @abc.abstractmethod
    def image(self, ref: str) -> ImageInfo | None:
        """The image, or None when the engine does not have it."""

    def image_exists(self, ref: str) -> bool:
        return self.image(ref) is not None

    @abc.abstractmethod
    def import_rootfs(self, tar_path: str, ref: str) -> ImageInfo:
        """Import a root filesystem tarball (mmdebstrap output) as image `ref`."""

    @abc.abstractmethod
    def build(self, context_dir: str, ref: str, *, containerfile: str = "Containerfile",
              labels: Mapping[str, str] | None = None,
              log: "callable | None" = None) -> ImageInfo:
        """Build an image from a context directory; `log` receives output lines."""

    @abc.abstractmethod
    def tag(self, ref: str, new_ref: str) -> None: ...

    @abc.abstractmethod
    def pull(self, ref: str) -> ImageInfo:
        """Pull from a registry (fails clearly where none is reachable)."""

    @abc.abstractmethod
    def remove_image(self, ref: str) -> None: ...
