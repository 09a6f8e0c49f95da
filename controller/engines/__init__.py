"""Container engines behind one interface. `connect` is the one place that picks a driver."""
from __future__ import annotations

from .base import (BindMount, ContainerInfo, ContainerSpec, Engine, EngineError,
                   EngineUnreachable, ExecResult, ImageInfo, PortMapping, VolumeMount)

KINDS = ("podman", "docker")


def connect(kind: str, url: str, host: str = "local") -> Engine:
    """Return a driver for engine `kind` at `url` (unix://, ssh://, tcp://).

    Connecting is lazy: an unreachable engine is reported by the first operation
    (as EngineUnreachable naming the host), not here.
    """
    if kind == "podman":
        from .podman import PodmanEngine
        return PodmanEngine(host, url)
    if kind == "docker":
        from .docker import DockerEngine
        return DockerEngine(host, url)
    raise EngineError(host, kind, "connect", f"unknown engine kind {kind!r} (expected one of {', '.join(KINDS)})")


__all__ = ["BindMount", "ContainerInfo", "ContainerSpec", "Engine", "EngineError",
           "EngineUnreachable", "ExecResult", "ImageInfo", "PortMapping", "VolumeMount",
           "KINDS", "connect"]
