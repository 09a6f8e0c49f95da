"""A cloud's own rules from clouds/<cloud>/rules.yaml — data only, never code.

Patterns (`must_match`, `must_not_match`) come from the repository, so matching them is
bounded: each match may take REGEX_TIMEOUT seconds and all of one run REGEX_BUDGET (the
`regex` module's timeout; Python's `re` cannot be interrupted). A pattern that does not
finish is a `custom.bad-rule` finding on its line of rules.yaml, never a hang.
"""
from __future__ import annotations

import fnmatch
import time

from .compat import requirement_holds
from .findings import Finding
from .releases import Release
from .rules import REGISTRY

REGEX_TIMEOUT = 0.25      # seconds one pattern may take on one value
REGEX_BUDGET = 2.0        # seconds all patterns of one run may take together
_ANY_RELEASE = Release(2025, 1)     # only to parse a requirement; its truth does not matter


def _select(rule: dict, svc) -> bool:
    names = rule.get("services")
    if names and not any(fnmatch.fnmatchcase(svc.name, pattern) for pattern in names):
        return False
    projects = rule.get("projects")
    return not projects or svc.project in projects


def _field(data: dict, dotted: str):
    value = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


class BadRule(Exception):
    """A rule that cannot be evaluated: (key of rules.yaml it is about, why)."""

    def __init__(self, key: str, why: str, hint: str):
        super().__init__(why)
        self.key, self.why, self.hint = key, why, hint


class _Matcher:
    """Bounded regular-expression matching for one run."""

    def __init__(self):
        self.deadline = time.monotonic() + REGEX_BUDGET

    def search(self, key: str, pattern: str, text: str) -> bool:
        import regex        # only when a cloud has patterns: keeps `tidegate check` start-up short
        try:
            compiled = regex.compile(pattern)
        except regex.error as err:
            raise BadRule(key, f"{key} {pattern!r} is not a valid regular expression ({err})",
                          "fix the pattern (Python regular-expression syntax)") from None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise BadRule(key, f"{key} {pattern!r} was not evaluated: the patterns of rules.yaml "
                               f"used up their {REGEX_BUDGET:g} s",
                          "simplify the patterns: anchor them and avoid nested repetition such as (a+)+")
        try:
            return compiled.search(text, timeout=min(REGEX_TIMEOUT, remaining)) is not None
        except TimeoutError:
            raise BadRule(key, f"{key} {pattern!r} did not finish within {REGEX_TIMEOUT:g} s",
                          "avoid nested repetition such as (a+)+ or (a|aa)+; it backtracks "
                          "exponentially on long values") from None


def _violation(rule: dict, data: dict, matcher: _Matcher) -> str | None:
    """Why the service's raw data breaks `rule` (None when it holds). Raises BadRule."""
    dotted = rule.get("field")
    if dotted is not None:
        value, present = _field(data, dotted)
        if "present" in rule and present != rule["present"]:
            return f"{dotted} is {'missing' if rule['present'] else 'set'}"
        if present:
            text = str(value)
            if "must_match" in rule and not matcher.search("must_match", rule["must_match"], text):
                return f"{dotted} {text!r} does not match {rule['must_match']!r}"
            if "must_not_match" in rule and matcher.search("must_not_match", rule["must_not_match"], text):
                return f"{dotted} {text!r} matches {rule['must_not_match']!r}"
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if "minimum" in rule and value < rule["minimum"]:
                    return f"{dotted} is {value}, below {rule['minimum']}"
                if "maximum" in rule and value > rule["maximum"]:
                    return f"{dotted} is {value}, above {rule['maximum']}"
    return None


def _bad_requirements(rule: dict) -> list[tuple[str, str]]:
    """(service, why) for each `requires` entry that is not a release requirement."""
    bad = []
    for other, spec in (rule.get("requires") or {}).items():
        try:
            requirement_holds(spec, _ANY_RELEASE)
        except ValueError as err:
            bad.append((other, str(err)))
    return bad


def evaluate(loaded, rule_list, rules_doc, source: str = "rules.yaml") -> list[Finding]:
    """Findings of `rule_list` (rules.yaml `rules` entries) on `loaded`'s services.
    `rules_doc` is the rules.yaml document they came from (for lines of bad rules)."""
    findings: list[Finding] = []
    cloud = loaded.cloud
    rules_file = rules_doc.file if rules_doc else f"{loaded.folder}/rules.yaml"
    matcher = _Matcher()

    def bad_rule(index: int, path: tuple, why: str, hint: str, rule_id: str) -> None:
        line, col = rules_doc.mark(("rules", index) + path) if rules_doc else (None, None)
        where = "" if source == "rules.yaml" else f" (in {source})"
        findings.append(Finding(rules_file, line, col, "error", "custom.bad-rule",
                                f"{rule_id}: {why}{where}", hint))

    for index, rule in enumerate(rule_list):
        severity = rule.get("severity", "error")
        requirements = dict(rule.get("requires") or {})
        for other, why in _bad_requirements(rule):
            bad_rule(index, ("requires", other), why, "use e.g. '>=2025.1'", rule["id"])
            requirements.pop(other)
        broken: set[str] = set()          # pattern keys that already failed: skip them
        for svc in cloud.services.values():
            if not _select(rule, svc):
                continue
            data = loaded.service_data.get(svc.name, {})
            svc_doc = loaded.docs.get(svc.file)
            active = {k: v for k, v in rule.items() if k not in broken}
            try:
                why = _violation(active, data, matcher)
            except BadRule as err:
                broken.add(err.key)
                bad_rule(index, (err.key,), f"{err.why} on field {rule['field']} of {svc.file}; "
                                            f"the pattern is not applied", err.hint, rule["id"])
                why = None
            if why is not None:
                path = tuple(rule["field"].split("."))
                line, col = svc_doc.mark(path) if svc_doc else (None, None)
                findings.append(Finding(svc.file, line, col, severity, rule["id"],
                                        f"{rule['message']} ({why})", rule.get("hint", "")))
            for other, spec in requirements.items():
                target = cloud.services.get(other)
                if target is None or not requirement_holds(spec, target.release):
                    now = target.release if target else "absent"
                    line, col = svc_doc.mark(("release",)) if svc_doc else (None, None)
                    findings.append(Finding(svc.file, line, col, severity, rule["id"],
                                            f"{rule['message']} ({svc.name} requires {other} {spec}, it is {now})",
                                            rule.get("hint", "")))
    return findings


def run(loaded) -> list[Finding]:
    """Findings of rules.yaml's `rules`, plus warnings for overrides naming unknown rules."""
    findings: list[Finding] = []
    rules_file = f"{loaded.folder}/rules.yaml"
    doc = loaded.docs.get(rules_file)
    for rule_id in (loaded.rules.get("severity") or {}):
        known = REGISTRY.get(rule_id)
        if known is None or not known.tunable:
            line, col = doc.mark(("severity", rule_id), key=True) if doc else (None, None)
            what = "unknown rule" if known is None else "rule that cannot be tuned"
            findings.append(Finding(rules_file, line, col, "warning", "custom.unknown-rule",
                                    f"severity override for {what} {rule_id!r}",
                                    "`tidegate check --list-rules` lists the rule ids; yaml.*, schema.* "
                                    "and custom.* findings cannot be tuned"))
    findings += evaluate(loaded, loaded.rules.get("rules") or (), doc)
    return findings
