#!/usr/bin/env python3
"""Gate figures (issue #6): the whole gate's wall time and each phase's, images cached.

    bench/gate.py [web|demo|all] [podman|docker]        (default: all, podman)

web:  the web test cloud (2 replicas behind HAProxy), web 2025.1 → 2025.2.
demo: the demo cloud (clouds/demo), placement 2025.1 → 2026.1 (goal: under 3 minutes on a
      2-core machine with images cached).
A private engine is started for the run and stopped after it.
"""
from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from controller.secrets import load_identities  # noqa: E402
from gate.run import Gate  # noqa: E402
from tests.demo.democloud import DEMO_KEY  # noqa: E402


def web_change(engine, tmp: Path) -> tuple[str, str, str, str]:
    from tests.conftest import BASE_RECIPE, build_image
    from tests.controller.webcloud import make_web_cloud
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cloud = make_web_cloud(tmp, engine, "benchweb", port, images=images)
    base = cloud.repo.git("rev-parse", "HEAD")
    head = cloud.upgrade_web("2025.2")
    return str(cloud.repo.path), "benchweb", base, head


def demo_change(engine, tmp: Path) -> tuple[str, str, str, str]:
    from tests.demo.democloud import demo_repo
    repo = demo_repo(tmp / "repo")
    return str(repo.path), "demo", repo.base, repo.upgrade


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "all"
    kind = argv[1] if len(argv) > 1 else "podman"
    if which == "all":
        return max(one(w, kind) for w in ("web", "demo"))
    return one(which, kind)


def one(which: str, kind: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-gate-", dir="/tmp"))
    record = local.start_engine(kind, tmp / "engine")
    try:
        engine = connect(kind, record.url, "bench")
        repo, cloud, base, head = (demo_change if which == "demo" else web_change)(engine, tmp)
        # a first run warms the image cache (builds are not what this measures)
        keys = load_identities(DEMO_KEY) if which == "demo" else None      # the demo's secrets
        warm = Gate(repo, cloud, base, head, kind=kind, url=record.url, out=lambda line: None, rollback=False,
                    identities=keys)
        warm.run()
        t0 = time.monotonic()
        gate = Gate(repo, cloud, base, head, kind=kind, url=record.url, out=lambda line: None, identities=keys)
        report = gate.run()
        total = time.monotonic() - t0
        print(f"{which} on {kind}: gate {report.base[:8]}..{report.head[:8]} "
              f"{'PASS' if report.exit_code == 0 else 'FAIL ' + str(report.exit_code)} in {total:.1f} s "
              f"(goal < 180 s: {'met' if total < 180 else 'NOT met'})")
        for p in report.phases:
            print(f"  {p.name:<14} {p.seconds:6.1f} s  {'' if p.ok else ('skipped' if p.ok is None else 'FAILED')}"
                  f"{' ' + p.message if p.message and not p.ok else ''}")
        for label, probes in report.probes.items():
            for name, v in probes.items():
                print(f"  probes during {label}, {name}: {v['ok']} ok, {v['failed']} failed, "
                      f"longest gap {v['longest_gap']:.2f} s")
        return 0 if report.exit_code == 0 else 1
    finally:
        local.stop_engine(record, purge=True)
        from tests.conftest import remove_tree
        remove_tree(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
