"""gate/tempest.py without Tempest: the settings gate.yaml gives, the tempest.conf tidegate
writes from the cloud, and the counts read from `tempest run`'s output."""
import configparser

import pytest

from gate import tempest
from gate.config import GateConfigError, governing, load

GATE = b"""
endpoints: {keystone: {service: haproxy, port: 5000, path: /v3}}
auth: keystone
env: {OS_USERNAME: admin, OS_PASSWORD: pw, OS_PROJECT_NAME: admin}
tempest:
  regex: '^tempest\\.api\\.identity\\.v3\\.'
  concurrency: 2
  config: {identity-feature-enabled: {security_compliance: true}, auth: {tempest_roles: member}}
"""


def test_gate_yaml_names_the_tests_and_the_settings():
    settings = load(GATE, "g.yaml").tempest
    assert settings == tempest.Settings(r"^tempest\.api\.identity\.v3\.", (), "47.0.0", 2, 1800.0,
                                        {"identity-feature-enabled": {"security_compliance": True},
                                         "auth": {"tempest_roles": "member"}})
    with pytest.raises(GateConfigError, match="name the tests"):
        load(b"endpoints: {k: {service: h, port: 1}}\nauth: k\ntempest: {version: '47.0.0'}\n", "g.yaml")
    with pytest.raises(GateConfigError, match="through `auth`, which is not set"):
        load(b"tempest: {regex: x}\n", "g.yaml")
    with pytest.raises(GateConfigError, match=r"tempest\.version"):
        load(b"endpoints: {k: {service: h, port: 1}}\nauth: k\ntempest: {regex: x, version: '../x'}\n", "g.yaml")


def test_a_change_cannot_drop_the_bases_tempest_tests():
    config, notes = governing(GATE, b"", "g.yaml")
    assert config.tempest is not None and config.tempest.regex.startswith("^tempest")


def test_tempest_conf_comes_from_the_cloud_and_the_settings_add_to_it(tmp_path):
    settings = load(GATE, "g.yaml").tempest
    text = tempest.conf(settings, "http://127.0.0.1:41000/v3", {"OS_USERNAME": "admin", "OS_PASSWORD": "pw",
                                                                "OS_PROJECT_NAME": "admin"},
                        {"keystone", "placement", "nova"}, tmp_path / "logs")
    c = configparser.ConfigParser(interpolation=None)
    c.read_string(text)
    assert c["identity"]["uri_v3"] == "http://127.0.0.1:41000/v3" and c["identity"]["auth_version"] == "v3"
    assert (c["auth"]["admin_username"], c["auth"]["admin_password"], c["auth"]["admin_project_name"]) == \
        ("admin", "pw", "admin")
    assert c["service_available"]["nova"] == "true" and c["service_available"]["cinder"] == "false"
    assert c["identity-feature-enabled"]["security_compliance"] == "true"
    assert c["auth"]["tempest_roles"] == "member" and c["auth"]["use_dynamic_credentials"] == "true"


def test_the_counts_are_tempests_totals():
    output = """{0} tempest.api.identity.v3.test_users.IdentityV3UsersTest.test_password_history_check_self_service_api [0.1s] ... SKIPPED
======
Totals
======
Ran: 61 tests in 41.2000 sec.
 - Passed: 59
 - Skipped: 2
 - Expected Fail: 0
 - Unexpected Success: 0
 - Failed: 0
Sum of execute time for each test: 50.1 sec.
"""
    assert tempest.counts(output) == {"passed": 59, "skipped": 2, "failed": 0}
    assert tempest.counts("tempest: error: no tests") == {"passed": 0, "skipped": 0, "failed": 0}
