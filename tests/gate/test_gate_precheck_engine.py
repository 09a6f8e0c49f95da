"""The gate runs the head's precheck jobs in its upgrade phase, through the controller's
executor, with one JUnit case each: a failing one (exit 2) fails the gate before anything
of the head is applied; a warning (exit 1) passes with its words. Web test cloud, real
engines (podman and docker)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gate.junit import to_xml
from tests.conftest import BASE_RECIPE, ROOT, build_image
from tests.controller.test_precheck_engine import CHECK
from tests.controller.webcloud import make_web_cloud

from .test_gate_engine import explain, gate, leftovers

pytestmark = pytest.mark.engine


@pytest.fixture
def web(tmp_path, engine, unique, port):
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    cloud = make_web_cloud(tmp_path, engine, unique, port, images=images)
    data = cloud.service("web")
    data["upgrade"]["jobs"] = {"precheck": [{"name": "schema", "command": ["python3", "-c", CHECK], "timeout": 60}]}
    cloud.base = cloud.commit_service("web", data, "web: a precheck")
    return cloud


def test_a_failing_precheck_fails_the_gate_with_its_case_and_a_warning_passes(web):
    g = gate(web, web.upgrade_web("2025.2", PRECHECK_EXIT="2"), rollback=False)
    r = g.run()
    assert r.exit_code == 1, explain(r)
    phase = r.failure()
    assert phase.name == "upgrade", explain(r)
    [case] = [c for c in phase.cases if c.name == "precheck:web:schema"]
    assert case.ok is False and "exited 2" in case.message
    assert "Schema of the running release: Failure (the cloud runs 2025.1; this image is 2025.2)" in case.message
    assert not [c for c in phase.cases if c.name.startswith("wave ")]       # no wave of the head ran
    failures = [tc.get("name") for tc in ET.fromstring(to_xml(r)).iter("testcase")
                if tc.find("failure") is not None]
    assert "precheck:web:schema" in failures
    assert leftovers(web.engine, r.test_cloud) == []

    web.repo.git("reset", "-q", "--hard", web.base)
    g = gate(web, web.upgrade_web("2025.2", PRECHECK_EXIT="1"), rollback=False)
    r = g.run()
    assert r.exit_code == 0, explain(r)
    [case] = [c for p in r.phases for c in p.cases if c.name == "precheck:web:schema"]
    assert case.ok is True and case.message.startswith("warning: precheck schema of web")
    assert leftovers(web.engine, r.test_cloud) == []
