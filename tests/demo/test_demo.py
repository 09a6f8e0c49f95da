"""The demo cloud on real engines (issue #5): real Keystone 2025.1 and Placement 2025.1
from Debian packages on MariaDB and memcached behind HAProxy, converged by the controller;
the create hooks; placement upgraded to 2026.1 (forky) while a load generator asks
Placement through HAProxy all along (0 failed of ≥ 1,000); verify; `git revert`; verify.

Runs under a unique cloud name with free host ports (gate.isolate), so the podman and
docker runs never collide with each other or with a `make demo` on the machine."""
from __future__ import annotations

import time

import pytest

from gate.probes import Probe

from .democloud import DemoCloud

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def alembic(demo) -> str:
    """The placement database's schema revision, read in the MariaDB container."""
    db = next(c for c in demo.engine.list_containers({"tidegate.cloud": demo.name, "tidegate.service": "mariadb"})
              if c.running)
    out = demo.engine.exec(db.id, ["mariadb", "-N", "-B", "-e", "SELECT version_num FROM placement.alembic_version"])
    assert out.exit_code == 0, out.output
    return out.output.strip()


def placement_version(demo) -> set[str]:
    found = set()
    for c in demo.engine.list_containers({"tidegate.cloud": demo.name, "tidegate.service": "placement"}):
        out = demo.engine.exec(c.id, ["python3", "-c", "import importlib.metadata as m; "
                                                       "print(m.version('openstack-placement'))"])
        found.add(out.output.strip())
    return found


def ids(demo, service):
    return {c.id for c in demo.engine.list_containers({"tidegate.cloud": demo.name, "tidegate.service": service})}


def under_load(demo, fn, minimum=1000):
    """Run fn while clients ask Placement (and Keystone) through HAProxy; keep asking until
    `minimum` Placement requests were made. Returns (result, placement probe, keystone probe)."""
    placement = Probe("placement", demo.url("placement"), (200,)).start()
    keystone = Probe("keystone", demo.url("keystone"), (200,)).start()
    try:
        result = fn()
        while placement.total < minimum:
            time.sleep(0.1)
    finally:
        placement.stop()
        keystone.stop()
    return result, placement, keystone


def test_demo_cloud_upgrade_and_revert_of_placement(engine, tmp_path):
    demo = DemoCloud(tmp_path, engine)
    try:
        demo.build_images()
        status = demo.reconcile(demo.base)
        assert status.condition() == "Ready", status.render()
        assert placement_version(demo) == {"13.0.0"}
        created = demo.hooks("create")
        assert [r.ok for r in created] == [True, True], [r.output for r in created]
        schema_before = alembic(demo)
        others = {s: ids(demo, s) for s in ("mariadb", "memcached", "keystone", "haproxy")}

        upgrade = demo.commit_upgrade()
        status, placement, keystone = under_load(demo, lambda: demo.reconcile(upgrade))
        assert status.condition() == "Ready" and status.last_applied_revision == upgrade, status.render()
        assert placement.failed == 0 and placement.total >= 1000, (placement.summary(), placement.errors)
        assert keystone.failed == 0, (keystone.summary(), keystone.errors)
        assert placement_version(demo) == {"15.0.0"}
        assert {s: ids(demo, s) for s in others} == others          # only placement was touched
        verified = demo.hooks("verify")
        assert all(r.ok for r in verified), [r.output for r in verified]
        schema_upgraded = alembic(demo)

        revert = demo.revert(upgrade)
        status, placement, keystone = under_load(demo, lambda: demo.reconcile(revert))
        assert status.condition() == "Ready" and status.last_applied_revision == revert, status.render()
        assert placement.failed == 0, (placement.summary(), placement.errors)
        assert placement_version(demo) == {"13.0.0"}
        # The database after the revert: 2026.1's `db sync` (expand) stays — a revert does
        # not run migrations backwards, and Placement has no contract phase, so nothing the
        # old code needs was dropped. That is why the validators allow this rollback (the
        # rollback window closes only when a contract job runs) and why it is safe: 2025.1
        # reads and writes the same tables, as the verify hooks show.
        assert alembic(demo) == schema_upgraded
        print(f"placement schema: 2025.1 {schema_before!r}, after 2026.1 and after the revert {schema_upgraded!r}")
        verified = demo.hooks("verify")
        assert all(r.ok for r in verified), [r.output for r in verified]
        destroyed = demo.hooks("destroy")
        assert all(r.ok for r in destroyed), [r.output for r in destroyed]
    finally:
        demo.teardown()
