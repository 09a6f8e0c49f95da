#!/usr/bin/env python3
"""Gate figures (issue #6): the whole gate's wall time and each phase's, images cached.

    bench/gate.py [web|demo|compute|neutron|all] [podman|docker] [--matrix]   (default: all, podman)

web:     the web test cloud (2 replicas behind HAProxy), web 2025.1 → 2025.2.
demo:    the demo cloud (clouds/demo), placement 2025.1 → 2026.1 (goal: under 3 minutes on
         a 2-core machine with images cached).
compute: the compute cloud (clouds/compute), Nova 2025.1 → 2026.1, its hooks booting
         servers and its load hooks building servers and making ports all along (goal:
         well under 10 minutes; Grenade's job takes about an hour). Not in `all`.
neutron: the compute cloud, neutron-server 2025.1 → 2026.1 (expand before the first new
         server; the rollback phase reverts it before the contract). Not in `all`.
--matrix: verify hooks between the upgrade's waves too.
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


def compute_change(engine, tmp: Path) -> tuple[str, str, str, str]:
    from tests.compute.computecloud import gate_repo
    repo = gate_repo(tmp / "repo")
    return str(repo.path), "compute", repo.base, repo.nova


def neutron_change(engine, tmp: Path) -> tuple[str, str, str, str]:
    from tests.compute.computecloud import gate_repo
    repo = gate_repo(tmp / "repo")
    return str(repo.path), "compute", repo.base, repo.neutron


CHANGES = {"web": (web_change, 180), "demo": (demo_change, 180), "compute": (compute_change, 600),
           "neutron": (neutron_change, 600)}


def main(argv: list[str]) -> int:
    matrix = "--matrix" in argv
    argv = [a for a in argv if a != "--matrix"]
    which = argv[0] if argv else "all"
    kind = argv[1] if len(argv) > 1 else "podman"
    if which == "all":
        return max(one(w, kind, matrix) for w in ("web", "demo"))
    return one(which, kind, matrix)


def warm_images(which: str, engine, repo: str, cloud: str, base: str, head: str, keys) -> None:
    """Images of base and head built (cached by recipe hash): builds are not what this
    measures. The compute cloud's are built directly; the others by a first gate run."""
    if which not in ("compute", "neutron"):
        Gate(repo, cloud, base, head, kind=engine.kind, url=engine.url, out=lambda line: None, rollback=False,
             identities=keys).run()
        return
    from controller import images
    from tests.compute.computecloud import CLOUD, NOVA, project_files, upgrade
    from validators.load import load_cloud
    from validators.tree import MemoryTree
    names, files = set(), project_files()
    for state in (files, upgrade(files, "compute", NOVA + ("neutron-server",))):
        loaded = load_cloud(MemoryTree({k: v for k, (v, _) in state.items()}), "compute")
        names |= {s.build for s in loaded.cloud.services.values() if s.build}
    for name in sorted(names):
        images.build(engine, images.load_recipe(CLOUD / "images", name))


def one(which: str, kind: str, matrix: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-gate-", dir="/tmp"))
    record = local.start_engine(kind, tmp / "engine")
    try:
        engine = connect(kind, record.url, "bench")
        change, goal = CHANGES[which]
        repo, cloud, base, head = change(engine, tmp)
        keys = load_identities(DEMO_KEY) if which != "web" else None      # the demo's key, for their secrets
        warm_images(which, engine, repo, cloud, base, head, keys)
        t0 = time.monotonic()
        gate = Gate(repo, cloud, base, head, kind=kind, url=record.url, out=lambda line: None, identities=keys,
                    matrix=matrix)
        report = gate.run()
        total = time.monotonic() - t0
        print(f"{which} on {kind}{' --matrix' if matrix else ''}: gate {report.base[:8]}..{report.head[:8]} "
              f"{'PASS' if report.exit_code == 0 else 'FAIL ' + str(report.exit_code)} in {total:.1f} s "
              f"(goal < {goal} s: {'met' if total < goal else 'NOT met'})")
        for p in report.phases:
            print(f"  {p.name:<14} {p.seconds:6.1f} s  {'' if p.ok else ('skipped' if p.ok is None else 'FAILED')}"
                  f"{' ' + p.message if p.message and not p.ok else ''}")
            for c in p.cases:
                if c.name.startswith(("wave ", "load during", "verify after wave", "verify within wave")) or not c.ok:
                    print(f"    {c.name:<40} {c.seconds:6.1f} s  {c.message[:150]}")
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
