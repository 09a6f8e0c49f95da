"""The rule registry: rules are data (id, layer, default severity, summary) plus a small
registered function. A cloud tunes severities or adds data-only rules in rules.yaml.

A rule function gets a context and yields `Hit`s; the runner turns them into Findings
with the rule's id and its (possibly overridden) severity.

Findings of the loading layers (YAML, schema, the service folder) and of a cloud's own
rules come from the loader and from custom.py, not from registered functions; they are
declared here too (`DECLARED`), so `tidegate check --list-rules` names every rule id a
finding can carry. They cannot be tuned in rules.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .findings import Finding
from .yamlload import Document

LAYERS = ("semantic", "compat", "transition")                   # layers of registered functions
CATALOGUE_LAYERS = ("yaml", "schema", "semantic", "compat", "transition", "custom")
SEVERITY_RANK = {"off": 0, "info": 1, "warning": 2, "error": 3}


def stricter(a: str, b: str) -> str:
    """The stricter of two severities (off < info < warning < error)."""
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


@dataclass(frozen=True)
class Hit:
    file: str
    path: tuple = ()
    message: str = ""
    hint: str = ""
    key: bool = False               # point at the key rather than the value
    severity: str | None = None     # overrides the rule's default for this hit
    line: int | None = None         # in a file that is not YAML (a config file)


@dataclass(frozen=True)
class Rule:
    id: str
    layer: str
    severity: str
    summary: str
    func: Callable[..., Iterable[Hit]] | None = field(compare=False, default=None)

    @property
    def tunable(self) -> bool:
        """Registered functions can be tuned (or switched off) in rules.yaml."""
        return self.func is not None


REGISTRY: dict[str, Rule] = {}

# Rule ids emitted by the loader (yamlload.py, schema.py, load.py) and by custom.py.
# `schema.<keyword>` ids follow the JSON Schema keyword that failed; every keyword the
# shipped schemas use is listed (tests/validators/test_catalogue.py keeps this complete).
DECLARED = [
    ("yaml.syntax", "yaml", "error", "the file is valid YAML"),
    ("yaml.encoding", "yaml", "error", "the file is UTF-8 text"),
    ("yaml.tag", "yaml", "error", "only plain YAML types: no !!python/... or other tags"),
    ("yaml.duplicate-key", "yaml", "error", "no key appears twice in one mapping"),
    ("yaml.alias-bomb", "yaml", "error", "aliases expand to at most 100,000 values"),
    ("yaml.recursive", "yaml", "error", "no anchor contains an alias to itself"),
    ("yaml.too-large", "yaml", "error", "a file is at most 1 MiB"),
    ("yaml.too-deep", "yaml", "error", "nesting is at most 64 levels"),
    ("schema.empty", "schema", "error", "the file is not empty"),
    ("schema.non-finite", "schema", "error", "numbers are finite (no .nan, .inf)"),
    ("schema.nul-byte", "schema", "error", "no text value or key contains a NUL byte (\\0)"),
    ("schema.unknown-field", "schema", "error", "no field the schema does not define (with a 'did you mean')"),
    ("schema.required", "schema", "error", "required fields are present"),
    ("schema.type", "schema", "error", "a value has the type the schema gives (string, list…; an integer is written without a decimal point)"),
    ("schema.enum", "schema", "error", "a value is one of the allowed choices"),
    ("schema.pattern", "schema", "error", "a text value has the required form (e.g. release YYYY.N, port HOST:CONTAINER)"),
    ("schema.format", "schema", "error", "a value has the declared format (e.g. a valid regular expression)"),
    ("schema.name", "schema", "error", "a mapping's keys are valid names (e.g. environment variables)"),
    ("schema.minimum", "schema", "error", "a number is at least the allowed minimum"),
    ("schema.maximum", "schema", "error", "a number is at most the allowed maximum"),
    ("schema.exclusiveMinimum", "schema", "error", "a number is above the allowed minimum"),
    ("schema.minLength", "schema", "error", "a text value is not empty"),
    ("schema.minItems", "schema", "error", "a list has at least the required number of items"),
    ("schema.maxItems", "schema", "error", "a list has at most the allowed number of items"),
    ("schema.minProperties", "schema", "error", "a mapping has at least the required number of entries"),
    ("schema.uniqueItems", "schema", "error", "a list has no repeated items"),
    ("schema.oneOf", "schema", "error", "a value matches exactly one of the allowed forms"),
    ("semantic.stray-file", "semantic", "warning", "services/ holds only .yaml/.yml service files (others are ignored)"),
    ("semantic.duplicate-service", "semantic", "error", "a service is defined by one file (not both <name>.yaml and <name>.yml)"),
    ("semantic.symlink", "semantic", "error", "no symbolic link in a cloud's folder (never followed)"),
    ("semantic.submodule", "semantic", "error", "no git submodule in a cloud's folder (its files are not in the commit)"),
    ("semantic.config-too-large", "semantic", "error", "a config file is at most 1 MiB, a cloud's config files 32 MiB in all"),
    ("semantic.service-file-name", "semantic", "error", "a service file's name is a service name (lowercase letters, digits, '-')"),
    ("semantic.secret-undecryptable", "semantic", "error",
     "the controller (or the gate) can decrypt every secret the services use with its own key"),
    ("transition.base-invalid", "transition", "error", "the base of a change loads, so the transition rules can judge it (never skipped)"),
    ("custom.<name>", "custom", "error", "a cloud's own rule from rules.yaml (severity as the rule says)"),
    ("custom.unknown-rule", "custom", "warning", "rules.yaml tunes only rules that exist and can be tuned"),
    ("custom.bad-rule", "custom", "error", "a rule in rules.yaml can be evaluated (valid requirement, regex that finishes in time)"),
]


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
        line, col = doc.mark(hit.path, key=hit.key) if doc else (hit.line, None)
        findings.append(Finding(hit.file, line, col, hit.severity or severity, rule_id,
                                hit.message, hit.hint))
    return findings


def run(layer: str, ctx, docs: dict[str, Document], severities: dict[str, str],
        only=None) -> list[Finding]:
    """Run every registered rule of `layer` (or those of them in `only`); `severities`
    overrides defaults ('off' skips)."""
    findings = []
    for r in REGISTRY.values():
        if r.layer != layer or r.func is None or (only is not None and r.id not in only):
            continue
        severity = severities.get(r.id, r.severity)
        if severity == "off":
            continue
        findings += hits_to_findings(r.id, severity, r.func(ctx), docs)
    return findings


def severity_of(rule_id: str, overrides: dict) -> str:
    """A registered rule's severity under rules.yaml `overrides` (its default if not set)."""
    return overrides.get(rule_id, REGISTRY[rule_id].severity)


def catalogue() -> list[Rule]:
    """Every rule id a finding can carry, for `tidegate check --list-rules` and the docs."""
    from . import compat, secretrules, semantic, transition  # noqa: F401  (registration side effect)
    return sorted(REGISTRY.values(), key=lambda r: (CATALOGUE_LAYERS.index(r.layer), r.id))


for _id, _layer, _severity, _summary in DECLARED:
    REGISTRY[_id] = Rule(_id, _layer, _severity, _summary)
