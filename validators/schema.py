"""Layer 1: JSON Schema (Draft 2020-12) with errors mapped back to YAML lines."""
from __future__ import annotations

import difflib
import functools
import json
import math
from importlib import resources

import fastjsonschema
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from .findings import Finding
from .yamlload import Document, YamlError, load

KINDS = ("cloud", "service", "rules", "gate", "recipe")


@functools.lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    # the top-level `schema` package: the checkout's folder, or the installed copy in a wheel
    return json.loads(resources.files("schema").joinpath(f"{kind}.schema.json").read_text(encoding="utf-8"))


def _whole_number(_checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Draft 2020-12 counts 1.0 as an integer; Python does not (range(1.0), unpacking…).
# YAML `replicas: 1.0` is a float, so "integer" here means an int as written.
_Strict = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _whole_number))


@functools.lru_cache(maxsize=None)
def _validator(kind: str) -> Draft202012Validator:
    resources = []
    for k in KINDS:
        s = schema(k)
        resource = Resource.from_contents(s)
        resources += [(s["$id"], resource), (f"{k}.schema.json", resource)]
    registry = Registry().with_resources(resources)
    return _Strict(schema(kind), registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


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
    if any(what == "whole" for _path, _value, what in _suspects(data)):
        return _validator(kind).is_valid(data)     # fastjsonschema takes 1.0 for an integer
    return _fast_valid(data, kind)


def _fast_valid(data, kind: str) -> bool:
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


def _meant(error):
    """Of a oneOf's alternatives, the error of the one meant for this kind of value: a port
    "99999:5000" failed the string form's pattern, not the object form's type; a port
    {container: 5000.0} failed the object form at its container, not the string form."""
    alternatives: dict = {}
    for e in error.context:
        alternatives.setdefault(e.relative_schema_path[0], []).append(e)
    fitting = [errors for errors in alternatives.values()
               if not any(e.validator == "type" and not e.relative_path for e in errors)]
    if len(fitting) == 1:
        return best_match(fitting[0])
    whole = [e for e in error.context if e.validator == "type" and isinstance(e.instance, float)
             and "integer" in _types(e.validator_value)]
    if whole:
        return whole[0]             # 1024.0 for "a number or a list": the number was meant
    same_type = [e for e in error.context if e.validator != "type"]
    return best_match(same_type or error.context)


def _describe(error) -> tuple[list, str, str, bool, object]:
    """(path, message, rule suffix, point-at-key, error to take the hint from) for one
    jsonschema error."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _describe(_meant(error))
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
    if kind == "type" and isinstance(error.instance, float) and "integer" in _types(error.validator_value):
        return (path, f"{where}: {error.instance!r}: expected a whole number without a decimal point"
                      f" (write {int(error.instance)})", kind, False, error)
    if kind == "pattern":
        # the hint (the field's description) says the form in words; the regex would not
        return path, f"{where}: {error.instance!r} does not have the required form", kind, False, error
    return path, f"{where}: {error.message}", kind, False, error


def _types(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _hint(error, kind: str) -> str:
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return description or f"see `tidegate schema {kind}` for the allowed fields and values"


def _suspects(data):
    """(path, value, what) of values JSON Schema cannot judge as meant:
    - "non-finite": NaN and infinite numbers (YAML .nan, .inf): JSON has no such numbers,
      and JSON Schema bounds do not catch NaN (every comparison with it is false);
    - "nul": text with a NUL byte (YAML "\\0"), as a value or as a key: no engine passes
      one to a container, and Python refuses it in an argument or environment value;
    - "key": a key YAML did not read as text (`1:`, `on:`, `null:`): names are text, and
      Python cannot even sort a mapping of text and numbers;
    - "whole": floats with no fractional part (1.0), which Draft 2020-12 takes for
      integers: the strict validator refuses them where the schema says integer."""
    stack = [(data, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                yield where, value, "non-finite"
            elif value.is_integer():
                yield where, value, "whole"
        elif isinstance(value, str):
            if "\0" in value:
                yield where, value, "nul"
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    yield where + (k,), k, "key"
                elif "\0" in k:
                    yield where + (k,), k, "nul"
                else:
                    stack.append((v, where + (k,)))
        elif isinstance(value, list):
            stack += [(v, where + (i,)) for i, v in enumerate(value)]


_PLAIN = {
    "non-finite": ("schema.non-finite", "{value} is not a finite number",
                   "write a plain number of seconds (e.g. 30); .nan and .inf are not allowed"),
    "nul": ("schema.nul-byte", "contains a NUL byte (\\0)",
            "remove the \\0 escape: no container engine passes a NUL byte on"),
    "key": ("schema.type", "key {value} is not text",
            "quote the key: YAML reads unquoted on/off/yes/no as booleans, digits as numbers, ~ and null as nothing"),
}


def validate(doc: Document, kind: str) -> list[Finding]:
    """Schema findings for a loaded document of `kind` (cloud | service | rules)."""
    if doc.data is None:
        return [Finding(doc.file, 1, 1, "error", "schema.empty", "the file is empty",
                        f"see `tidegate schema {kind}` for what it must contain")]
    findings = []
    reported = set()
    suspects = sorted(_suspects(doc.data), key=lambda item: list(map(str, item[0])))
    for path, value, what in suspects:
        if what not in _PLAIN:
            continue
        rule, message, hint = _PLAIN[what]
        reported.add(path)
        line, col = doc.mark(path, key=bool(path) and value is path[-1])
        findings.append(Finding(doc.file, line, col, "error", rule,
                                f"{_path_text(path[:-1] if what == 'key' else path)}: {message.format(value=value)}",
                                hint))
    if not suspects and _fast_valid(doc.data, kind):
        return []
    for error in sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        if tuple(error.absolute_path) in reported:
            continue                # already reported, more plainly
        path, message, rule, at_key, source = _describe(error)
        if tuple(path) in reported:
            continue                # a key that is no text, judged by propertyNames
        line, col = doc.mark(tuple(path), key=at_key)
        findings.append(Finding(doc.file, line, col, "error", f"schema.{rule}", message,
                                _hint(source, kind)))
    return findings


class InvalidFile(Exception):
    """A file that is not valid YAML or not valid against its schema: the message is one
    line naming the file, line, field and rule id (the first finding)."""

    def __init__(self, findings: list[Finding]):
        first = findings[0]
        super().__init__(f"{first.location()}: {first.message} [{first.rule}]")
        self.findings = findings


def load_checked(text: bytes, file: str, kind: str):
    """The data of one file of `kind`, loaded strictly (no tags, duplicate keys, alias
    bombs) and valid against its schema; raises InvalidFile otherwise."""
    try:
        doc = load(text, file)
    except YamlError as err:
        raise InvalidFile([err.finding]) from None
    findings = doc.duplicates + validate(doc, kind)
    if findings:
        raise InvalidFile(findings)
    return doc.data
