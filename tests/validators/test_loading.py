"""Layer 1 and bad input: strict YAML, schema errors on the right line."""
import pytest

from validators.yamlload import MAX_EXPANDED_NODES, YamlError, load

from .helpers import findings_of, rules_of, service


def test_marks_point_at_values_and_keys():
    doc = load(b"a: 1\nb:\n  c: [1, 2]\n", "f.yaml")
    assert doc.mark(("b", "c", 1)) == (3, 10)
    assert doc.mark(("b", "c"), key=True) == (3, 3)
    assert doc.mark(("b", "missing")) == (3, 3)   # falls back to the parent


def test_duplicate_keys_are_reported_with_both_lines():
    found = findings_of({"ks": "project: keystone\nrelease: '2025.1'\nimage: a\nrelease: '2025.2'\n"})
    dup = [f for f in found if f.rule == "yaml.duplicate-key"]
    assert len(dup) == 1 and dup[0].line == 4 and "first at line 2" in dup[0].message


def test_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = f"a: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(YamlError) as err:
        load(text.encode(), "f.yaml")
    assert err.value.finding.rule == "yaml.tag" and not marker.exists()


def test_alias_bomb_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(YamlError) as err:
        load("\n".join(lines).encode(), "f.yaml")
    assert err.value.finding.rule == "yaml.alias-bomb"
    assert str(MAX_EXPANDED_NODES) in err.value.finding.message


def test_modest_anchors_and_merge_keys_are_fine():
    doc = load(b"base: &b {interval: 2, retries: 3}\nhealth:\n  <<: *b\n  retries: 5\n", "f.yaml")
    assert doc.data["health"] == {"interval": 2, "retries": 5}


def test_malformed_yaml_names_line_and_column():
    found = findings_of({"ks": "project: keystone\nrelease: [2025.1\n"})
    syntax = [f for f in found if f.rule == "yaml.syntax"]
    assert syntax and syntax[0].line is not None and syntax[0].file.endswith("ks.yaml")


def test_huge_file_is_refused_before_parsing():
    found = findings_of({"ks": "# " + "x" * (50 << 20) + "\n"})
    assert "yaml.too-large" in rules_of(found)


def test_deep_nesting_is_refused():
    with pytest.raises(YamlError) as err:
        load(b"a: " + b"[" * 5000 + b"]" * 5000, "f.yaml")
    assert err.value.finding.rule == "yaml.too-deep"


def test_dates_stay_strings():
    assert load(b"release: 2025-01-01\n", "f.yaml").data == {"release": "2025-01-01"}


def test_schema_error_points_at_the_offending_line():
    found = findings_of({"ks": "project: keystone\nrelease: '2025.1'\nimage: a\nreplicas: -1\n"})
    bad = [f for f in found if f.rule == "schema.minimum"]
    assert bad and bad[0].line == 4 and "replicas" in bad[0].message
    assert bad[0].hint.startswith("How many containers")


def test_unknown_field_suggests_the_right_one():
    found = findings_of({"ks": service(replicaz=2)})
    bad = [f for f in found if f.rule == "schema.unknown-field"]
    assert bad and "did you mean 'replicas'" in bad[0].message


def test_release_must_be_a_series_string():
    found = findings_of({"ks": "project: keystone\nrelease: 2025.1\nimage: a\n"})
    assert any(f.rule == "schema.type" and "release" in f.message for f in found)


def test_missing_required_field_is_named():
    found = findings_of({"ks": {"project": "keystone", "image": "a"}})
    assert any(f.rule == "schema.required" and "'release'" in f.message for f in found)


def test_health_check_needs_its_port_or_command():
    found = findings_of({"ks": service(health={"type": "exec"})})
    assert any(f.rule == "schema.required" and "command" in f.message for f in found)


def test_valid_service_has_no_findings():
    assert findings_of({"ks": service()}) == []


def test_empty_file_is_an_error():
    assert "schema.empty" in rules_of(findings_of({"ks": ""}))


def test_bad_files_do_not_hide_other_files_findings():
    found = findings_of({"bad": "a: [\n", "ok": service(depends_on=["nope"])})
    assert {"yaml.syntax", "semantic.unknown-dependency"} <= rules_of(found)


AGREEMENT_SAMPLES = [
    {"project": "k", "release": "2025.1", "image": "a"},
    {"project": "k", "release": "2025.1", "image": "a", "replicas": -1},
    {"project": "k", "release": "2025.3", "image": "a"},
    {"project": "k", "release": "2025.1", "image": "a", "ports": ["5000:5000", {"container": 80}]},
    {"project": "k", "release": "2025.1", "image": "a", "ports": ["5000"]},
    {"project": "k", "release": "2025.1", "image": "a", "health": {"type": "exec"}},
    {"project": "k", "release": "2025.1", "image": "a", "health": {"type": "http", "port": 80, "bogus": 1}},
    {"project": "k", "release": "2025.1", "image": "a", "health": {"type": "tcp", "port": 80, "interval": 0}},
    {"project": "k", "release": "2025.1", "image": "a", "command": []},
    {"project": "k", "release": "2025.1", "image": "a", "command": "run"},
    {"project": "k", "release": "2025.1", "image": "a", "environment": {"1BAD": "x"}},
    {"project": "k", "release": "2025.1", "image": "a", "requires": {"keystone": ">=2025.1, <2026.2"}},
    {"project": "k", "release": "2025.1", "image": "a", "requires": {"keystone": "~2025.1"}},
    {"project": "k", "release": "2025.1", "image": "a", "upgrade": {"jobs": {"expand": [{"command": ["x"], "timeout": 0}]}}},
    {"project": "k", "release": "2025.1", "image": "a", "ulimits": {"nofile": [1, 2, 3]}},
    {"project": "k", "release": "2025.1", "image": "a", "hosts": ["a", "a"]},
    {"project": "k", "release": "2025.1", "image": "a", "volumes": [{"name": "v", "path": "relative"}]},
]


@pytest.mark.parametrize("data", AGREEMENT_SAMPLES)
def test_fast_schema_gate_agrees_with_jsonschema(data):
    from validators.schema import _validator, is_valid
    assert is_valid(data, "service") == _validator("service").is_valid(data)


def test_fast_schema_gate_agrees_on_cloud_files():
    from validators.schema import _validator, is_valid
    samples = [{"name": "c", "hosts": {"h": {"engine": "podman"}}},
               {"name": "c", "hosts": {"h": {"engine": "lxc"}}},
               {"name": "c", "hosts": {"h": {"engine": "docker", "url": "http://x"}}},
               {"name": "c", "hosts": {"h": {"engine": "docker"}}, "defaults": {"stop_grace": -1}},
               {"name": "c", "hosts": {"h": {"engine": "docker"}}, "defaults": {"upgrade": {"strategy": "blue"}}},
               {"name": "C", "hosts": {}}]
    for data in samples:
        assert is_valid(data, "cloud") == _validator("cloud").is_valid(data), data
