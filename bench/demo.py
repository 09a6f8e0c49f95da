#!/usr/bin/env python3
"""Demo cloud figures (issue #5), on a private engine:

- image builds of the demo's six recipes: cold (mmdebstrap into an empty rootfs cache,
  import, build) and cached (up to date on the engine);
- demo converge (first deploy: MariaDB, memcached, Keystone ×2 with its bootstrap jobs,
  Placement ×2 with db sync and Keystone registration, HAProxy);
- placement 2025.1 → 2026.1 upgrade (expand + migrate jobs, two replicas rolled), with the
  failed requests of a client asking Placement through HAProxy all along;
- rollback (`git revert` of the upgrade, converged).

    bench/demo.py [podman|docker] [--cold]     (--cold: also time cold builds, ~6 minutes)
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from gate.probes import Probe  # noqa: E402
from tests.conftest import remove_tree  # noqa: E402
from tests.demo.democloud import DemoCloud  # noqa: E402


def timed(fn):
    t = time.monotonic()
    result = fn()
    return time.monotonic() - t, result


def main(argv: list[str]) -> int:
    kind = next((a for a in argv if a in ("podman", "docker")), "podman")
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-demo-", dir="/tmp"))
    record = local.start_engine(kind, tmp / "engine")
    try:
        engine = connect(kind, record.url, "bench")
        if "--cold" in argv:
            cold_cache = tempfile.mkdtemp(prefix="tg-cold-", dir="/var/tmp")
            os.environ["TIDEGATE_CACHE"] = cold_cache
            cold_engine = local.start_engine(kind, tmp / "cold-engine")
            try:
                t_cold, _ = timed(lambda: DemoCloud(tmp / "cold", connect(kind, cold_engine.url, "cold")).build_images())
            finally:
                local.stop_engine(cold_engine, purge=True)
                shutil.rmtree(cold_cache, ignore_errors=True)
                del os.environ["TIDEGATE_CACHE"]
            print(f"{kind}: demo images, cold (mmdebstrap + import + build, 6 recipes): {t_cold:.0f} s")
        demo = DemoCloud(tmp / "demo", engine)
        t_import, built = timed(demo.build_images)
        t_cached, _ = timed(demo.build_images)
        print(f"{kind}: demo images on a new engine, rootfs cached: {t_import:.1f} s ({sum(built.values())} built); "
              f"up to date: {t_cached * 1000:.0f} ms")
        t_deploy, status = timed(lambda: demo.reconcile(demo.base))
        assert status.condition() == "Ready", status.render()
        print(f"{kind}: demo converge (first deploy, 7 containers, 6 bootstrap jobs): {t_deploy:.1f} s")
        assert all(r.ok for r in demo.hooks("create"))
        for label, rev_fn in (("upgrade placement 2025.1 → 2026.1", demo.commit_upgrade),
                              ("rollback (git revert)", lambda: demo.revert(demo.repo.git("rev-parse", "HEAD")))):
            rev = rev_fn()
            probe = Probe("placement", demo.url("placement"), (200,)).start()
            took, status = timed(lambda: demo.reconcile(rev))
            probe.stop()
            assert status.condition() == "Ready", status.render()
            print(f"{kind}: {label}: {took:.1f} s; Placement through HAProxy meanwhile: "
                  f"{probe.ok} ok, {probe.failed} failed, longest gap {probe.longest_gap:.2f} s")
            assert all(r.ok for r in demo.hooks("verify"))
        demo.teardown()
        return 0
    finally:
        local.stop_engine(record, purge=True)
        remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
