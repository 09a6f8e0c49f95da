"""The gate runs the services' deep readiness checks (controller.readiness, the executor's
own code) on every replica at each smoke, and its upgrade phase fails on a successor that
is healthy but fails them — production and the gate agree on what "working" means."""
from __future__ import annotations

import threading

import pytest
import yaml

from tests.controller.test_readiness_engine import AUTH, CHECKS

from .test_gate_engine import explain, gate, leftovers, web  # noqa: F401 — the web fixture

pytestmark = pytest.mark.engine


def test_the_gate_runs_the_deep_checks_and_fails_a_successor_that_fails_them(web):  # noqa: F811
    cloud_yaml = yaml.safe_load((web.folder / "cloud.yaml").read_text())
    data = web.service("web")
    data["environment"]["AUTH_PASSWORD"] = "web-admin"
    data["checks"] = CHECKS
    web.base = web.repo.commit({f"clouds/{web.name}/cloud.yaml": yaml.safe_dump({**cloud_yaml, "auth": AUTH}),
                                f"clouds/{web.name}/services/web.yaml": yaml.safe_dump(data, sort_keys=False)},
                               "web: deep checks")
    good = web.upgrade_web("2025.2")
    web.repo.git("reset", "-q", "--hard", web.base)
    bad = web.upgrade_web("2025.2", TOKEN_KEY="not-the-clouds-key")
    gates = [gate(web, good), gate(web, bad, rollback=False)]
    threads = [threading.Thread(target=g.run) for g in gates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    passed, failed = (g.report for g in gates)
    assert passed.exit_code == 0, explain(passed)
    cases = {f"{p.name}/{c.name}": c for p in passed.phases for c in p.cases}
    for name in ("smoke+create/smoke:deep:web", "verify/smoke:deep:web", "rollback/smoke:deep:web"):
        assert cases[name].ok and cases[name].message == "2 check(s) passed on 2 replica(s)", name
    assert failed.exit_code == 1
    phase = failed.failure()
    assert phase.name == "upgrade" and "failed its deep check 'things'" in phase.message, explain(failed)
    assert "answered 503 (expected 200)" in phase.message
    assert failed.probes["upgrade"]["web"]["failed"] == 0
    for g in gates:
        assert leftovers(web.engine, g.report.test_cloud) == []
