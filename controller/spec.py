"""From a desired service to the engine-neutral ContainerSpec of one replica or job.

Pure except for `materialize_config`, which writes config file contents to a
content-addressed folder on the controller's machine so they can be bind-mounted
read-only (the same bytes always land in the same path, so a replica is never
restarted because a file was rewritten).
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path

from .desired import (LABEL_CLOUD, LABEL_COMMIT, LABEL_HASH, LABEL_MANAGED, LABEL_RELEASE,
                      LABEL_REPLICA, LABEL_ROLE, LABEL_SERVICE, Desired, DesiredService,
                      container_name, job_name, volume_name)
from .engines.base import BindMount, ContainerSpec, PortMapping, VolumeMount

# The host's own hard limits cap what a container may ask for (runc refuses more), and
# podman drops its configured defaults for every limit once one is given: set both.
DEFAULT_ULIMITS = {"nofile": (10000, 10000), "nproc": (5000, 5000)}


def labels(desired: Desired, ds: DesiredService, role: str, replica: int | None = None) -> dict[str, str]:
    out = {LABEL_MANAGED: "tidegate", LABEL_CLOUD: desired.cloud.name, LABEL_SERVICE: ds.name,
           LABEL_HASH: ds.hash, LABEL_RELEASE: str(ds.service.release), LABEL_COMMIT: desired.commit,
           LABEL_ROLE: role}
    if replica is not None:
        out[LABEL_REPLICA] = str(replica)
    return out


def cloud_labels(cloud: str) -> dict[str, str]:
    return {LABEL_MANAGED: "tidegate", LABEL_CLOUD: cloud}


def materialize_config(desired: Desired, ds: DesiredService, root: str | os.PathLike) -> list[BindMount]:
    """Write the service's config files under `root/<sha256>/<basename>` and return the
    read-only mounts."""
    mounts = []
    for cfg in ds.config:
        folder = Path(root) / cfg.sha256
        path = folder / posixpath.basename(cfg.target)
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(desired.files[cfg.sha256])
            tmp.chmod(0o644)
            os.replace(tmp, path)
        mounts.append(BindMount(str(path), cfg.target, read_only=True))
    return mounts


def _base(desired: Desired, ds: DesiredService, name: str, config_root: str) -> dict:
    svc = ds.service
    cloud = desired.cloud.name
    ulimits = dict(DEFAULT_ULIMITS)
    ulimits.update({n: (soft, hard) for n, soft, hard in svc.ulimits})
    return dict(
        name=name,
        image=svc.image,
        entrypoint=svc.entrypoint,
        environment=dict(svc.environment),
        volumes=tuple(VolumeMount(volume_name(cloud, v.name), v.path, v.read_only) for v in svc.volumes),
        mounts=tuple(materialize_config(desired, ds, config_root)),
        network=desired.cloud.network,
        stop_signal=svc.stop_signal,
        stop_grace=svc.stop_grace,
        ulimits=ulimits,
        user=svc.user,
    )


def replica_spec(desired: Desired, ds: DesiredService, replica: int, config_root: str) -> ContainerSpec:
    svc = ds.service
    name = container_name(desired.cloud.name, svc.name, replica, ds.hash)
    return ContainerSpec(
        **_base(desired, ds, name, config_root),
        command=svc.command,
        ports=tuple(PortMapping(p.container, p.host, p.protocol, p.host_ip) for p in svc.ports),
        # The service name is the alias the load balancer resolves; the per-replica
        # alias lets an operator (and tests) reach one replica.
        aliases=(svc.name, f"{svc.name}-{replica}"),
        labels=labels(desired, ds, "replica", replica),
        restart_policy="on-failure",
    )


def job_spec(desired: Desired, ds: DesiredService, phase: str, index: int, config_root: str) -> ContainerSpec:
    svc = ds.service
    job = svc.bootstrap[index] if phase == "bootstrap" else svc.upgrade.phase(phase)[index]
    name = job_name(desired.cloud.name, svc.name, phase, index, ds.hash)
    return ContainerSpec(
        **_base(desired, ds, name, config_root),
        command=job.command,
        labels={**labels(desired, ds, "job"), "tidegate.phase": phase},
        restart_policy="no",
    )
