#!/usr/bin/env python3
"""What deep readiness checks cost a rolling upgrade (issue 18; goal: under 20 % on the
demo). On a private engine, the demo's placement upgrade 2025.1 → 2026.1 and its revert,
converged with the deep checks the demo declares (Keystone `GET /v3/users`, Placement
`GET /resource_providers`, a fresh token each round) and without them (the same commits
with `checks:` taken out, which restarts nothing), alternating, ROUNDS times each.

    bench/readiness.py [podman|docker] [ROUNDS]

Takes the demo tests' lock (tests/demo/conftest.py) so no demo test shares the machine.
"""
from __future__ import annotations

import fcntl
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from tests.conftest import remove_tree  # noqa: E402
from tests.demo.conftest import LOCK  # noqa: E402
from tests.demo.democloud import DemoCloud, upgrade_placement  # noqa: E402


def without_checks(files: dict, cloud: str) -> dict:
    out = dict(files)
    for service in ("keystone", "placement"):
        path = f"clouds/{cloud}/services/{service}.yaml"
        text, mode = files[path]
        # the block: `checks:` and its indented or list lines
        new = re.sub(rb"(?m)^checks:.*\n(?:[ -].*\n)*", b"", text)
        assert new != text, f"{path} declares no checks"
        out[path] = (new, mode)
    return out


def main(argv: list[str]) -> int:
    kind = next((a for a in argv if a in ("podman", "docker")), "podman")
    rounds = next((int(a) for a in argv if a.isdigit()), 2)
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-readiness-", dir="/tmp"))
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = local.start_engine(kind, tmp / "engine")
        try:
            engine = connect(kind, record.url, "bench")
            demo = DemoCloud(tmp / "demo", engine)
            demo.build_images()
            status = demo.reconcile(demo.base)
            assert status.condition() == "Ready", status.render()
            base = demo.files
            states = {"with": (base, upgrade_placement(base, demo.name)),
                      "without": (without_checks(base, demo.name),
                                  without_checks(upgrade_placement(base, demo.name), demo.name))}
            took: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
            for i in range(rounds):
                for label in (("with", "without") if i % 2 == 0 else ("without", "with")):
                    old, new = states[label]
                    assert demo.reconcile(demo.repo.commit(old, f"{label} checks: 2025.1")).condition() == "Ready"
                    t0 = time.monotonic()
                    status = demo.reconcile(demo.repo.commit(new, f"{label} checks: placement 2026.1"))
                    t1 = time.monotonic()
                    assert status.condition() == "Ready", status.render()
                    status = demo.reconcile(demo.repo.commit(old, f"{label} checks: revert"))
                    t2 = time.monotonic()
                    assert status.condition() == "Ready", status.render()
                    took[label].append((t1 - t0, t2 - t1))
                    print(f"{kind}: round {i + 1}, {label} deep checks: upgrade {t1 - t0:.1f} s, "
                          f"revert {t2 - t1:.1f} s", flush=True)
            for what, k in (("upgrade", 0), ("revert", 1)):
                w = statistics.median(t[k] for t in took["with"])
                wo = statistics.median(t[k] for t in took["without"])
                print(f"{kind}: placement {what}, median of {rounds}: {w:.1f} s with deep checks, "
                      f"{wo:.1f} s without: +{(w - wo) / wo * 100:.0f} %")
            demo.teardown()
            return 0
        finally:
            local.stop_engine(record, purge=True)
            remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
