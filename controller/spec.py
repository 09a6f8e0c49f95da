"""From a desired service to the engine-neutral ContainerSpec of one replica or job.

Pure. Config files travel inside the spec (`files`): the engine puts them into the
created container through its API, so nothing depends on the controller's filesystem
and a remote host runs the service as a local one does. A config file that refers to
secrets is rendered in memory (`secret_files`), readable by its owner only.
"""
from __future__ import annotations

import posixpath

from .desired import (LABEL_CLOUD, LABEL_COMMIT, LABEL_HASH, LABEL_HOST, LABEL_MANAGED, LABEL_RELEASE,
                      LABEL_REPLICA, LABEL_ROLE, LABEL_SERVICE, Desired, DesiredService,
                      container_name, job_name, volume_name)
from .engines.base import ContainerSpec, FileCopy, PortMapping, VolumeMount
from . import keyrepo, lifecycle
from .secrets import SecretError
from .volumes import volume_labels
from validators import secrets as secret_refs
from validators import templates

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


class ConfigError(ValueError):
    """A config file that cannot be put where its replica reads it (one line)."""


def config_files(desired: Desired, ds: DesiredService, host: str | None = None) -> tuple[FileCopy, ...]:
    """The service's config files as the engine puts them into each new container (root,
    0644). Their bytes come from the commit; nothing is written on the controller's disk,
    so a host that never saw it runs the service. A target that names a directory is an
    error, never a file put in its place. A template's `${host}` becomes `host`, the
    container's host (the service's first host when not given)."""
    files = []
    for cfg in ds.config:
        if cfg.secrets:
            continue                    # secret_files: in memory only
        name = posixpath.basename(cfg.target)
        if name in ("", ".", ".."):
            raise ConfigError(f"config {cfg.source}: target {cfg.target} names a directory, not a file")
        if not cfg.target.startswith("/"):
            raise ConfigError(f"config {cfg.source}: target {cfg.target} is not an absolute path")
        files.append(FileCopy(cfg.target, _for_host(cfg, desired.files[cfg.sha256], ds, host)))
    return tuple(files)


def _for_host(cfg, content: bytes, ds: DesiredService, host: str | None) -> bytes:
    if not cfg.per_host:
        return content
    return templates.render_host(content, host or next(iter(ds.service.placement), ""))


def secret_files(desired: Desired, ds: DesiredService, host: str | None = None) -> list[FileCopy]:
    """The service's templates that refer to secrets, rendered with the decrypted values
    (controller.secrets.SecretError when the controller's key cannot decrypt one) and
    `${host}` as in config_files."""
    out = [FileCopy(cfg.target, _for_host(cfg, secret_refs.render(desired.files[cfg.sha256], desired.vault.value),
                                          ds, host),
                    cfg.mode, cfg.owner)
           for cfg in ds.config if cfg.secrets]
    for s in ds.service.secret_files:
        owner = s.owner or ds.service.user
        value = desired.vault.value(s.name)
        if s.layout == "key-repository":
            try:
                keys = keyrepo.parse(value)
            except keyrepo.KeyRepositoryError as err:
                raise SecretError(f"{secret_refs.path(desired.cloud.folder, s.name)}: {err}") from None
            out += [FileCopy(path, content, s.mode, owner) for path, content in keyrepo.files(keys, s.target)]
        else:
            out.append(FileCopy(s.target, value, s.mode, owner))
    return out


def environment(desired: Desired, ds: DesiredService) -> dict[str, str]:
    """The service's environment with `{secret: NAME}` values decrypted."""
    return {k: v if isinstance(v, str) else desired.vault.text(v.secret) for k, v in ds.service.environment}


def _base(desired: Desired, ds: DesiredService, name: str, host: str) -> dict:
    svc = ds.service
    cloud = desired.cloud.name
    ulimits = dict(DEFAULT_ULIMITS)
    ulimits.update({n: (soft, hard) for n, soft, hard in svc.ulimits})
    return dict(
        name=name,
        image=svc.image,
        entrypoint=svc.entrypoint,
        environment=environment(desired, ds),
        volumes=tuple(VolumeMount(volume_name(cloud, v.name), v.path, v.read_only, volume_labels(cloud, v.name))
                      for v in svc.volumes),
        files=config_files(desired, ds, host) + tuple(secret_files(desired, ds, host)),
        network=desired.cloud.network,
        stop_signal=svc.stop_signal,
        stop_grace=svc.stop_grace,
        ulimits=ulimits,
        user=svc.user,
        extra_hosts=svc.reach,
    )


def replica_spec(desired: Desired, ds: DesiredService, replica: int) -> ContainerSpec:
    svc = ds.service
    name = container_name(desired.cloud.name, svc.name, replica, ds.hash)
    host = svc.placement[replica]
    address = desired.cloud.hosts[host].address
    return ContainerSpec(
        **_base(desired, ds, name, host),
        command=svc.command,
        ports=tuple(PortMapping(p.container, p.host, p.protocol, address if p.on_host_address else p.host_ip)
                    for p in svc.published),
        # Created under its own name only: the executor adds `service_aliases` once the
        # replica passed its health gate, so a balancer never resolves a sick one. Not
        # one that publishes ports on its host's address (a cloud of machines): other
        # machines reach it there as soon as it listens, and the late join (leave the
        # network, join again) cut the requests they had in flight — a front's request
        # to a new nova-api hung 60 s (tests/compute). It is created in its alias.
        aliases=service_aliases(svc.name, replica) if any(p.on_host_address for p in svc.published) else (),
        labels={**labels(desired, ds, "replica", replica), LABEL_HOST: host,
                **lifecycle.labels(svc.lifecycle)},
        restart_policy="on-failure",
    )


def service_aliases(service: str, replica: int) -> tuple[str, str]:
    """A replica's DNS names on the cloud network once it serves: the service name (what
    a load balancer resolves) and a per-replica name (to reach one replica by hand)."""
    return service, f"{service}-{replica}"


def job_spec(desired: Desired, ds: DesiredService, phase: str, index: int, host: str | None = None) -> ContainerSpec:
    """`host`: where the job runs (the plan's job host; by default the service's first)."""
    svc = ds.service
    job = svc.bootstrap[index] if phase == "bootstrap" else svc.upgrade.phase(phase)[index]
    name = job_name(desired.cloud.name, svc.name, phase, index, ds.hash)
    return ContainerSpec(
        **_base(desired, ds, name, host or next(iter(svc.placement), "")),
        command=job.command,
        labels={**labels(desired, ds, "job"), "tidegate.phase": phase},
        restart_policy="no",
    )
