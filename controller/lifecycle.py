"""A replica's lifecycle hooks (`lifecycle:` of a service: validators/model.Lifecycle).

A container carries the hooks it was created with, in two labels: its pre-stop runs the
commands of ITS spec, with ITS files — an upgrade that adds or changes a hook (and the
script it runs) must not ask an old replica for a script it does not have. Changing a
hook restarts nothing (it is not in the spec hash); replicas created afterwards carry
the new one.

`run` is the one place a hook runs: in the container, bounded by the hook's timeout."""
from __future__ import annotations

import json

from validators.model import Hook, Lifecycle

from .desired import LABEL_POST_READY, LABEL_PRE_STOP
from .engines.base import Engine, ExecResult

LABELS = {"pre_stop": LABEL_PRE_STOP, "post_ready": LABEL_POST_READY}


class HookLabelError(ValueError):
    """A hook label that is not what tidegate writes (edited by hand, another tool)."""


def labels(lifecycle: Lifecycle) -> dict[str, str]:
    """The labels that carry `lifecycle` on a replica's container."""
    out = {}
    for which, label in LABELS.items():
        hook = getattr(lifecycle, which)
        if hook is not None:
            out[label] = json.dumps({"command": list(hook.command), "timeout": hook.timeout}, separators=(",", ":"))
    return out


def hook(container_labels, which: str) -> Hook | None:
    """The container's own `which` hook (pre_stop | post_ready), None when it has none."""
    text = (container_labels or {}).get(LABELS[which])
    if text is None:
        return None
    try:
        data = json.loads(text)
        command = tuple(str(part) for part in data["command"])
        timeout = float(data.get("timeout", 60))
    except (ValueError, KeyError, TypeError) as err:
        raise HookLabelError(f"label {LABELS[which]} is not a hook tidegate wrote ({err})") from None
    if not command or timeout <= 0:
        raise HookLabelError(f"label {LABELS[which]} has no command or no time")
    return Hook(command, timeout)


def run(engine: Engine, container: str, which: Hook) -> ExecResult:
    return engine.exec(container, which.command, timeout=which.timeout)


def last_line(result: ExecResult) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"
