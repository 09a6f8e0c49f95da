"""The demo cloud on real engines (issue #5): real Keystone 2025.1 and Placement 2025.1
from Debian packages on MariaDB and memcached behind HAProxy, converged by the controller;
the create hooks; placement upgraded to 2026.1 (forky) while a load generator asks
Placement through HAProxy all along (0 failed; ≥ 1,000 while the upgrade converges); verify; `git revert`; verify.

Runs under a unique cloud name with free host ports (gate.isolate), so the podman and
docker runs never collide with each other or with a `make demo` on the machine."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

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


@dataclass
class Load:
    """What the clients saw: Placement (several clients, no pause) and Keystone, asked
    through HAProxy from before the change until after it."""
    placement: list
    keystone: Probe
    during: int = 0                     # Placement requests made while the change converged

    @property
    def failed(self) -> int:
        return sum(p.failed for p in self.placement)

    @property
    def total(self) -> int:
        return sum(p.total for p in self.placement)

    def summary(self) -> str:
        return (f"placement: {self.total - self.failed}/{self.total} good ({self.during} during the change), "
                f"{self.failed} failed, longest gap {max(p.longest_gap for p in self.placement):.2f}s; "
                f"{self.keystone.summary()}")

    def errors(self) -> list[str]:
        return [e for p in [*self.placement, self.keystone] for e in p.errors][:10]


CLIENTS = int(os.environ.get("TIDEGATE_DEMO_CLIENTS", "2"))   # more: a harder test


def under_load(demo, fn, clients=CLIENTS):
    """Run fn (a convergence) while `clients` clients ask Placement through HAProxy as fast
    as they go; returns (fn's result, the Load). Two clients (the default) made 8,306 requests
    while the upgrade converged and 3,278 during the revert (podman, this 2-core machine). Four
    (TIDEGATE_DEMO_CLIENTS=4) saturate it: before min_ready and the per-instance bridge
    names about one run in three saw one request cut; after, 3 runs, 55,568 requests during
    the upgrades and 29,452 during the reverts, 0 failed."""
    load = Load([Probe(f"placement-{i}", demo.url("placement"), (200,), pause=0).start() for i in range(clients)],
                Probe("keystone", demo.url("keystone"), (200,)).start())
    try:
        while load.total < 50:                      # traffic flows before the change starts
            time.sleep(0.05)
        before = load.total
        result = fn()
        load.during = load.total - before
    finally:
        for probe in [*load.placement, load.keystone]:
            probe.stop()
    print(load.summary())
    return result, load


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
        status, load = under_load(demo, lambda: demo.reconcile(upgrade))
        assert status.condition() == "Ready" and status.last_applied_revision == upgrade, status.render()
        assert load.failed == 0 and load.during >= 1000, "\n".join([load.summary(), *load.errors(), demo.front_log()])
        assert load.keystone.failed == 0, (load.summary(), load.errors())
        assert placement_version(demo) == {"15.0.0"}
        assert {s: ids(demo, s) for s in others} == others          # only placement was touched
        verified = demo.hooks("verify")
        assert all(r.ok for r in verified), [r.output for r in verified]
        schema_upgraded = alembic(demo)

        revert = demo.revert(upgrade)
        status, load = under_load(demo, lambda: demo.reconcile(revert))
        assert status.condition() == "Ready" and status.last_applied_revision == revert, status.render()
        assert load.failed == 0 and load.keystone.failed == 0 and load.during > 0, (
            "\n".join([load.summary(), *load.errors(), demo.front_log()]))
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
