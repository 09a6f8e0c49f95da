"""The demo cloud on real engines (issue #5): real Keystone 2025.1 and Placement 2025.1
from Debian packages on MariaDB and memcached behind HAProxy, converged by the controller;
the create hooks; placement upgraded to 2026.1 (forky) while a load generator asks
Placement through HAProxy all along (0 failed; ≥ 1,000 while the upgrade converges); verify; `git revert`; verify.

Runs under a unique cloud name with free host ports (gate.isolate), so the podman and
docker runs never collide with each other or with a `make demo` on the machine."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
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

        # Keystone's precheck command exists in its image and judges the running database
        # (it runs as a precheck job only when Keystone itself is upgraded)
        [keystone] = demo.engine.list_containers({"tidegate.cloud": demo.name, "tidegate.service": "keystone",
                                                  "tidegate.replica": "0"})
        checked = demo.engine.exec(keystone.id, ["keystone-status", "upgrade", "check"])
        assert checked.exit_code in (0, 1) and "Upgrade Check Results" in checked.output, checked

        upgrade = demo.commit_upgrade()
        events = []
        progress = lambda event, step, detail: events.append((event, step.phase, step.action, detail))
        status, load = under_load(demo, lambda: demo.reconcile(upgrade, progress=progress))
        assert status.condition() == "Ready" and status.last_applied_revision == upgrade, status.render()
        # placement-status upgrade check from the 2026.1 image against the 2025.1 database, first
        ran = [(event, detail) for event, phase, _action, detail in events if phase == "precheck" and event != "start"]
        started = [(phase, action) for event, phase, action, _ in events if event == "start"]
        assert started.index(("precheck", "job")) < started.index(("expand", "job")) < started.index(("", "create"))
        assert len(ran) == 1 and ran[0][0] in ("done", "warning"), ran
        print(f"placement precheck: {ran[0][0]} in {ran[0][1]}")
        assert load.failed == 0 and load.during >= 1000, "\n".join([load.summary(), *load.errors(), demo.front_log()])
        assert load.keystone.failed == 0, (load.summary(), load.errors())
        assert placement_version(demo) == {"15.0.0"}
        assert {s: ids(demo, s) for s in others} == others          # only placement was touched
        verified = demo.hooks("verify")
        assert all(r.ok for r in verified), [r.output for r in verified]
        schema_upgraded = alembic(demo)

        revert = demo.revert(upgrade)
        events.clear()
        status, load = under_load(demo, lambda: demo.reconcile(revert, progress=progress))
        assert not [e for e in events if e[1] == "precheck"]             # a rollback runs no precheck
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


def token(demo) -> str:
    """An admin token issued through HAProxy (either Keystone replica)."""
    body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": demo.config.env["OS_PASSWORD"]}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}).encode()
    request = urllib.request.Request(demo.url("keystone") + "/auth/tokens", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.headers["X-Subject-Token"]


def validated(demo, tok: str, times: int = 6) -> list[int]:
    """Statuses of `times` validations through HAProxy (round-robin: both replicas answer)."""
    out = []
    for _ in range(times):
        request = urllib.request.Request(demo.url("keystone") + "/auth/tokens",
                                         headers={"X-Auth-Token": tok, "X-Subject-Token": tok})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                out.append(r.status)
        except urllib.error.HTTPError as err:
            out.append(err.code)
    return out


def test_demo_fernet_rotation_rolls_keystone_only_and_keeps_tokens_valid(engine, tmp_path):
    """Keystone's fernet keys are a secret of the cloud: a rotation is a commit, it rolls
    exactly Keystone (health-gated, Keystone probed all along), and a token issued before
    it validates on every replica after it."""
    demo = DemoCloud(tmp_path, engine)
    try:
        demo.build_images()
        status = demo.reconcile(demo.base)
        assert status.condition() == "Ready", status.render()
        before = token(demo)
        assert validated(demo, before) == [200] * 6
        keystone = ids(demo, "keystone")
        others = {s: ids(demo, s) for s in ("mariadb", "memcached", "placement", "haproxy")}
        rotation = demo.rotate_secret("keystone-fernet")
        status, load = under_load(demo, lambda: demo.reconcile(rotation))
        assert status.condition() == "Ready" and status.last_applied_revision == rotation, status.render()
        assert load.keystone.failed == 0 and load.failed == 0, (load.summary(), load.errors())
        assert {s: ids(demo, s) for s in others} == others             # only keystone uses the secret
        assert len(ids(demo, "keystone")) == 2 and not ids(demo, "keystone") & keystone
        assert validated(demo, before) == [200] * 6                    # issued before the rotation
        after = token(demo)
        assert validated(demo, after) == [200] * 6
        from controller import keyrepo
        from controller.secrets import decrypt
        path = f"clouds/{demo.name}/secrets/keystone-fernet.age"
        keys = keyrepo.parse(decrypt(demo.files[path][0], demo.identities, path)).values()
        seen = [p.read_text(errors="replace") for p in demo.state_dir.rglob("*") if p.is_file()]
        seen += [demo.engine.logs(c.id, tail=None) for c in demo.engine.list_containers({"tidegate.cloud": demo.name})]
        assert not [k for k in keys if any(k in text for text in seen)]
    finally:
        demo.teardown()
