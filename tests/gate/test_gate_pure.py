"""The gate's pure parts: the test-cloud rewrite, gate.yaml, JUnit XML."""
from __future__ import annotations

import itertools
from pathlib import Path
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


def test_the_test_cloud_is_renamed_its_hosts_put_on_one_engine_and_given_free_ports():
    pm = ports()
    hook = ("clouds/prod/tests/placement/verify", (b"#!/bin/sh\n", 0o100755))
    out = isolate(files(extra=[hook]), "prod", "gate-1234", kind="docker", url="unix:///d.sock", ports=pm)
    assert sorted(out) == ["clouds/gate-1234/cloud.yaml", "clouds/gate-1234/services/haproxy.yaml",
                           "clouds/gate-1234/services/placement.yaml", "clouds/gate-1234/tests/placement/verify"]
    cloud = yaml.safe_load(out["clouds/gate-1234/cloud.yaml"][0])
    assert cloud == {"name": "gate-1234", "hosts": {"c1": {"engine": "docker", "url": "unix:///d.sock"},
                                                    "c2": {"engine": "docker", "url": "unix:///d.sock"}}}
    lb = yaml.safe_load(out["clouds/gate-1234/services/haproxy.yaml"][0])
    assert lb["hosts"] == ["c1"] and lb["ports"] == [
        {"container": 5000, "host": 41000, "protocol": "tcp", "host_ip": "127.0.0.1"},
        {"container": 8778, "host": 41001, "protocol": "tcp", "host_ip": "127.0.0.1"}]
    placement = yaml.safe_load(out["clouds/gate-1234/services/placement.yaml"][0])
    # replicas keep their hosts (a compute's identity is its host's name), all on the gate's engine
    assert placement["replicas"] == 2 and placement["hosts"] == ["c1", "c2"] and placement["max_per_host"] == 1
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
    assert load(b"# nothing yet\n", "g.yaml") == load(None, "g.yaml")
    for text, field in ((b"auth: nope\n", "auth"), (b"endpoints: {a: {service: x}}\n", "endpoints.a"),
                        (b"probes: [x]\n", "probes"), (b"budget: {failed_requests: -1}\n", "budget.failed_requests"),
                        (b"surprise: 1\n", "surprise"), (b"a: [\n", "invalid YAML"),
                        (b"endpoints: {a: {service: x, port: '80'}}\n", r"g.yaml:1:\d+: endpoints.a.port: .*\[schema.type\]"),
                        (b"endpoints: [a]\n", r"endpoints: .* \[schema.type\]"),
                        (b"budget: 3\n", r"budget: .* \[schema.type\]"),
                        (b"env: {A: 1}\nenv: {B: 2}\n", r"\[yaml.duplicate-key\]"),
                        (b"hook_timeout: !!python/object/apply:os.system [true]\n", r"\[yaml.tag\]")):
        with pytest.raises(GateConfigError, match=field) as err:
            load(text, "g.yaml")
        assert "\n" not in str(err.value)


def test_a_gate_yaml_alias_bomb_is_refused_in_one_line():
    bomb = b'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + b"".join(
        f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n'.encode()
        for p, c in zip("abcdef", "bcdefg"))
    with pytest.raises(GateConfigError, match=r"^clouds/c/tests/gate.yaml.*\[yaml.alias-bomb\]$"):
        load(b"env:\n  " + bomb.replace(b"\n", b"\n  "), "clouds/c/tests/gate.yaml")


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
    config, notes = governing(strict, lax, "clouds/c/tests/gate.yaml")
    assert config.failed_requests == 0 and any("0 holds until the change merges" in n for n in notes)
    assert governing(lax, strict, "g.yaml") == (load(strict, "g.yaml"), [])       # tightening is fine
    assert governing(None, lax, "g.yaml")[0].failed_requests == 50               # a new gate.yaml


BASE_GATE = b"""
endpoints:
  keystone:  {service: haproxy, port: 5000, path: /v3, status: [200]}
  placement: {service: haproxy, port: 8778, path: /}
auth: keystone
env: {OS_USERNAME: admin}
"""


def test_a_change_that_deletes_or_empties_gate_yaml_keeps_the_bases_probes():
    from gate.config import governing
    base = load(BASE_GATE, "g.yaml")
    for head in (None, b"", b"endpoints: {}\n", b"endpoints: {keystone: {service: haproxy, port: 5000, path: /v3, "
                                                  b"status: [200]}}\nprobes: [keystone]\n"):
        config, notes = governing(BASE_GATE, head, "g.yaml")
        assert config.endpoints == base.endpoints and config.probes == ("keystone", "placement"), head
        assert config.auth == "keystone" and config.env == {"OS_USERNAME": "admin"}
        assert notes and all("\n" not in n for n in notes), notes


def test_a_change_may_add_endpoints_but_not_loosen_the_bases():
    from gate.config import governing
    head = b"""
endpoints:
  keystone:  {service: haproxy, port: 5000, path: /, status: [200, 404]}   # looser: the base's holds
  glance:    {service: haproxy, port: 9292, path: /, status: [300]}        # new: added
probes: [glance]
env: {OS_USERNAME: nobody, OS_PASSWORD: x}
budget: {failed_requests: 5}
"""
    config, notes = governing(BASE_GATE, head, "g.yaml")
    assert [(e.name, e.path, e.status) for e in config.endpoints] == [
        ("keystone", "/v3", (200,)), ("placement", "/", ()), ("glance", "/", (300,))]
    assert config.probes == ("keystone", "placement", "glance") and config.failed_requests == 0
    assert config.env == {"OS_USERNAME": "admin", "OS_PASSWORD": "x"}
    assert any(n.startswith("endpoints.keystone: the base's definition holds") and "/v3 status 200;" in n
               for n in notes), notes


def test_the_bases_hooks_run_even_when_the_change_deletes_or_empties_them():
    from gate.hooks import Hook, select
    x = 0o100755
    base = {"clouds/g/tests/web/verify": (b"#!/bin/sh\ncurl -f $URL/v3\n", x),
            "clouds/g/tests/web/create": (b"#!/bin/sh\nmake-thing\n", x),
            "clouds/g/tests/db/verify": (b"#!/bin/sh\ncheck-db\n", x)}
    head = {"clouds/g/tests/web/verify": (b"#!/bin/sh\nexit 0\n", x),          # emptied: both run
            "clouds/g/tests/web/create": base["clouds/g/tests/web/create"],    # unchanged: once
            "clouds/g/tests/api/verify": (b"#!/bin/sh\nnew\n", x)}             # added: runs
    # db's verify is deleted by the change: the base's still runs
    assert select(base, head, "clouds/g/", "verify", ["db", "web", "api"]) == [
        Hook("db", "verify", "base", "tests/db/verify"), Hook("web", "verify", "base", "tests/web/verify"),
        Hook("web", "verify", "head", "tests/web/verify"), Hook("api", "verify", "head", "tests/api/verify")]
    assert select(base, head, "clouds/g/", "create", ["db", "web"]) == [Hook("web", "create", "base", "tests/web/create")]
    assert select(base, {}, "clouds/g/", "verify", ["web"]) == [Hook("web", "verify", "base", "tests/web/verify")]


def test_the_compute_clouds_two_compute_hosts_stay_two_computes_in_the_gate():
    root = Path(__file__).resolve().parents[2]
    real = {str(p.relative_to(root)): (p.read_bytes(), 0o100644)
            for p in (root / "clouds/compute").rglob("*") if p.is_file()}
    out = isolate(real, "compute", "gate-abcd1234", kind="podman", url="unix:///p.sock", ports=ports())
    loaded = load_cloud(MemoryTree({k: v for k, (v, _) in out.items()}), "gate-abcd1234")
    assert [f.message for f in check_state(loaded) if f.severity == "error"] == []
    assert sorted(loaded.cloud.hosts) == ["cmp1", "cmp2", "ctl"]
    assert {h.url for h in loaded.cloud.hosts.values()} == {"unix:///p.sock"}
    assert sorted(loaded.cloud.services["nova-compute"].hosts) == ["cmp1", "cmp2"]
