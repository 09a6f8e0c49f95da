"""`tidegate check --list-rules` (rules.catalogue()) names every rule id a finding can
carry — registered rules and those the loader, the schema layer and rules.yaml emit —
each with one line, and the README's rule list names them all."""
import json
import re
from pathlib import Path

from validators.rules import catalogue

from .test_cli_check import tidegate

ROOT = Path(__file__).resolve().parents[2]
IDS = {r.id for r in catalogue()}

# JSON Schema keywords that never fail on their own: annotations, references, and
# applicators whose sub-schemas' errors are reported under the failing keyword.
NOT_ASSERTIONS = {"$schema", "$id", "$ref", "$defs", "title", "description", "default",
                  "properties", "items", "allOf", "then", "else"}
RULE_OF_KEYWORD = {"additionalProperties": "unknown-field", "propertyNames": "name"}


def schema_keywords(node, found):
    """Assertion keywords of a schema; `if` sub-schemas only select, they never fail."""
    if isinstance(node, list):
        for item in node:
            schema_keywords(item, found)
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        if key == "if":
            continue
        if key not in NOT_ASSERTIONS and not (key == "additionalProperties" and value is not False):
            found.add(key)
        if key in ("properties", "$defs"):
            for sub in value.values():
                schema_keywords(sub, found)
        elif isinstance(value, (dict, list)):
            schema_keywords(value, found)
    return found


def test_every_rule_id_in_the_validators_code_is_catalogued():
    literal = re.compile(r'"((?:yaml|schema|semantic|compat|transition|custom)\.[a-z][A-Za-z-]*)"')
    used = set()
    for path in (ROOT / "validators").glob("*.py"):
        used |= set(literal.findall(path.read_text()))
    assert len(used) > 30
    assert used - IDS == set()


def test_every_schema_keyword_that_can_fail_has_its_rule_id():
    keywords = set()
    for path in (ROOT / "schema").glob("*.schema.json"):
        schema_keywords(json.loads(path.read_text()), keywords)
    assert {"type", "pattern", "required", "additionalProperties", "minimum"} <= keywords
    expected = {f"schema.{RULE_OF_KEYWORD.get(k, k)}" for k in keywords}
    assert expected - IDS == set()


def test_every_rule_has_a_one_line_summary():
    for r in catalogue():
        assert r.summary.strip() and "\n" not in r.summary, r.id
        assert r.severity in ("error", "warning", "info"), r.id


def test_list_rules_prints_one_line_per_rule():
    proc = tidegate("check", "--list-rules")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == len(IDS)
    listed = {line.split()[0] for line in lines}
    assert listed == IDS
    assert {"yaml.syntax", "yaml.recursive", "schema.unknown-field", "schema.non-finite",
            "semantic.stray-file", "semantic.duplicate-service", "custom.bad-rule",
            "custom.unknown-rule", "custom.<name>", "transition.rules-loosened"} <= listed


def test_list_rules_json_carries_the_layers():
    rules = json.loads(tidegate("check", "--list-rules", "--json").stdout)
    layers = {r["id"]: r["layer"] for r in rules}
    assert layers["yaml.tag"] == "yaml" and layers["schema.required"] == "schema"
    assert layers["custom.bad-rule"] == "custom" and layers["compat.agent-lag"] == "compat"


def test_the_readme_names_every_rule():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(rule_id for rule_id in IDS if f"`{rule_id}`" not in readme)
    assert missing == []
