"""Which engine volume holds a cloud's named volume: the cloud's data is never another's.

Every volume tidegate makes is named `<cloud>_<volume>` (`desired.volume_name`: no two
clouds share a name) and labelled `tidegate.cloud` and `tidegate.volume`, so teardown
selects a cloud's volumes by exact label, never by name.

Clouds deployed before that have unlabelled volumes named `<cloud>-<volume>`. Their data
must not be lost by an upgrade of tidegate: a new replica mounts the old volume when no
new one exists ("adoption", logged each time), but only when it is provably this
cloud's. Engines cannot relabel a volume, so adoption is decided again at each create:

- it is not labelled as another cloud's, and no container of another cloud mounts it;
- when no container of this cloud mounts it either (the cloud was taken down), no other
  cloud on the engine has a name that could have made it (`a` + `b-data` and `a-b` +
  `data` were both `a-b-data`): an ambiguous volume is refused, not guessed.

`choose` decides (pure); `place` reads the engine and rewrites a container spec.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Iterable, Mapping

from .desired import LABEL_CLOUD, LABEL_MANAGED, LABEL_VOLUME, legacy_volume_name, volume_name
from .engines.base import ContainerInfo, ContainerSpec, Engine

log = logging.getLogger("tidegate.volumes")


class VolumeConflict(Exception):
    """The volume cannot be given to the cloud without risking another cloud's data."""


def volume_labels(cloud: str, volume: str) -> dict[str, str]:
    return {LABEL_MANAGED: "tidegate", LABEL_CLOUD: cloud, LABEL_VOLUME: volume}


def mounted_by(containers: Iterable[ContainerInfo]) -> dict[str, set[str]]:
    """Volume name -> the clouds whose labelled containers mount it."""
    users: dict[str, set[str]] = {}
    for c in containers:
        cloud = c.labels.get(LABEL_CLOUD)
        if cloud:
            for vol in c.volumes:
                users.setdefault(vol, set()).add(cloud)
    return users


def choose(cloud: str, volume: str, *, new: Mapping[str, str] | None, legacy: Mapping[str, str] | None,
           users: Mapping[str, set[str]], clouds: set[str]) -> tuple[str, str]:
    """(engine volume name, note) for `volume` of `cloud`. `new` and `legacy` are the labels
    of the volumes under the new and the legacy name (None: no such volume), `users` which
    clouds' containers mount which volume, `clouds` every cloud with containers on the
    engine. The note says when a legacy volume is adopted. Raises VolumeConflict."""
    name, old = volume_name(cloud, volume), legacy_volume_name(cloud, volume)
    if new is not None:
        owner = new.get(LABEL_CLOUD, "")
        if owner != cloud:
            whose = f"cloud {owner}'s" if owner else "unlabelled"
            raise VolumeConflict(f"volume {name} exists but is {whose}, not cloud {cloud}'s: rename or "
                                 "remove it, or rename the volume in the service file")
        return name, ""
    if legacy is None or legacy.get(LABEL_CLOUD, cloud) != cloud:
        return name, ""                      # nothing to adopt (or another cloud's labelled volume)
    others = users.get(old, set()) - {cloud}
    if others:
        raise VolumeConflict(f"volume {old} (named by an older tidegate) is mounted by cloud(s) "
                             f"{', '.join(sorted(others))} too: copy its data into a volume {name}, "
                             "then apply again")
    if cloud not in users.get(old, set()):
        rivals = sorted(c for c in clouds if c != cloud and old.startswith(f"{c}-"))
        if rivals:
            raise VolumeConflict(f"volume {old} (named by an older tidegate) may be cloud {rivals[0]}'s as well "
                                 f"as cloud {cloud}'s: if it is {cloud}'s, copy it into a volume {name}; "
                                 "if not, the service gets a new one once it is renamed or removed")
    return old, f"keeps its volume {old} (named by an older tidegate; new volumes are named {name})"


def place(engine: Engine, spec: ContainerSpec) -> ContainerSpec:
    """The spec with each of the cloud's volumes pointed at the engine volume `choose`
    picks; volumes without tidegate's labels are left as they are. Reads only: `create`
    makes a missing volume, with the labels the spec carries."""
    mounts, context = [], None
    for mount in spec.volumes:
        cloud, volume = mount.labels.get(LABEL_CLOUD), mount.labels.get(LABEL_VOLUME)
        if not (cloud and volume):
            mounts.append(mount)
            continue
        new = engine.volume_labels(volume_name(cloud, volume))
        legacy = None if new is not None else engine.volume_labels(legacy_volume_name(cloud, volume))
        if legacy is not None and context is None:
            containers = engine.list_containers({LABEL_MANAGED: "tidegate"})
            context = mounted_by(containers), {c.labels.get(LABEL_CLOUD) for c in containers} - {None}
        users, clouds = context or ({}, set())
        try:
            name, note = choose(cloud, volume, new=new, legacy=legacy, users=users, clouds=clouds)
        except VolumeConflict as err:
            raise engine.error(f"create {spec.name}", str(err)) from None
        if note:
            log.warning("host %s: cloud %s %s", engine.host, cloud, note)
        mounts.append(replace(mount, name=name))
    return replace(spec, volumes=tuple(mounts))


def provably_the_clouds(cloud: str, containers: Iterable[ContainerInfo], labels: Mapping[str, Mapping | None]) -> set[str]:
    """The legacy-named volumes `down --volumes` may remove: mounted by a container of the
    cloud, by no container of another cloud, and not labelled as another cloud's.
    `containers`: every tidegate container on the engine; `labels`: each volume's labels."""
    users = mounted_by(containers)
    return {vol for vol, clouds in users.items()
            if clouds == {cloud} and vol.startswith(f"{cloud}-")
            and (labels.get(vol) or {}).get(LABEL_CLOUD, cloud) == cloud}
