"""The gate's pure parts: the test-cloud rewrite, gate.yaml, JUnit XML."""
from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest
import yaml

from gate.config import GateConfigError, load
from gate.isolate import IsolationError, PortMap, isolate
from gate.junit import to_xml
from gate.run import Phase, Report
from validators.load import load_cloud
from validators.check import check_state
from validators.tree import MemoryTree

CLOUD = {
    "clouds/prod/cloud.yaml": {"name": "prod", "network": {"name": "prodnet", "subnet": "10.9.0.0/24"},
                               "hosts": {"c1": {"engine": "podman", "url": "ssh://root@c1"},
                                         "c2": {"engine": "podman", "url": "ssh://root@c2"}}},
    "clouds/prod/services/haproxy.yaml": {"project": "haproxy", "release": "2025.1", "image": "h:1", "hosts": ["c1"],
                                          "ports": ["5000:5000", {"container": 8778, "host": 8778}]},
    "clouds/prod/services/placement.yaml": {"project": "placement", "release": "2025.1", "image": "p:1",
                                            "replicas": 2, "hosts": ["c1", "c2"], "max_per_host": 1},
}


def files(docs=CLOUD, extra=()):
    out = {k: (yaml.safe_dump(v).encode(), 0o100644) for k, v in docs.items()}
    out.update(extra)
    out["clouds/other/cloud.yaml"] = (b"name: other\nhosts: {h: {engine: docker}}\n", 0o100644)
    return out


def ports():
    counter = itertools.count(41000)
    return PortMap(lambda: next(counter))


def test_the_test_cloud_is_renamed_collapsed_onto_one_engine_and_given_free_ports():
    pm = ports()
    hook = ("clouds/prod/tests/placement/verify", (b"#!/bin/sh\n", 0o100755))
    out = isolate(files(extra=[hook]), "prod", "gate-1234", kind="docker", url="unix:///d.sock", ports=pm)
    assert sorted(out) == ["clouds/gate-1234/cloud.yaml", "clouds/gate-1234/services/haproxy.yaml",
                           "clouds/gate-1234/services/placement.yaml", "clouds/gate-1234/tests/placement/verify"]
    cloud = yaml.safe_load(out["clouds/gate-1234/cloud.yaml"][0])
    assert cloud == {"name": "gate-1234", "hosts": {"gate": {"engine": "docker", "url": "unix:///d.sock"}}}
    lb = yaml.safe_load(out["clouds/gate-1234/services/haproxy.yaml"][0])
    assert "hosts" not in lb and lb["ports"] == [
        {"container": 5000, "host": 41000, "protocol": "tcp", "host_ip": "127.0.0.1"},
        {"container": 8778, "host": 41001, "protocol": "tcp", "host_ip": "127.0.0.1"}]
    placement = yaml.safe_load(out["clouds/gate-1234/services/placement.yaml"][0])
    assert placement["replicas"] == 2 and "hosts" not in placement and "max_per_host" not in placement
    assert out["clouds/gate-1234/tests/placement/verify"][1] == 0o100755          # hooks stay executable
    # the same map for the head state: probes keep their address through the upgrade
    again = isolate(files(), "prod", "gate-1234", kind="docker", url="unix:///d.sock", ports=pm)
    assert yaml.safe_load(again["clouds/gate-1234/services/haproxy.yaml"][0])["ports"][0]["host"] == 41000
    assert pm.lookup("haproxy", 8778) == 41001 and pm.lookup("haproxy", 80) is None
    # and the result is a valid cloud
    loaded = load_cloud(MemoryTree({k: v for k, (v, _) in out.items()}), "gate-1234")
    assert [f for f in check_state(loaded) if f.severity == "error"] == []


def test_host_ports_on_several_replicas_cannot_share_one_engine():
    docs = dict(CLOUD)
    docs["clouds/prod/services/placement.yaml"] = {**CLOUD["clouds/prod/services/placement.yaml"], "ports": ["8778:8778"]}
    with pytest.raises(IsolationError, match=r"placement.yaml: ports: .* 2 replicas"):
        isolate(files(docs), "prod", "gate-1", kind="podman", url="unix:///p.sock", ports=ports())


def test_a_missing_cloud_is_named():
    with pytest.raises(IsolationError, match="clouds/nope/cloud.yaml"):
        isolate(files(), "nope", "gate-1", kind="podman", url="unix:///p.sock", ports=ports())


def test_gate_yaml_is_read_and_its_errors_name_the_field():
    cfg = load(b"""
endpoints:
  keystone: {service: haproxy, port: 5000, path: /v3, status: [200]}
  placement: {service: haproxy, port: 8778}
auth: keystone
env: {OS_USERNAME: admin, OS_PASSWORD: 42}
budget: {failed_requests: 2}
""", "g.yaml")
    assert cfg.probes == ("keystone", "placement") and cfg.failed_requests == 2 and cfg.auth == "keystone"
    assert cfg.endpoint("keystone").status == (200,) and cfg.env["OS_PASSWORD"] == "42"
    assert load(None, "g.yaml").endpoints == ()
    for text, field in ((b"auth: nope\n", "auth"), (b"endpoints: {a: {service: x}}\n", "endpoints.a"),
                        (b"probes: [x]\n", "probes"), (b"budget: {failed_requests: -1}\n", "budget.failed_requests"),
                        (b"surprise: 1\n", "surprise"), (b"a: [\n", "not valid YAML")):
        with pytest.raises(GateConfigError, match=field):
            load(text, "g.yaml")


def test_junit_has_a_case_per_step_with_failures_and_skips():
    report = Report("prod", "a" * 40, "b" * 40, "gate-1", "podman unix:///x", seconds=12.5)
    check = Phase("check", True, 0.1)
    check.case("validators", True)
    up = Phase("upgrade", False, 9.0, "wave 1: placement failed")
    up.case("wave 1: placement", False, 8.0, "placement: did not become healthy", "log line 1\x1b[0m\nlog line 2")
    rb = Phase("rollback", None, 0.0, "skipped (--no-rollback)")
    report.phases = [check, up, rb]
    root = ET.fromstring(to_xml(report))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("gate.check", "validators"), ("gate.upgrade", "wave 1: placement"), ("gate.rollback", "rollback")]
    failure = cases[1].find("failure")
    assert failure.get("message") == "placement: did not become healthy" and "log line 2" in failure.text
    assert report.exit_code == 1 and report.failure().name == "upgrade"


def test_a_teardown_that_fails_after_a_passing_change_is_infrastructure_not_a_verdict():
    def report(*phases):
        r = Report("prod", "a" * 40, "b" * 40, "gate-1", "podman unix:///x")
        r.phases = list(phases)
        return r
    teardown = Phase("teardown", False, 1.0, "could not remove: gate-1-web-0")
    passed = report(Phase("check", True), Phase("upgrade", True), teardown)
    assert passed.exit_code == 2 and passed.as_dict()["result"] == "error"
    broken = report(Phase("check", True), Phase("upgrade", False, message="wave 1: web"), teardown)
    assert broken.exit_code == 1 and broken.as_dict()["result"] == "fail"     # the change is still bad
    assert report(Phase("check", True), Phase("teardown", True)).exit_code == 0


def test_a_change_cannot_raise_its_own_probe_budget():
    from gate.config import governing
    strict = b"endpoints: {web: {service: lb, port: 8080}}\nbudget: {failed_requests: 0}\n"
    lax = b"endpoints: {web: {service: lb, port: 8080}}\nbudget: {failed_requests: 50}\n"
    config, note = governing(strict, lax, "clouds/c/tests/gate.yaml")
    assert config.failed_requests == 0 and "0 holds until the change merges" in note
    assert governing(lax, strict, "g.yaml") == (load(strict, "g.yaml"), "")       # tightening is fine
    assert governing(None, lax, "g.yaml")[0].failed_requests == 50               # a new gate.yaml
