"""Layer 1: JSON Schema (Draft 2020-12) with errors mapped back to YAML lines."""
from __future__ import annotations

import difflib
import functools
import json
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


def _describe(error) -> tuple[list, str, str, bool]:
    """(path, message, rule suffix, point-at-key) for one jsonschema error."""
    path = list(error.absolute_path)
    where = _path_text(path)
    kind = error.validator
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
                    "unknown-field", True)
    if kind == "required":
        return path, f"{where}: {error.message}", "required", True
    if kind in ("oneOf", "anyOf") and error.context:
        inner = best_match(error.context)
        inner_path = list(inner.absolute_path)
        return inner_path, f"{_path_text(inner_path)}: {inner.message}", inner.validator, False
    if kind == "propertyNames":
        return path, f"{where}: invalid name: {error.message}", "name", True
    return path, f"{where}: {error.message}", kind, False


def _hint(error, kind: str) -> str:
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return description or f"see `tidegate schema {kind}` for the allowed fields and values"


def validate(doc: Document, kind: str) -> list[Finding]:
    """Schema findings for a loaded document of `kind` (cloud | service | rules)."""
    if doc.data is None:
        return [Finding(doc.file, 1, 1, "error", "schema.empty", "the file is empty",
                        f"see `tidegate schema {kind}` for what it must contain")]
    if is_valid(doc.data, kind):
        return []
    findings = []
    for error in sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        path, message, rule, at_key = _describe(error)
        line, col = doc.mark(tuple(path), key=at_key)
        findings.append(Finding(doc.file, line, col, "error", f"schema.{rule}", message,
                                _hint(error, kind)))
    return findings
