"""A replica's lifecycle hooks (`lifecycle:` of a service: validators/model.Lifecycle).

A container carries the hooks it was created with, in two labels: its pre-stop runs the
commands of ITS spec, with ITS files — an upgrade that adds or changes a hook (and the
script it runs) must not ask an old replica for a script it does not have. Changing a
hook restarts nothing (it is not in the spec hash); replicas created afterwards carry
the new one.

`run` is the one place a hook runs: in the container, bounded by the hook's timeout;
`pre_stop` and `post_ready` are what the executor asks (a failure: HookFailed)."""
from __future__ import annotations

import json

from validators.model import Hook, Lifecycle

from .desired import LABEL_POST_READY, LABEL_PRE_STOP
from .engines.base import Engine, EngineError, ExecResult

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


class HookFailed(Exception):
    """A hook that did not pass (or could not be read): one line, and its output."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


def run(engine: Engine, container: str, which: Hook) -> ExecResult:
    return engine.exec(container, which.command, timeout=which.timeout)


def pre_stop(engine: Engine, container: str) -> None:
    """The container's own pre-stop: out of service, its work in flight done. It fails
    closed: the container is not stopped, its post-ready puts it back (HookFailed). A
    container that does not run has nothing to take out of service."""
    info = engine.inspect(container)
    if info is None or not info.running:
        return
    hook = _own(info.labels, "pre_stop", container, "; it was not stopped")
    if hook is None:
        return
    result = run(engine, container, hook)
    if result.exit_code == 0:
        return
    back = "it was not stopped"
    try:
        undo = _own(info.labels, "post_ready", container)
        if undo is not None:
            again = run(engine, container, undo)
            back += (", and its post-ready put it back in service" if again.exit_code == 0 else
                     f", and its post-ready exited {again.exit_code}: {last_line(again)}")
    except (EngineError, HookFailed) as err:
        back += f", and its post-ready could not run: {err}"
    raise HookFailed(f"pre-stop {' '.join(hook.command)!r} in {container} exited {result.exit_code}: "
                     f"{last_line(result)}; {back}", _tail(result))


def post_ready(engine: Engine, container: str, info) -> None:
    """The container's own post-ready, before it joins its alias: back in service."""
    hook = _own(info.labels, "post_ready", container)
    if hook is None:
        return
    result = run(engine, container, hook)
    if result.exit_code != 0:
        raise HookFailed(f"{container} is ready but its post-ready {' '.join(hook.command)!r} exited "
                         f"{result.exit_code}: {last_line(result)}", _tail(result))


def _own(container_labels, which: str, container: str, then: str = "") -> Hook | None:
    try:
        return hook(container_labels, which)
    except HookLabelError as err:
        raise HookFailed(f"{container}: {err}{then}") from None


def _tail(result: ExecResult, lines: int = 20) -> str:
    return "\n".join(result.output.splitlines()[-lines:])


def last_line(result: ExecResult) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"
