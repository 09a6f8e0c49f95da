"""Run the four layers: what `tidegate check`, the controller and the gate call.

A change (base → head) is judged by the rules that govern it *before* it merges: per
rule, the stricter of the base's and the head's severity (off < info < warning < error),
the base's own rules (rules.yaml `rules`) as well as the head's, and every policy that
is on in the base or the head. A pull request may tighten rules; it cannot loosen the
rules that judge it — its loosening takes effect for the changes after it
(`transition.rules-loosened` says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import compat, custom, secretrules, semantic, transition  # noqa: F401  (rule registration)
from . import rules
from .findings import Finding
from .load import LoadedCloud
from .transition import Prior, TransitionContext, pairs

STATE_LAYERS = ("semantic", "compat")


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


def governing_severities(base: LoadedCloud, new: LoadedCloud) -> dict[str, str]:
    """Every tunable rule's severity for the change base → new: the stricter of the two."""
    own_base, own_new = _severities(base), _severities(new)
    return {r.id: rules.stricter(rules.severity_of(r.id, own_base), rules.severity_of(r.id, own_new))
            for r in rules.REGISTRY.values() if r.tunable}


def check_state(loaded: LoadedCloud) -> list[Finding]:
    """Layers 1-3 (plus the cloud's own rules) on one state, by that state's own rules."""
    findings = list(loaded.findings)
    if loaded.cloud is None:
        return sorted(findings)
    ctx = StateContext(loaded)
    severities = _severities(loaded)
    for layer in STATE_LAYERS:
        findings += rules.run(layer, ctx, loaded.docs, severities)
    findings += custom.run(loaded)
    return sorted(findings)


def _state_under_base_rules(base: LoadedCloud, new: LoadedCloud, governing: dict) -> list[Finding]:
    """What check_state(new) missed because the change loosened its own rules: state rules
    whose governing severity is stricter than new's own (at the governing severity), and
    the base's custom rules that new dropped or changed."""
    own = _severities(new)
    raised = {rule_id: severity for rule_id, severity in governing.items()
              if rules.REGISTRY[rule_id].layer in STATE_LAYERS and severity != rules.severity_of(rule_id, own)}
    findings: list[Finding] = []
    ctx = StateContext(new)
    for layer in STATE_LAYERS:
        findings += rules.run(layer, ctx, new.docs, raised, only=raised)
    new_rules = new.rules.get("rules") or []
    dropped = [r for r in base.rules.get("rules") or () if r not in new_rules]
    if dropped:
        rules_file = f"{base.folder}/rules.yaml"
        extra = custom.evaluate(new, dropped, base.docs.get(rules_file), source="the base's rules.yaml")
        findings += sorted(set(extra) - set(custom.run(new)))
    return findings


def check_transition(base: LoadedCloud, new: LoadedCloud, history: dict | None = None) -> list[Finding]:
    """Layer 4: base → new, plus the state findings the change's loosened rules would hide
    (see the module docstring). Both states must have loaded (check_state first)."""
    if base.cloud is None or new.cloud is None:
        return []
    governing = governing_severities(base, new)
    ctx = TransitionContext(base.cloud, new.cloud, new.service_data, history or {},
                            base_rules=base.rules, new_rules=new.rules)
    findings = rules.run("transition", ctx, new.docs, governing)
    findings += _state_under_base_rules(base, new, governing)
    return sorted(set(findings))


History = Callable[[list[str]], "dict[str, Prior]"]


def judge(head: LoadedCloud, base: LoadedCloud | None, history: History | None = None) -> list[Finding]:
    """THE judge of a change: the findings on `head` as a change from `base` (None: the
    cloud is new, nothing to transition from). `history(services)` gives, for services
    whose release goes down, their state before their last change (controller.source.
    Source.prior_states). `tidegate check`, the controller, `tidegate rollback` and the gate
    all call this, so one commit gets one verdict.

    The transition rules run whenever both states load, whatever else is wrong with the
    head (a head with a semantic error still gets its forbidden jump reported); a base
    that does not load is an error, never a silently skipped transition."""
    findings = check_state(head)
    if base is None or head.cloud is None:
        return findings
    first = next((f for f in base.findings if f.severity == "error"), None)
    if base.cloud is None or first is not None:     # a file of it that does not load is left out of it
        findings.append(Finding(f"{head.folder}/cloud.yaml", None, None, "error", "transition.base-invalid",
                                "the base state of this change does not load"
                                + (f" ({first.file}: {first.message})" if first else "")
                                + ", so the upgrade rules cannot judge the change",
                                "judge it from the last valid commit (tidegate check --base REV), or fix the base first"))
        return sorted(findings)
    down = sorted({new.name for old, new in pairs(base.cloud, head.cloud, head.service_data)
                   if new.release < old.release})
    prior = history(down) if down and history is not None else {}
    return sorted(set(findings) | set(check_transition(base, head, prior)))
