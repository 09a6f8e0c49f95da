"""The gate on the demo cloud (issue #6): placement 2025.1 → 2026.1 passes with 0 failed
probe requests on Keystone and Placement through HAProxy, the JUnit file is valid and
names every phase, and the test cloud leaves nothing behind."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from controller.secrets import load_identities
from gate.junit import to_xml
from gate.run import Gate

from .democloud import DEMO_KEY, demo_repo

pytestmark = [pytest.mark.engine, pytest.mark.slow]
PHASES = ["check", "images", "base", "smoke+create", "upgrade", "verify", "rollback", "destroy", "teardown"]


def test_placement_upgrade_passes_the_gate(engine, tmp_path):
    repo = demo_repo(tmp_path / "repo")
    lines = []
    gate = Gate(str(repo.path), "demo", repo.base, repo.upgrade, kind=engine.kind, url=engine.url, out=lines.append,
                identities=load_identities(DEMO_KEY))          # the demo's key: a recipient, as CI's would be
    report = gate.run()
    failed = [f"{c['name']}: {c['message']}\n{c['output'][-3000:]}" for p in report.as_dict()["phases"]
              for c in p.get("cases", ()) if c["result"] == "fail"]       # which Tempest test, which hook
    cause = failed[0].splitlines()[0] if failed else (lines or ["no output"])[-1]
    assert report.exit_code == 0, "\n".join([f"gate exit {report.exit_code}: {cause}"] + failed + lines[-40:]) \
        + json.dumps(report.as_dict(), indent=1)[:3000]
    assert [p.name for p in report.phases] == PHASES
    for label in ("upgrade", "rollback"):
        for name in ("keystone", "placement", "users", "providers"):     # the last two with a token
            probe = report.probes[label][name]
            assert probe["failed"] == 0 and probe["ok"] > 0, (label, name, probe)
    cases = {c.name: c for p in report.phases for c in p.cases}
    for hook in ("create:keystone", "create:placement", "verify:keystone", "verify:placement",
                 "verify after rollback:placement", "destroy:placement"):
        assert cases[hook].ok, (hook, cases[hook].output)
    for name in ("tempest", "tempest after upgrade", "tempest after rollback"):           # Keystone's Tempest tests
        assert cases[name].ok and " 0 failed" in cases[name].message, (name, cases[name].output)
    suite = ET.fromstring(to_xml(report)).find("testsuite")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert {tc.get("classname") for tc in suite.iter("testcase")} == {f"gate.{p}" for p in PHASES}
    from controller.desired import LABEL_CLOUD
    assert engine.list_containers({LABEL_CLOUD: report.test_cloud}) == []
    assert [v for v in engine.list_volumes({}) if v.startswith(report.test_cloud)] == []
    assert [n for n in engine.list_networks({}) if report.test_cloud in n] == []
