"""Run the four layers: what `tidegate check`, the controller and the gate call."""
from __future__ import annotations

from dataclasses import dataclass

from . import compat, custom, semantic, transition  # noqa: F401  (rule registration)
from . import rules
from .findings import Finding
from .load import LoadedCloud
from .transition import TransitionContext


@dataclass
class StateContext:
    loaded: LoadedCloud

    @property
    def cloud(self):
        return self.loaded.cloud

    @property
    def tree(self):
        return self.loaded.tree


def _severities(loaded: LoadedCloud) -> dict:
    return dict(loaded.rules.get("severity") or {})


def check_state(loaded: LoadedCloud) -> list[Finding]:
    """Layers 1-3 (plus the cloud's own rules) on one state."""
    findings = list(loaded.findings)
    if loaded.cloud is None:
        return sorted(findings)
    ctx = StateContext(loaded)
    severities = _severities(loaded)
    findings += rules.run("semantic", ctx, loaded.docs, severities)
    findings += rules.run("compat", ctx, loaded.docs, severities)
    findings += custom.run(loaded)
    return sorted(findings)


def check_transition(base: LoadedCloud, new: LoadedCloud, history: dict | None = None) -> list[Finding]:
    """Layer 4: base → new. Both states must have loaded (check_state first)."""
    if base.cloud is None or new.cloud is None:
        return []
    ctx = TransitionContext(base.cloud, new.cloud, new.service_data, history or {})
    return sorted(rules.run("transition", ctx, new.docs, _severities(new)))
