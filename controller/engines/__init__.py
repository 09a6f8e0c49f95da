"""Container engines behind one interface. `connect` is the one place that picks a driver."""
from __future__ import annotations

from .base import (BindMount, ContainerInfo, ContainerSpec, Engine, EngineError,
                   EngineUnreachable, ExecResult, FileCopy, ImageInfo, PortMapping, VolumeMount)

KINDS = ("podman", "docker")


def connect(kind: str, url: str, host: str = "local", access=None) -> Engine:
    """Return a driver for engine `kind` at `url` (unix://, ssh://, tcp://); `access`
    (remote.Access) names the known_hosts file, ssh key and TLS files (None: the
    controller's settings, see remote.settings).

    Connecting is lazy: an unreachable engine is reported by the first operation
    (as EngineUnreachable naming the host), not here; so is a URL that remote.transport
    refuses (plain tcp://), as a permanent EngineError.
    """
    if access is None:
        from .remote import settings
        access = settings()
    if kind == "podman":
        from .podman import PodmanEngine
        return PodmanEngine(host, url, access)
    if kind == "docker":
        from .docker import DockerEngine
        return DockerEngine(host, url, access)
    raise EngineError(host, kind, "connect", f"unknown engine kind {kind!r} (expected one of {', '.join(KINDS)})")


__all__ = ["BindMount", "ContainerInfo", "ContainerSpec", "Engine", "EngineError",
           "EngineUnreachable", "ExecResult", "FileCopy", "ImageInfo", "PortMapping", "VolumeMount",
           "KINDS", "connect"]
