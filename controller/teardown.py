"""Taking a whole cloud off an engine: `tidegate down`, the gate's teardown, `make demo-down`.

Only what carries the cloud's label (containers, networks) is touched; named volumes —
the cloud's data — are removed only when asked for (`volumes=True`), by their name prefix
`<cloud>-`, which `controller.desired.volume_name` gives every volume of the cloud."""
from __future__ import annotations

from controller.desired import LABEL_CLOUD
from controller.engines import Engine, EngineError


def remove_cloud(engine: Engine, cloud: str, *, volumes: bool, graceful: bool = True) -> tuple[list[str], list[str]]:
    """Remove the cloud's containers and networks (and volumes if asked) from one engine;
    `graceful`: stop each container with its grace period first (a throw-away test cloud
    need not wait). Returns (removed, left) descriptions."""
    removed, left = [], []
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
        for vol in engine.list_volumes({}):
            if vol.startswith(f"{cloud}-"):
                try:
                    engine.remove_volume(vol)
                    removed.append(f"volume {vol}")
                except EngineError as err:
                    left.append(f"volume {vol} ({err.message})")
    return removed, left
