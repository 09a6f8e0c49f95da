"""A change is judged by the rules that govern it before it merges: per rule the stricter
of the base's and the head's severity, the base's own rules.yaml rules, and every policy
on in base or head. A pull request may tighten them, never loosen what judges it."""
import yaml

from .helpers import BASE_CLOUD, findings_of, rules_of, service, transition_findings

RULES = "clouds/c/rules.yaml"


def ks(release, image=None, **kw):
    return service(release=release, image=image or f"tidegate/keystone:{release}", **kw)


def rules_yaml(severity=None, rules=None) -> dict:
    data = {}
    if severity:
        data["severity"] = severity
    if rules:
        data["rules"] = rules
    return {RULES: yaml.safe_dump(data)}


def only(findings, rule):
    return [f for f in findings if f.rule == rule]


# -- severities ----------------------------------------------------------------

def test_a_change_cannot_switch_off_the_rule_that_blocks_it():
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2026.2")},
                                new_extra=rules_yaml({"transition.upgrade-path": "off"}))
    blocked = only(found, "transition.upgrade-path")
    assert blocked and blocked[0].severity == "error"
    loosened = only(found, "transition.rules-loosened")
    assert len(loosened) == 1 and loosened[0].severity == "info"
    assert loosened[0].file == RULES and loosened[0].line == 2
    assert "transition.upgrade-path from error to off" in loosened[0].message
    assert "after this one merges" in loosened[0].hint


def test_a_rule_switched_off_in_the_base_stays_off():
    off = rules_yaml({"transition.upgrade-path": "off"})
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2026.2")}, base_extra=off, new_extra=off)
    assert not only(found, "transition.upgrade-path") and not only(found, "transition.rules-loosened")


def test_lowering_a_severity_does_not_lower_it_for_this_change():
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2026.2")},
                                new_extra=rules_yaml({"transition.upgrade-path": "warning"}))
    assert [f.severity for f in only(found, "transition.upgrade-path")] == ["error"]
    assert "from error to warning" in only(found, "transition.rules-loosened")[0].message


def test_removing_a_base_override_that_raised_a_rule_is_loosening():
    strict = rules_yaml({"transition.image-without-tag-change": "error"})
    change = ({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="other/keystone:2025.1")})
    found = transition_findings(*change, base_extra=strict)
    assert [f.severity for f in only(found, "transition.image-without-tag-change")] == ["error"]
    assert "from error to warning" in only(found, "transition.rules-loosened")[0].message
    found = transition_findings(*change)                    # neither raises it: its default
    assert [f.severity for f in only(found, "transition.image-without-tag-change")] == ["warning"]


def test_a_change_may_tighten_the_rules_that_judge_it():
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="other/keystone:2025.1")},
                                new_extra=rules_yaml({"transition.image-without-tag-change": "error"}))
    assert [f.severity for f in only(found, "transition.image-without-tag-change")] == ["error"]
    assert not only(found, "transition.rules-loosened")


def test_a_state_rule_switched_off_by_the_change_still_applies_to_it():
    base = {"a": service(hosts=["h1"], ports=["5000:5000"]), "b": service(hosts=["h1"], ports=["6000:80"])}
    head = {"a": base["a"], "b": service(hosts=["h1"], ports=["5000:80"])}
    off = rules_yaml({"semantic.port-conflict": "off"})
    assert not only(findings_of(head, extra=off), "semantic.port-conflict")     # head's own view
    found = transition_findings(base, head, new_extra=off)
    conflict = only(found, "semantic.port-conflict")
    assert len(conflict) == 1 and conflict[0].severity == "error" and conflict[0].file.endswith("b.yaml")
    assert only(found, "transition.rules-loosened")
    assert not only(transition_findings(base, head, base_extra=off, new_extra=off), "semantic.port-conflict")


def test_a_state_rule_lowered_by_the_change_is_checked_at_the_base_severity():
    base = {"api": service(project="nova", role="control", release="2025.2", image="n:2025.2"),
            "cpu": service(project="nova", role="agent", release="2025.2", image="n:2025.2")}
    head = {**base, "cpu": service(project="nova", role="agent", release="2026.1", image="n:2026.1")}
    lowered = rules_yaml({"compat.agent-leads-control": "info"})
    assert [f.severity for f in only(findings_of(head, extra=lowered), "compat.agent-leads-control")] == ["info"]
    found = transition_findings(base, head, new_extra=lowered)
    assert [f.severity for f in only(found, "compat.agent-leads-control")] == ["error"]


def test_state_rules_the_change_did_not_loosen_are_not_repeated():
    base = {"a": service(hosts=["h1"], ports=["5000:5000"]), "b": service(hosts=["h1"], ports=["6000:80"])}
    head = {"a": base["a"], "b": service(hosts=["h1"], ports=["5000:80"])}
    assert only(findings_of(head), "semantic.port-conflict")             # check_state reports it
    assert not only(transition_findings(base, head), "semantic.port-conflict")


# -- the base's own rules ------------------------------------------------------

PINNED = {"id": "custom.pinned", "message": "images must be pinned", "field": "image",
          "must_not_match": ":latest$"}


def test_the_base_rules_still_apply_when_the_change_removes_them():
    base_rules, head_rules = rules_yaml(rules=[PINNED]), rules_yaml(rules=[])
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="ks:latest")},
                                base_extra=base_rules, new_extra=head_rules)
    pinned = only(found, "custom.pinned")
    assert len(pinned) == 1 and pinned[0].severity == "error" and pinned[0].file.endswith("ks.yaml")
    assert "removes the cloud rule custom.pinned" in only(found, "transition.rules-loosened")[0].message
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="ks:2025.1-2")},
                                base_extra=base_rules, new_extra=head_rules)
    assert not only(found, "custom.pinned")


def test_the_base_version_of_a_changed_rule_still_applies():
    weakened = {**PINNED, "must_not_match": ":never$"}
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="ks:latest")},
                                base_extra=rules_yaml(rules=[PINNED]), new_extra=rules_yaml(rules=[weakened]))
    assert len(only(found, "custom.pinned")) == 1
    assert "changes the cloud rule custom.pinned" in only(found, "transition.rules-loosened")[0].message


def test_unchanged_custom_rules_are_left_to_the_state_check():
    same = rules_yaml(rules=[PINNED])
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="ks:latest")},
                                base_extra=same, new_extra=same)
    assert not only(found, "custom.pinned") and not only(found, "transition.rules-loosened")


# -- policy --------------------------------------------------------------------

POLICY_ON = {**BASE_CLOUD, "policy": {"one_project_per_change": True}}


def two_projects(release):
    return {"ks": ks(release), "pl": service(project="placement", release=release, image=f"p:{release}")}


def test_removing_one_project_per_change_does_not_lift_it_for_this_change():
    found = transition_findings(two_projects("2025.1"), two_projects("2025.2"), cloud=POLICY_ON,
                                new_cloud=BASE_CLOUD)
    assert [f.severity for f in only(found, "transition.one-project")] == ["error"]
    loosened = only(found, "transition.rules-loosened")
    assert len(loosened) == 1 and loosened[0].file == "clouds/c/cloud.yaml"
    assert "one_project_per_change from true to false" in loosened[0].message


def test_a_change_that_switches_the_policy_on_is_held_to_it():
    found = transition_findings(two_projects("2025.1"), two_projects("2025.2"), cloud=BASE_CLOUD,
                                new_cloud=POLICY_ON)
    assert only(found, "transition.one-project") and not only(found, "transition.rules-loosened")


def test_policy_off_in_base_and_head_allows_two_projects():
    found = transition_findings(two_projects("2025.1"), two_projects("2025.2"))
    assert "transition.one-project" not in rules_of(found)
