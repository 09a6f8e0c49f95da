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
    {"project": "k", "release": "2025.1", "image": "a", "ports": ["99999:5000"]},
    {"project": "k", "release": "2025.1", "image": "a", "ports": ["0:5000"]},
    {"project": "k", "release": "2025.1", "image": "a", "ports": ["65535:1/udp"]},
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


def test_a_file_that_is_not_utf8_is_named_with_the_line():
    found = findings_of({"ks": b"project: keystone\nimage: caf\xe9\n"})
    bad = [f for f in found if f.rule == "yaml.encoding"]
    assert len(bad) == 1 and bad[0].file.endswith("ks.yaml") and (bad[0].line, bad[0].column) == (2, 11)
    assert not rules_of(findings_of({"ks": service(description="café ☕")})) & {"yaml.encoding"}


def test_an_anchor_containing_itself_is_refused():
    with pytest.raises(YamlError) as err:
        load(b"a: &x\n  b: *x\n", "f.yaml")
    assert err.value.finding.rule == "yaml.recursive" and err.value.finding.line == 1
    assert load(b"a: &x {b: 1}\nc: *x\n", "f.yaml").data == {"a": {"b": 1}, "c": {"b": 1}}


@pytest.mark.parametrize("port", ["99999:5000", "0:5000", "5000:0", "65536:80", "05000:5000", "5000:5000/sctp"])
def test_short_port_form_is_limited_to_real_ports(port):
    found = loading_findings(findings_of({"ks": service(ports=[port])}))
    assert [f.rule for f in found] == ["schema.pattern"] and "ports[0]" in found[0].message
    assert "1-65535" in found[0].hint


def loading_findings(found):
    return [f for f in found if f.rule.startswith(("yaml.", "schema."))]


@pytest.mark.parametrize("port", ["1:1", "5000:5000", "65535:65535/udp", "8080:80/tcp"])
def test_short_port_form_accepts_every_real_port(port):
    assert loading_findings(findings_of({"ks": service(ports=[port])})) == []


NON_FINITE = [
    ("stop_grace: {}\n", 4, "stop_grace"),
    ("health: {{type: tcp, port: 5000, interval: {}}}\n", 4, "health.interval"),
    ("health: {{type: tcp, port: 5000, timeout: {}}}\n", 4, "health.timeout"),
    ("upgrade:\n  jobs:\n    migrate:\n      - command: [x]\n        timeout: {}\n", 8, "upgrade.jobs.migrate[0].timeout"),
]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
@pytest.mark.parametrize("fragment, line, field", NON_FINITE)
def test_non_finite_numbers_are_refused_at_their_line(fragment, line, field, value):
    text = "project: keystone\nrelease: '2025.1'\nimage: a\n" + fragment.format(value)
    found = findings_of({"ks": text})
    assert [(f.rule, f.line) for f in found] == [("schema.non-finite", line)]
    assert found[0].message.startswith(f"{field}: ") and "not a finite number" in found[0].message


@pytest.mark.parametrize("fragment, line, field", NON_FINITE)
def test_finite_numbers_in_the_same_places_pass(fragment, line, field):
    text = "project: keystone\nrelease: '2025.1'\nimage: a\n" + fragment.format("2.5")
    assert loading_findings(findings_of({"ks": text})) == []


def test_non_finite_defaults_in_cloud_yaml_are_refused():
    cloud = "name: c\nhosts: {h1: {engine: podman}}\ndefaults:\n  stop_grace: .nan\n"
    found = findings_of({}, extra={"clouds/c/cloud.yaml": cloud})
    assert [(f.rule, f.file, f.line) for f in found] == [("schema.non-finite", "clouds/c/cloud.yaml", 4)]


def test_a_cloud_name_that_is_not_one_folder_is_a_repository_error():
    from validators.load import RepoError, load_cloud
    from validators.tree import MemoryTree

    from .helpers import files
    tree = MemoryTree(files({"ks": service()}))
    for name in ("", "..", "c/../c", "c/"):
        with pytest.raises(RepoError, match="invalid cloud name"):
            load_cloud(tree, name)
    assert load_cloud(tree, "c").cloud is not None


def test_an_invalid_environment_name_is_named_at_its_key():
    found = findings_of({"ks": "project: k\nrelease: '2025.1'\nimage: a\nenvironment:\n  OK: 1\n  1BAD: x\n"})
    assert [(f.rule, f.line) for f in found] == [("schema.name", 6)] and "'1BAD'" in found[0].message
    assert loading_findings(findings_of({"ks": service(environment={"OK_1": "x"})})) == []
