"""The gate on the compute cloud (issue #15): the Nova 2025.1 → 2026.1 pull request, proven
the way Grenade proves it, on docker (the compute story test runs on podman).

Create hooks make a flavor, a Glance image, a Neutron network and port, and a server on
each compute; the upgrade runs with `--matrix`, so the verify hooks (every server ACTIVE on
its host, a new one boots) run in every mixed-version state the rollout passes through
(2026.1 conductor with 2025.1 scheduler, API and computes, and so on); meanwhile the probes
list servers and networks through HAProxy and the load hooks build and delete servers and
make and delete ports. The rollback phase is skipped with Nova's reason (no downgrade once
2026.1 ran). The test cloud leaves nothing behind."""
from __future__ import annotations

import json

import pytest

from controller.secrets import load_identities
from gate.run import Gate

from .computecloud import KEY, gate_repo

pytestmark = [pytest.mark.engine, pytest.mark.slow]
PHASES = ["check", "images", "base", "smoke+create", "upgrade", "verify", "rollback", "destroy", "teardown"]


@pytest.mark.parametrize("kind", ["docker"])
def test_nova_upgrade_passes_the_gate_with_servers_alive_in_every_mixed_state(engine, tmp_path):
    repo = gate_repo(tmp_path / "repo")
    lines = []
    gate = Gate(str(repo.path), "compute", repo.base, repo.nova, kind=engine.kind, url=engine.url, matrix=True,
                out=lines.append, identities=load_identities(KEY))
    report = gate.run()
    print("\n".join(lines))
    failed = [f"{c['name']}: {c['message']}\n{c['output'][-3000:]}" for p in report.as_dict()["phases"]
              for c in p.get("cases", ()) if c["result"] == "fail"]
    assert report.exit_code == 0, "\n".join(failed + lines[-60:]) + json.dumps(report.as_dict(), indent=1)[:3000]
    assert [p.name for p in report.phases] == PHASES
    for name in ("keystone", "servers", "networks"):                 # the last two with a token
        probe = report.probes["upgrade"][name]
        assert probe["failed"] == 0 and probe["ok"] > 0, (name, probe)
    cases = {c.name: c for p in report.phases for c in p.cases}
    waves = [n for n in cases if n.startswith("wave ")]
    matrix = [n for n in cases if n.startswith("verify after wave ") and n.endswith(":nova")]
    assert len(waves) >= 3 and len(matrix) == len(waves) - 1, sorted(cases)
    for name in ["create:nova", "create:neutron", "verify:nova", "verify:neutron", "destroy:nova", *matrix,
                 "load during upgrade:nova", "load during upgrade:neutron"]:
        assert cases[name].ok, (name, cases[name].output)
    assert " 0 failed" in cases["load during upgrade:nova"].message, cases["load during upgrade:nova"].message
    rollback = report.phases[PHASES.index("rollback")]
    assert rollback.ok is None and "ServiceTooOld" in rollback.message, rollback.message
    from controller.desired import LABEL_CLOUD
    assert engine.list_containers({LABEL_CLOUD: report.test_cloud}) == []
    assert [v for v in engine.list_volumes({}) if v.startswith(report.test_cloud)] == []
