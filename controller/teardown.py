"""Taking a whole cloud off an engine: `tidegate down`, the gate's teardown, `make demo-down`.

Only what carries the cloud's label (containers, networks) is touched, selected by exact
label value, never by name: cloud `demo`'s teardown leaves cloud `demo-eu` alone. Named
volumes — the cloud's data — are removed only when asked for (`volumes=True`): those
labelled with the cloud (`controller.volumes`), and volumes named by an older tidegate
that are provably the cloud's (mounted by its containers and no other cloud's). A legacy
volume that no container mounts any more cannot be told apart from another cloud's: it
stays (README: "Volumes"), for the operator to remove by hand."""
from __future__ import annotations

from controller.desired import LABEL_CLOUD, LABEL_MANAGED, LABEL_VOLUME
from controller.engines import Engine, EngineError
from controller.volumes import provably_the_clouds


def remove_cloud(engine: Engine, cloud: str, *, volumes: bool, graceful: bool = True) -> tuple[list[str], list[str]]:
    """Remove the cloud's containers and networks (and volumes if asked) from one engine;
    `graceful`: stop each container with its grace period first (a throw-away test cloud
    need not wait). Returns (removed, left) descriptions."""
    removed, left = [], []
    legacy: set[str] = set()
    if volumes:                                      # decided before its containers go
        everyone = engine.list_containers({LABEL_MANAGED: "tidegate"})
        mounted = {v for c in everyone if c.labels.get(LABEL_CLOUD) == cloud for v in c.volumes}
        legacy = provably_the_clouds(cloud, everyone, {v: engine.volume_labels(v) for v in mounted})
    for c in engine.list_containers({LABEL_CLOUD: cloud}):
        try:
            if graceful:
                engine.stop(c.id)                   # the container's own stop signal and grace period
            engine.remove(c.id)
            removed.append(f"container {c.name}")
        except EngineError as err:
            left.append(f"container {c.name} ({err.message})")
    for net in sorted(set(engine.list_networks({LABEL_CLOUD: cloud})) | {f"tidegate-{cloud}"}):
        try:
            engine.remove_network(net)
        except EngineError as err:
            left.append(f"network {net} ({err.message})")
    if volumes:
        for vol in sorted(set(engine.list_volumes({LABEL_CLOUD: cloud, LABEL_VOLUME: ""})) | legacy):
            try:
                engine.remove_volume(vol)
                removed.append(f"volume {vol}")
            except EngineError as err:
                left.append(f"volume {vol} ({err.message})")
    return removed, left
