#!/usr/bin/env python3
"""What the analysis after a rollout adds to it (issue 18): it should add its window and
nothing more. On a private engine, the web test cloud (two replicas behind HAProxy, one
http deep check) is upgraded and the upgrade is reverted, with `analysis: {window: W}`
and with `window: 0` (off; changing it restarts nothing), alternating, ROUNDS times each.
Prints each round and the medians: with − without, and what is left once W is taken off.

    bench/analysis.py [podman|docker] [ROUNDS] [--window W]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from tests.conftest import BASE_RECIPE, build_image, free_port, remove_tree  # noqa: E402
from tests.controller.webcloud import make_web_cloud  # noqa: E402

CHECKS = [{"name": "api", "type": "http", "path": "/", "status": [200], "body": "release"}]


def main(argv: list[str]) -> int:
    kind = next((a for a in argv if a in ("podman", "docker")), "podman")
    rounds = next((int(a) for a in argv if a.isdigit()), 2)
    window = float(argv[argv.index("--window") + 1]) if "--window" in argv else 10.0
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-analysis-", dir="/tmp"))
    record = local.start_engine(kind, tmp / "engine")
    try:
        engine = connect(kind, record.url, "bench")
        images = {"python": build_image(engine, *BASE_RECIPE),
                  "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
        web = make_web_cloud(tmp, engine, "bench", free_port(), images=images)

        def state(release: str, analysed: bool) -> str:
            data = web.service("web")
            before = dict(data)
            data.update(release=release, image=f"localhost/tidegate/web:{release}", checks=CHECKS,
                        analysis={"window": window if analysed else 0, "interval": 1})
            data["environment"] = {**data["environment"], "RELEASE": release}
            if data == before:
                return web.repo.git("rev-parse", "HEAD")
            return web.commit_service("web", data, f"web {release}, analysis {'on' if analysed else 'off'}")

        def converge(rev: str) -> float:
            t0 = time.monotonic()
            status = web.reconcile(rev)
            assert status.condition() == "Ready" and status.last_applied_revision == rev, status.render()
            return time.monotonic() - t0

        converge(state("2025.1", False))
        took: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for i in range(rounds):
            for label in (("with", "without") if i % 2 == 0 else ("without", "with")):
                analysed = label == "with"
                converge(state("2025.1", analysed))            # a settings change: restarts nothing
                up = converge(state("2025.2", analysed))
                back = converge(state("2025.1", analysed))     # the revert: a downgrade, analysed too
                took[label].append((up, back))
                print(f"{kind}: round {i + 1}, analysis {label} ({window:g} s window): upgrade {up:.1f} s, "
                      f"revert {back:.1f} s", flush=True)
        for what, k in (("upgrade", 0), ("revert", 1)):
            w = statistics.median(t[k] for t in took["with"])
            wo = statistics.median(t[k] for t in took["without"])
            print(f"{kind}: web {what}, median of {rounds}: {w:.1f} s with a {window:g} s analysis, {wo:.1f} s "
                  f"without: +{w - wo:.1f} s ({w - wo - window:+.1f} s beyond the window)")
        web.teardown()
        return 0
    finally:
        local.stop_engine(record, purge=True)
        remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
