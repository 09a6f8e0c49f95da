"""The rule registry: rules are data (id, layer, default severity, summary) plus a small
registered function. A cloud tunes severities or adds data-only rules in rules.yaml.

A rule function gets a context and yields `Hit`s; the runner turns them into Findings
with the rule's id and its (possibly overridden) severity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .findings import Finding
from .yamlload import Document

LAYERS = ("semantic", "compat", "transition")


@dataclass(frozen=True)
class Hit:
    file: str
    path: tuple = ()
    message: str = ""
    hint: str = ""
    key: bool = False               # point at the key rather than the value
    severity: str | None = None     # overrides the rule's default for this hit


@dataclass(frozen=True)
class Rule:
    id: str
    layer: str
    severity: str
    summary: str
    func: Callable[..., Iterable[Hit]] = field(compare=False)


REGISTRY: dict[str, Rule] = {}


def rule(id: str, layer: str, severity: str, summary: str):
    """Register a rule function under a stable id."""
    assert layer in LAYERS, layer

    def register(func):
        if id in REGISTRY:
            raise ValueError(f"rule {id} registered twice")
        REGISTRY[id] = Rule(id, layer, severity, summary, func)
        return func
    return register


def hits_to_findings(rule_id: str, severity: str, hits: Iterable[Hit],
                     docs: dict[str, Document]) -> list[Finding]:
    findings = []
    for hit in hits:
        doc = docs.get(hit.file)
        line, col = doc.mark(hit.path, key=hit.key) if doc else (None, None)
        findings.append(Finding(hit.file, line, col, hit.severity or severity, rule_id,
                                hit.message, hit.hint))
    return findings


def run(layer: str, ctx, docs: dict[str, Document], severities: dict[str, str]) -> list[Finding]:
    """Run every registered rule of `layer`; `severities` overrides defaults ('off' skips)."""
    findings = []
    for r in REGISTRY.values():
        if r.layer != layer:
            continue
        severity = severities.get(r.id, r.severity)
        if severity == "off":
            continue
        findings += hits_to_findings(r.id, severity, r.func(ctx), docs)
    return findings


def catalogue() -> list[Rule]:
    """Every built-in rule, for `tidegate check --list-rules` and the docs."""
    from . import compat, semantic, transition  # noqa: F401  (registration side effect)
    return sorted(REGISTRY.values(), key=lambda r: (LAYERS.index(r.layer), r.id))
