"""Layer 4: what a pull request may do to a service's release."""
import pytest

from validators.releases import Release, upgrade_allowed
from validators.transition import Prior, image_tag

from .helpers import BASE_CLOUD, rules_of, service, transition_findings


def ks(release, image=None, **kw):
    return service(release=release, image=image or f"tidegate/keystone:{release}", **kw)


@pytest.mark.parametrize("old, new, allowed", [
    ("2025.1", "2025.2", True),     # N -> N+1
    ("2025.2", "2026.1", True),     # N -> N+1 across the year
    ("2025.1", "2026.1", True),     # SLURP -> next SLURP
    ("2024.1", "2025.1", True),
    ("2025.2", "2026.2", False),    # skip-level from a non-SLURP
    ("2025.1", "2026.2", False),    # three series
    ("2023.1", "2025.1", False),    # SLURP -> SLURP after next
    ("2025.1", "2025.1", False),    # not an upgrade
])
def test_upgrade_paths(old, new, allowed):
    assert upgrade_allowed(Release.parse(old), Release.parse(new)) is allowed


def test_next_release_upgrade_passes():
    assert transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.2")}) == []


def test_slurp_skip_level_upgrade_passes():
    assert transition_findings({"ks": ks("2025.1")}, {"ks": ks("2026.1")}) == []


def test_skip_level_upgrade_from_non_slurp_is_rejected():
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2026.2")})
    bad = [f for f in found if f.rule == "transition.upgrade-path"]
    assert bad and bad[0].line is not None and "2026.1" in bad[0].hint


def test_keystone_2025_1_to_2026_2_is_rejected_with_the_path_to_take():
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2026.2")})
    hint = [f for f in found if f.rule == "transition.upgrade-path"][0].hint
    assert "2025.2" in hint and "2026.1" in hint


def test_downgrade_that_is_not_a_revert_is_rejected():
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2025.1")})
    assert "transition.downgrade" in rules_of(found)


def test_revert_before_contract_is_allowed():
    prior = Prior(data=ks("2025.1"), commit="c0ffee" * 6, contract_ran=False)
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2025.1")}, history={"ks": prior})
    assert "transition.downgrade" not in rules_of(found)


def test_revert_after_contract_is_rejected():
    prior = Prior(data=ks("2025.1"), commit="c0ffee" * 6, contract_ran=True)
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2025.1")}, history={"ks": prior})
    bad = [f for f in found if f.rule == "transition.downgrade"]
    assert bad and "contract" in bad[0].message


def test_revert_must_restore_the_whole_service_state():
    prior = Prior(data=ks("2025.1", replicas=2), commit="c0ffee" * 6)
    found = transition_findings({"ks": ks("2025.2")}, {"ks": ks("2025.1")}, history={"ks": prior})
    assert "transition.downgrade" in rules_of(found)


def test_release_change_without_image_change_is_an_error():
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.2", image="tidegate/keystone:2025.1")})
    assert "transition.release-without-image-change" in rules_of(found)


def test_image_change_with_same_tag_and_release_is_flagged():
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="other/keystone:2025.1")})
    flagged = [f for f in found if f.rule == "transition.image-without-tag-change"]
    assert flagged and flagged[0].severity == "warning"
    found = transition_findings({"ks": ks("2025.1")}, {"ks": ks("2025.1", image="tidegate/keystone:2025.1-2")})
    assert "transition.image-without-tag-change" not in rules_of(found)


@pytest.mark.parametrize("ref, tag", [("a/b:1", "1"), ("reg:5000/a/b", None), ("reg:5000/a/b:2@sha256:x", "2"), ("b", None)])
def test_image_tag(ref, tag):
    assert image_tag(ref) == tag


def test_one_project_per_change_policy():
    cloud = {**BASE_CLOUD, "policy": {"one_project_per_change": True}}
    base = {"ks": ks("2025.1"), "pl": service(project="placement", release="2025.1", image="p:2025.1")}
    both = {"ks": ks("2025.2"), "pl": service(project="placement", release="2025.2", image="p:2025.2")}
    assert "transition.one-project" in rules_of(transition_findings(base, both, cloud=cloud))
    one = {"ks": ks("2025.2"), "pl": base["pl"]}
    assert "transition.one-project" not in rules_of(transition_findings(base, one, cloud=cloud))
    assert "transition.one-project" not in rules_of(transition_findings(base, both))   # policy off


def test_removing_a_service_warns_that_volumes_stay():
    found = transition_findings({"ks": ks("2025.1"), "old": ks("2025.1")}, {"ks": ks("2025.1")})
    removed = [f for f in found if f.rule == "transition.service-removed"]
    assert removed and removed[0].severity == "warning" and "volumes" in removed[0].hint


def test_untouched_services_produce_nothing():
    assert transition_findings({"ks": ks("2025.1"), "x": ks("2025.1")}, {"ks": ks("2025.1"), "x": ks("2025.1")}) == []
