"""Layers 2 and 3: every semantic and compatibility rule, failing and passing."""
import pytest
import yaml

from validators.compat import requirement_holds
from validators.releases import Release

from .helpers import BASE_CLOUD, findings_of, rules_of, service


def only(findings, rule):
    return [f for f in findings if f.rule == rule]


def test_cloud_name_must_match_folder():
    assert only(findings_of({}, {**BASE_CLOUD, "name": "other"}), "semantic.cloud-name")
    assert not only(findings_of({}), "semantic.cloud-name")


def test_service_name_must_match_file():
    assert only(findings_of({"ks": service(name="keystone")}), "semantic.service-name")
    assert not only(findings_of({"ks": service(name="ks")}), "semantic.service-name")


def test_unknown_host_is_reported_at_its_list_item():
    text = "project: keystone\nrelease: '2025.1'\nimage: a\nhosts:\n  - h1\n  - h9\n"
    found = only(findings_of({"ks": text}), "semantic.unknown-host")
    assert len(found) == 1 and "h9" in found[0].message and (found[0].line, found[0].column) == (6, 5)
    assert not only(findings_of({"ks": service(hosts=["h1", "h2"])}), "semantic.unknown-host")


def test_depends_on_missing_service():
    assert only(findings_of({"ks": service(depends_on=["db"])}), "semantic.unknown-dependency")
    assert not only(findings_of({"ks": service(depends_on=["db"]), "db": service(project="mariadb")}),
                    "semantic.unknown-dependency")


def test_dependency_cycle_is_reported_once_with_its_path():
    found = only(findings_of({"a": service(depends_on=["b"]), "b": service(depends_on=["c"]),
                              "c": service(depends_on=["a"])}), "semantic.dependency-cycle")
    assert len(found) == 1 and "a → b → c → a" in found[0].message
    assert not only(findings_of({"a": service(depends_on=["b"]), "b": service()}), "semantic.dependency-cycle")


def test_self_dependency_is_a_cycle():
    assert only(findings_of({"a": service(depends_on=["a"])}), "semantic.dependency-cycle")


def chain(length, close=False):
    """s0 → s1 → … → s(length-1), and back to s0 when `close`."""
    services = {f"s{i}": service(depends_on=[f"s{i + 1}"]) for i in range(length - 1)}
    services[f"s{length - 1}"] = service(depends_on=["s0"] if close else None)
    return services


def test_a_long_dependency_chain_is_walked_without_recursion():
    # 1,200 services deep: more than Python's default recursion limit of 1,000
    assert not only(findings_of(chain(1200)), "semantic.dependency-cycle")
    found = only(findings_of(chain(1200, close=True)), "semantic.dependency-cycle")
    assert len(found) == 1 and found[0].file.endswith("/s1199.yaml")
    assert found[0].message.startswith("dependency cycle: s0 → s1 → s2") and found[0].message.endswith("s1199 → s0")


def test_two_services_publishing_one_host_port_on_one_host():
    found = findings_of({"a": service(hosts=["h1"], ports=["5000:5000"]),
                         "b": service(hosts=["h1"], ports=["5000:80"])})
    assert only(found, "semantic.port-conflict")


def test_same_port_on_different_hosts_or_protocols_is_fine():
    assert not only(findings_of({"a": service(hosts=["h1"], ports=["5000:5000"]),
                                 "b": service(hosts=["h2"], ports=["5000:5000"])}), "semantic.port-conflict")
    assert not only(findings_of({"a": service(hosts=["h1"], ports=["53:53/udp"]),
                                 "b": service(hosts=["h1"], ports=["53:53/tcp"])}), "semantic.port-conflict")


@pytest.mark.parametrize("wildcard", [None, "", "0.0.0.0", "::"])
def test_an_all_addresses_bind_conflicts_with_a_specific_address(wildcard):
    port = {"container": 5000, "host": 5000} if wildcard is None else {"container": 5000, "host": 5000, "host_ip": wildcard}
    found = only(findings_of({"a": service(hosts=["h1"], ports=[port]),
                              "b": service(hosts=["h1"], ports=[{"container": 80, "host": 5000, "host_ip": "127.0.0.1"}])}),
                 "semantic.port-conflict")
    assert len(found) == 1 and "all addresses" in found[0].message and "127.0.0.1" in found[0].message


def test_ipv4_and_ipv6_wildcards_conflict():
    assert only(findings_of({"a": service(hosts=["h1"], ports=[{"container": 1, "host": 5000, "host_ip": "0.0.0.0"}]),
                             "b": service(hosts=["h1"], ports=[{"container": 1, "host": 5000, "host_ip": "::"}])}),
                "semantic.port-conflict")


def test_the_same_specific_address_conflicts_and_different_ones_do_not():
    def two(ip_a, ip_b):
        return findings_of({"a": service(hosts=["h1"], ports=[{"container": 1, "host": 5000, "host_ip": ip_a}]),
                            "b": service(hosts=["h1"], ports=[{"container": 1, "host": 5000, "host_ip": ip_b}])})
    assert only(two("127.0.0.1", "127.0.0.1"), "semantic.port-conflict")
    assert only(two("::1", "0:0:0:0:0:0:0:1"), "semantic.port-conflict")      # one address, two spellings
    assert not only(two("127.0.0.1", "127.0.0.2"), "semantic.port-conflict")
    assert not only(two("127.0.0.1", "::1"), "semantic.port-conflict")


@pytest.mark.parametrize("source", ["/etc/passwd", "../other/x.conf", "config/../../x.conf"])
def test_config_mount_outside_cloud_folder(source):
    found = findings_of({"ks": service(config=[{"source": source, "target": "/etc/x"}])})
    assert only(found, "semantic.config-outside")


def test_config_mount_missing_and_present():
    cfg = [{"source": "config/ks.conf", "target": "/etc/ks.conf"}]
    assert only(findings_of({"ks": service(config=cfg)}), "semantic.config-missing")
    found = findings_of({"ks": service(config=cfg)}, extra={"clouds/c/config/ks.conf": "[DEFAULT]\n"})
    assert not only(found, "semantic.config-missing") and not only(found, "semantic.config-outside")


def test_replicas_with_host_ports_exceed_hosts():
    found = only(findings_of({"ks": service(replicas=3, ports=["5000:5000"])}), "semantic.replicas-exceed-hosts")
    assert found and "at most one replica per host" in found[0].message
    assert not only(findings_of({"ks": service(replicas=2, ports=["5000:5000"])}), "semantic.replicas-exceed-hosts")
    assert not only(findings_of({"ks": service(replicas=5)}), "semantic.replicas-exceed-hosts")


def test_replicas_respect_max_per_host_and_host_capacity():
    assert only(findings_of({"ks": service(replicas=5, max_per_host=2)}), "semantic.replicas-exceed-hosts")
    cloud = {**BASE_CLOUD, "hosts": {"h1": {"engine": "podman", "max_containers": 2}}}
    assert only(findings_of({"a": service(replicas=2), "b": service()}, cloud), "semantic.replicas-exceed-hosts")
    assert not only(findings_of({"a": service(replicas=2)}, cloud), "semantic.replicas-exceed-hosts")


def test_requires_names_missing_service():
    assert only(findings_of({"p": service(requires={"keystone": ">=2025.1"})}), "semantic.unknown-requirement")
    assert not only(findings_of({"p": service(requires={"keystone": ">=2025.1"}), "keystone": service()}),
                    "semantic.unknown-requirement")


def test_build_recipe_must_exist():
    assert only(findings_of({"ks": service(build="ks")}), "semantic.build-recipe-missing")
    assert not only(findings_of({"ks": service(build="ks")}, extra={"clouds/c/images/ks.yaml": "suite: trixie\n"}),
                    "semantic.build-recipe-missing")


def test_health_port_not_listened_on_is_a_warning():
    found = only(findings_of({"ks": service(expose=[5000], health={"type": "http", "port": 8080})}),
                 "semantic.health-port")
    assert found and found[0].severity == "warning"
    assert not only(findings_of({"ks": service(expose=[5000], health={"type": "http", "port": 5000})}),
                    "semantic.health-port")


def test_no_health_check_is_a_warning():
    found = only(findings_of({"ks": service(health=None)}), "semantic.no-health")
    assert found and found[0].severity == "warning"
    assert not only(findings_of({"ks": service(health={"type": "tcp", "port": 5000})}), "semantic.no-health")
    assert not only(findings_of({"ks": service(health=None, replicas=0)}), "semantic.no-health")   # serves nothing


def test_a_file_in_services_that_is_not_yaml_is_ignored_with_a_warning():
    found = findings_of({"ks": service()}, extra={"clouds/c/services/README.md": "# notes\n"})
    stray = only(found, "semantic.stray-file")
    assert len(stray) == 1 and stray[0].file == "clouds/c/services/README.md" and stray[0].severity == "warning"
    assert not only(findings_of({"ks": service()}, extra={"clouds/c/services/nova.yml": yaml.safe_dump(service())}),
                    "semantic.stray-file")


def test_a_service_defined_by_two_files_is_an_error():
    twice = {"clouds/c/services/ks.yml": yaml.safe_dump(service())}
    found = only(findings_of({"ks": service()}, extra=twice), "semantic.duplicate-service")
    assert len(found) == 1 and found[0].file == "clouds/c/services/ks.yml" and "'ks'" in found[0].message
    assert not only(findings_of({"ks": service(), "nova": service()}), "semantic.duplicate-service")


# -- compatibility -------------------------------------------------------------

def nova(role, release, **kw):
    return service(project="nova", role=role, release=release, image=f"nova:{release}", **kw)


def test_agent_may_not_lead_control():
    found = findings_of({"api": nova("control", "2025.1"), "cpu": nova("agent", "2025.2")})
    assert only(found, "compat.agent-leads-control")
    assert not only(findings_of({"api": nova("control", "2025.2"), "cpu": nova("agent", "2025.2")}),
                    "compat.agent-leads-control")
    assert not only(findings_of({"api": nova("control", "2025.2"), "cpu": nova("agent", "2025.1")}),
                    "compat.agent-leads-control")


def test_agent_may_not_lead_any_control_service_mid_rollout():
    found = only(findings_of({"api": nova("control", "2025.2"), "cond": nova("control", "2025.1"),
                              "cpu": nova("agent", "2025.2")}), "compat.agent-leads-control")
    assert len(found) == 1 and "cond at 2025.1" in found[0].message


def test_agent_lag_is_measured_against_the_newest_control_service():
    found = only(findings_of({"nova-api": nova("control", "2025.2"), "nova-conductor": nova("control", "2025.1"),
                              "nova-compute": nova("agent", "2024.2")}), "compat.agent-lag")
    assert len(found) == 1 and "nova-api at 2025.2" in found[0].message
    assert not only(findings_of({"nova-api": nova("control", "2025.2"), "nova-conductor": nova("control", "2025.1"),
                                 "nova-compute": nova("agent", "2025.1")}), "compat.agent-lag")


def test_agent_at_the_previous_slurp_is_fine_while_controls_finish_a_skip_level_upgrade():
    found = findings_of({"api": nova("control", "2026.1"), "cond": nova("control", "2025.1"),
                         "cpu": nova("agent", "2025.1")})
    assert not only(found, "compat.agent-lag") and not only(found, "compat.agent-leads-control")


def test_agent_may_lag_one_release():
    assert not only(findings_of({"api": nova("control", "2025.2"), "cpu": nova("agent", "2025.1")}),
                    "compat.agent-lag")


def test_agent_may_lag_one_slurp_after_a_skip_level_upgrade():
    assert not only(findings_of({"api": nova("control", "2026.1"), "cpu": nova("agent", "2025.1")}),
                    "compat.agent-lag")


def test_agent_lagging_two_releases_from_non_slurp_is_rejected():
    found = findings_of({"api": nova("control", "2026.2"), "cpu": nova("agent", "2025.2")})
    assert only(found, "compat.agent-lag")


def test_control_skew_of_one_step_warns_and_more_errors():
    found = only(findings_of({"api": nova("control", "2025.2"), "cond": nova("control", "2025.1")}),
                 "compat.control-skew")
    assert found and found[0].severity == "warning"
    found = only(findings_of({"api": nova("control", "2026.2"), "cond": nova("control", "2025.2")}),
                 "compat.control-skew")
    assert found and found[0].severity == "error"
    assert not only(findings_of({"api": nova("control", "2025.1"), "cond": nova("control", "2025.1")}),
                    "compat.control-skew")


def test_cross_service_requirement():
    ks = service(release="2024.2", image="ks:2024.2")
    found = findings_of({"keystone": ks, "p": service(project="placement", requires={"keystone": ">=2025.1"})})
    assert only(found, "compat.requires")
    ks = service(release="2025.1")
    assert not only(findings_of({"keystone": ks, "p": service(project="placement", requires={"keystone": ">=2025.1"})}),
                    "compat.requires")


@pytest.mark.parametrize("spec, release, holds", [
    (">=2025.1", "2025.1", True), (">=2025.1", "2024.2", False), (">2025.1, <2026.2", "2026.1", True),
    ("==2025.2", "2025.1", False), ("!=2025.2", "2025.1", True), ("<=2024.1", "2024.2", False),
])
def test_requirement_specs(spec, release, holds):
    assert requirement_holds(spec, Release.parse(release)) is holds


# -- a cloud's own rules (rules.yaml) --------------------------------------------

RULES = """
severity:
  semantic.no-health: "off"
  semantic.nonexistent: error
rules:
  - id: custom.no-latest
    message: images must be pinned
    hint: tag images by release
    field: image
    must_not_match: ":latest$"
  - id: custom.api-replicas
    message: APIs run at least two replicas
    services: ["*-api"]
    field: replicas
    minimum: 2
  - id: custom.placement-after-keystone
    message: placement needs a current keystone
    projects: [placement]
    requires: {keystone: ">=2025.1"}
"""


def test_cloud_rules_add_checks_and_tune_severities():
    found = findings_of({"keystone": service(release="2024.2", image="ks:latest", health=None),
                         "nova-api": service(project="nova", replicas=1),
                         "placement": service(project="placement")},
                        extra={"clouds/c/rules.yaml": RULES})
    got = rules_of(found)
    assert {"custom.no-latest", "custom.api-replicas", "custom.placement-after-keystone",
            "custom.unknown-rule"} <= got
    assert "semantic.no-health" not in got
    no_latest = only(found, "custom.no-latest")[0]
    assert no_latest.file.endswith("keystone.yaml") and no_latest.hint == "tag images by release"


def test_cloud_rules_pass_when_satisfied():
    found = findings_of({"keystone": service(), "nova-api": service(project="nova", replicas=2),
                         "placement": service(project="placement")},
                        extra={"clouds/c/rules.yaml": RULES})
    assert not {"custom.no-latest", "custom.api-replicas", "custom.placement-after-keystone"} & rules_of(found)


def test_cloud_rules_file_is_schema_checked():
    found = findings_of({"ks": service()}, extra={"clouds/c/rules.yaml": "rules: [{id: nope, message: x}]\n"})
    assert any(f.rule.startswith("schema.") and f.file.endswith("rules.yaml") for f in found)


def test_a_requirement_that_is_not_one_is_a_bad_rule_on_its_line():
    rules = ("rules:\n"
             "  - id: custom.ok\n    message: fine\n    field: image\n    present: true\n"
             "  - id: custom.needs-keystone\n    message: needs keystone\n    requires:\n      keystone: 'newest'\n")
    found = findings_of({"keystone": service(), "nova": service(project="nova")},
                        extra={"clouds/c/rules.yaml": rules})
    bad = only(found, "custom.bad-rule")
    assert len(bad) == 1                                     # once, not once per service
    assert bad[0].file == "clouds/c/rules.yaml" and bad[0].line == 9      # its `keystone:` line
    assert bad[0].message.startswith("custom.needs-keystone:") and "'newest'" in bad[0].message
    good = rules.replace("'newest'", "'>=2025.1'")
    assert not only(findings_of({"keystone": service()}, extra={"clouds/c/rules.yaml": good}), "custom.bad-rule")


def regex_rule(pattern):
    return ("rules:\n  - id: custom.name-form\n    message: names have the house form\n"
            f"    field: user\n    must_match: '{pattern}'\n")


def test_a_backtracking_pattern_is_bounded_and_reported_as_a_bad_rule():
    import time
    services = {f"s{i}": service(user="a" * 40 + "!") for i in range(20)}
    start = time.monotonic()
    found = findings_of(services, extra={"clouds/c/rules.yaml": regex_rule("(a|aa)+$")})
    assert time.monotonic() - start < 10                     # exponential backtracking would never end
    bad = only(found, "custom.bad-rule")
    assert len(bad) == 1 and bad[0].file == "clouds/c/rules.yaml" and bad[0].line == 5
    assert "custom.name-form" in bad[0].message and "must_match" in bad[0].message
    assert "field user" in bad[0].message and bad[0].severity == "error"
    assert not only(found, "custom.name-form")               # not applied, so no verdict either way


def test_the_classic_catastrophic_pattern_gets_a_verdict_in_time():
    import time
    start = time.monotonic()
    found = findings_of({"ks": service(user="a" * 5000 + "!")}, extra={"clouds/c/rules.yaml": regex_rule("^(a+)+$")})
    assert time.monotonic() - start < 10
    assert only(found, "custom.name-form") or only(found, "custom.bad-rule")
    assert not only(findings_of({"ks": service(user="aaaa")}, extra={"clouds/c/rules.yaml": regex_rule("^(a+)+$")}),
                    "custom.name-form")


def test_many_slow_patterns_share_one_time_budget():
    import time

    from validators.custom import REGEX_BUDGET
    rules = "rules:\n" + "".join(
        f"  - id: custom.slow-{i}\n    message: slow\n    field: user\n    must_match: '(a|aa)+${i}'\n"
        for i in range(12))
    start = time.monotonic()
    found = findings_of({"ks": service(user="a" * 40 + "!")}, extra={"clouds/c/rules.yaml": rules})
    assert time.monotonic() - start < REGEX_BUDGET + 3
    bad = only(found, "custom.bad-rule")
    assert len(bad) == 12 and any("used up" in f.message for f in bad)


def test_tuning_a_rule_that_cannot_be_tuned_is_flagged():
    found = only(findings_of({"ks": service()}, extra={"clouds/c/rules.yaml": "severity:\n  yaml.syntax: 'off'\n"}),
                 "custom.unknown-rule")
    assert len(found) == 1 and "cannot be tuned" in found[0].message and found[0].line == 2
    assert not only(findings_of({"ks": service()}, extra={"clouds/c/rules.yaml": "severity:\n  semantic.no-health: 'off'\n"}),
                    "custom.unknown-rule")


def test_a_hook_folder_naming_neither_a_service_nor_a_project_is_reported():
    hook = "#!/bin/sh\nexit 0\n"
    services = {"cinder-api": service(project="cinder", image="c:1"), "keystone": service()}
    found = findings_of(services, extra={"clouds/c/tests/cinder/verify": hook,        # a project: runs
                                         "clouds/c/tests/keystone/create": hook,      # a service: runs
                                         "clouds/c/tests/lib/os_api.py": "x = 1\n",   # helpers, no hook
                                         "clouds/c/tests/keystne/create": hook,       # a typo: never runs
                                         "clouds/c/tests/gate.yaml": "{}\n"})
    hits = [f for f in found if f.rule == "semantic.unknown-hook-folder"]
    assert [(f.file, f.severity) for f in hits] == [("clouds/c/tests/keystne/create", "warning")]
    assert "'keystne' is neither a service nor a project" in hits[0].message
