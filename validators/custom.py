"""A cloud's own rules from clouds/<cloud>/rules.yaml — data only, never code."""
from __future__ import annotations

import fnmatch
import re

from .compat import requirement_holds
from .findings import Finding
from .rules import REGISTRY


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


def _violation(rule: dict, data: dict) -> str | None:
    """Why the service's raw data breaks `rule` (None when it holds)."""
    dotted = rule.get("field")
    if dotted is not None:
        value, present = _field(data, dotted)
        if "present" in rule and present != rule["present"]:
            return f"{dotted} is {'missing' if rule['present'] else 'set'}"
        if present:
            text = str(value)
            if "must_match" in rule and not re.search(rule["must_match"], text):
                return f"{dotted} {text!r} does not match {rule['must_match']!r}"
            if "must_not_match" in rule and re.search(rule["must_not_match"], text):
                return f"{dotted} {text!r} matches {rule['must_not_match']!r}"
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if "minimum" in rule and value < rule["minimum"]:
                    return f"{dotted} is {value}, below {rule['minimum']}"
                if "maximum" in rule and value > rule["maximum"]:
                    return f"{dotted} is {value}, above {rule['maximum']}"
    return None


def run(loaded) -> list[Finding]:
    """Findings of rules.yaml's `rules`, plus warnings for overrides naming unknown rules."""
    findings: list[Finding] = []
    cloud = loaded.cloud
    rules_file = f"{loaded.folder}/rules.yaml"
    doc = loaded.docs.get(rules_file)
    for rule_id in (loaded.rules.get("severity") or {}):
        if rule_id not in REGISTRY:
            line, col = doc.mark(("severity", rule_id), key=True) if doc else (None, None)
            findings.append(Finding(rules_file, line, col, "warning", "custom.unknown-rule",
                                    f"severity override for unknown rule {rule_id!r}",
                                    "`tidegate check --list-rules` lists the rule ids"))
    for rule in loaded.rules.get("rules") or ():
        severity = rule.get("severity", "error")
        for svc in cloud.services.values():
            if not _select(rule, svc):
                continue
            data = loaded.service_data.get(svc.name, {})
            svc_doc = loaded.docs.get(svc.file)
            why = _violation(rule, data)
            if why is not None:
                path = tuple(rule["field"].split("."))
                line, col = svc_doc.mark(path) if svc_doc else (None, None)
                findings.append(Finding(svc.file, line, col, severity, rule["id"],
                                        f"{rule['message']} ({why})", rule.get("hint", "")))
            for other, spec in (rule.get("requires") or {}).items():
                target = cloud.services.get(other)
                try:
                    holds = target is not None and requirement_holds(spec, target.release)
                except ValueError as err:
                    line, col = doc.mark(("rules",), key=True) if doc else (None, None)
                    findings.append(Finding(rules_file, line, col, "error", "custom.bad-rule",
                                            f"{rule['id']}: {err}", "use e.g. '>=2025.1'"))
                    continue
                if not holds:
                    now = target.release if target else "absent"
                    line, col = svc_doc.mark(("release",)) if svc_doc else (None, None)
                    findings.append(Finding(svc.file, line, col, severity, rule["id"],
                                            f"{rule['message']} ({svc.name} requires {other} {spec}, it is {now})",
                                            rule.get("hint", "")))
    return findings
