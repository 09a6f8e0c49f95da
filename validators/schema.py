"""Layer 1: JSON Schema (Draft 2020-12) with errors mapped back to YAML lines."""
from __future__ import annotations

import difflib
import functools
import json
import math
from pathlib import Path

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from .findings import Finding
from .yamlload import Document

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
KINDS = ("cloud", "service", "rules")


@functools.lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())


@functools.lru_cache(maxsize=None)
def _validator(kind: str) -> Draft202012Validator:
    resources = []
    for k in KINDS:
        s = schema(k)
        resource = Resource.from_contents(s)
        resources += [(s["$id"], resource), (f"{k}.schema.json", resource)]
    registry = Registry().with_resources(resources)
    return Draft202012Validator(schema(kind), registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.lru_cache(maxsize=None)
def _fast(kind: str):
    """A compiled validator (fastjsonschema): ~10x faster than jsonschema on valid
    documents, which are nearly all of them. It only says valid/invalid; an invalid
    document is re-validated by jsonschema, the reference implementation, for precise
    errors. tests/validators/test_loading.py keeps the two in agreement."""
    def by_file_name(uri: str) -> dict:
        return schema(uri.rsplit("/", 1)[-1].split(".", 1)[0])
    # use_default=False: never write schema defaults into the data (the model applies them)
    return fastjsonschema.compile(schema(kind), handlers={"https": by_file_name}, use_default=False)


def is_valid(data, kind: str) -> bool:
    try:
        _fast(kind)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _path_text(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error) -> tuple[list, str, str, bool, object]:
    """(path, message, rule suffix, point-at-key, error to take the hint from) for one
    jsonschema error."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Of the alternatives, explain the one meant for this kind of value (a port
        # "99999:5000" failed the string form's pattern, not the object form's type).
        same_type = [e for e in error.context if e.validator != "type"]
        inner = best_match(same_type or error.context)
        return _describe(inner)
    path = list(error.absolute_path)
    where = _path_text(path)
    kind = error.validator
    if "propertyNames" in error.schema_path:
        # the error is about a key (jsonschema reports the keyword that failed on it)
        rule = f" (names match {error.validator_value!r})" if error.validator == "pattern" else ""
        return (path + [error.instance], f"{where}: invalid name {error.instance!r}{rule}", "name", True, error)
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in known]
        if extras:
            extra = extras[0]
            close = difflib.get_close_matches(str(extra), known, n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(known) if known else "none"
            return (path + [extra],
                    f"{_path_text(path + [extra])}: unknown field{suggestion} (allowed here: {allowed})",
                    "unknown-field", True, error)
    if kind == "required":
        return path, f"{where}: {error.message}", "required", True, error
    if kind == "pattern":
        # the hint (the field's description) says the form in words; the regex would not
        return path, f"{where}: {error.instance!r} does not have the required form", kind, False, error
    return path, f"{where}: {error.message}", kind, False, error


def _hint(error, kind: str) -> str:
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return description or f"see `tidegate schema {kind}` for the allowed fields and values"


def _non_finite(data, path=()):
    """Paths of NaN and infinite numbers (YAML .nan, .inf): JSON has no such numbers, and
    JSON Schema bounds do not catch NaN (every comparison with it is false)."""
    stack = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield where, value
        elif isinstance(value, dict):
            stack += [(v, where + (k,)) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, where + (i,)) for i, v in enumerate(value)]


def validate(doc: Document, kind: str) -> list[Finding]:
    """Schema findings for a loaded document of `kind` (cloud | service | rules)."""
    if doc.data is None:
        return [Finding(doc.file, 1, 1, "error", "schema.empty", "the file is empty",
                        f"see `tidegate schema {kind}` for what it must contain")]
    findings = []
    non_finite = set()
    for path, value in sorted(_non_finite(doc.data), key=lambda item: list(map(str, item[0]))):
        non_finite.add(path)
        line, col = doc.mark(path)
        findings.append(Finding(doc.file, line, col, "error", "schema.non-finite",
                                f"{_path_text(path)}: {value} is not a finite number",
                                "write a plain number of seconds (e.g. 30); .nan and .inf are not allowed"))
    if not findings and is_valid(doc.data, kind):
        return []
    for error in sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        if tuple(error.absolute_path) in non_finite:
            continue                # already reported, more plainly
        path, message, rule, at_key, source = _describe(error)
        line, col = doc.mark(tuple(path), key=at_key)
        findings.append(Finding(doc.file, line, col, "error", f"schema.{rule}", message,
                                _hint(source, kind)))
    return findings
