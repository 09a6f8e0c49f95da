#!/usr/bin/env python3
"""The compute cloud's Nova upgrade, timed: per service, per compute host, and the
requests a client made through the front while it ran.

Deploys clouds/compute (under a unique name, free ports, a private engine), boots a
server on each compute, then converges the Nova 2025.1 → 2026.1 commit while one client
lists servers through HAProxy; prints the deploy time, each service's rollout time (its
first step's start to its last step's end), each compute host's (stop of the old
nova-compute to its successor's health gate), the requests served and failed, and
whether every server is still ACTIVE on its host. Then the contract (online data
migrations).

    bench/compute.py [--keep]

Measured on this 2-core machine (podman, 2026-12-02): images 134 s (rootfs cached), deploy
77 s; the Nova upgrade 62 s (conductor 13.1 s, scheduler 8.6 s, API 19.6 s, computes
27.0 s: cmp1 13.9 s, cmp2 13.2 s), 553 server listings through HAProxy, 0 failed, longest
gap 1.1 s; both servers ACTIVE on their hosts after; a new server ACTIVE in 1.6 s; the
contract 3.4 s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from tests.compute.computecloud import NOVA, ComputeCloud  # noqa: E402
from tests.compute.timings import Timings  # noqa: E402
from tests.conftest import remove_tree  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the cloud and engine running")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-compute-", dir="/tmp"))
    record = local.start_engine("podman", tmp / "engine")
    cloud = None
    try:
        cloud = ComputeCloud(tmp / "cloud", connect("podman", record.url, "bench"))
        t0 = time.monotonic()
        cloud.build_images(log=lambda line: None)
        print(f"images: {time.monotonic() - t0:.0f}s (rootfs from the cache; build them once with make compute)")
        t0 = time.monotonic()
        status = cloud.reconcile(cloud.base)
        print(f"deploy: {status.condition()} in {time.monotonic() - t0:.0f}s")
        if status.condition() != "Ready":
            print(status.render())
            return 1
        cloud.wait_computes_up()
        c = cloud.client
        flavor, image = c.flavor("tiny"), c.image("tiny", b"\0" * 4096)
        servers = {}
        for host in ("cmp1", "cmp2"):
            sid = c.boot(f"before-{host}", flavor, image, host)
            c.wait_active(sid)
            servers[sid] = host

        timings = Timings()
        upgrade = cloud.commit_upgrade(NOVA, "nova: 2025.1 → 2026.1")
        t0 = time.monotonic()
        with cloud.load() as load:
            status = cloud.controller(progress=timings).reconcile(upgrade)
        total = time.monotonic() - t0
        print(f"nova upgrade 2025.1 → 2026.1: {status.condition()} in {total:.0f}s; "
              f"requests through the front: {load.ok} served, {load.failed} failed, "
              f"longest gap {load.longest_gap:.1f}s")
        for service, seconds in sorted(timings.per_service().items(), key=lambda kv: kv[0]):
            print(f"  {service:<16} {seconds:6.1f}s")
        for host, seconds in timings.per_host("nova-compute").items():
            print(f"  nova-compute on {host}: {seconds:.1f}s")
        cloud.wait_computes_up()
        states = {servers[sid]: (s["status"], s["OS-EXT-SRV-ATTR:host"])
                  for sid in servers for s in [c.server(sid)]}
        print(f"servers after: {states}")
        t0 = time.monotonic()
        sid = c.boot("after", flavor, image, "cmp2")
        c.wait_active(sid)
        print(f"a new server ACTIVE in {time.monotonic() - t0:.1f}s")
        t0 = time.monotonic()
        status = cloud.contract("nova-compute")
        print(f"contract (online data migrations): {status.condition()} in {time.monotonic() - t0:.1f}s")
        return 0 if load.failed == 0 and all(s == ("ACTIVE", h) for h, s in states.items()) else 1
    finally:
        if not args.keep:
            if cloud is not None:
                cloud.teardown()
            local.stop_engine(record, purge=True)
            remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main())
