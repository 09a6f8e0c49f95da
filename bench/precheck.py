#!/usr/bin/env python3
"""What the pre-upgrade check adds to the demo's placement upgrade 2025.1 → 2026.1: on a
private engine, the upgrade with the demo's precheck (`placement-status upgrade check`
from the 2026.1 image) and without it (the same commits with the `precheck:` line taken
out, which restarts nothing), alternating, ROUNDS times each; and the precheck job's own
time (the executor's progress events). A revert runs no precheck: it is not measured.

    bench/precheck.py [podman|docker] [ROUNDS]

Takes the demo tests' lock (tests/demo/conftest.py) so no demo test shares the machine.
"""
from __future__ import annotations

import fcntl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from tests.conftest import remove_tree  # noqa: E402
from tests.demo.conftest import LOCK  # noqa: E402
from tests.demo.democloud import DemoCloud, upgrade_placement  # noqa: E402


def without_precheck(files: dict, cloud: str) -> dict:
    out = dict(files)
    path = f"clouds/{cloud}/services/placement.yaml"
    text, mode = files[path]
    data = yaml.safe_load(text)              # the test cloud's files are rewritten YAML: parse it
    assert data["upgrade"]["jobs"].pop("precheck", None), f"{path} declares no precheck"
    out[path] = (yaml.safe_dump(data, sort_keys=False).encode(), mode)
    return out


def main(argv: list[str]) -> int:
    kind = next((a for a in argv if a in ("podman", "docker")), "podman")
    rounds = next((int(a) for a in argv if a.isdigit()), 3)
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-precheck-", dir="/tmp"))
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
                      "without": (without_precheck(base, demo.name),
                                  without_precheck(upgrade_placement(base, demo.name), demo.name))}
            took: dict[str, list[float]] = {"with": [], "without": []}
            jobs: list[float] = []
            started: dict[str, float] = {}

            def progress(event, step, detail) -> None:
                if step.phase != "precheck":
                    return
                if event == "start":
                    started[step.container] = time.monotonic()
                elif event in ("done", "warning"):
                    jobs.append(time.monotonic() - started.pop(step.container))
                    if event == "warning":
                        print(f"  precheck warned: {detail}", flush=True)

            for i in range(rounds):
                for label in (("with", "without") if i % 2 == 0 else ("without", "with")):
                    old, new = states[label]
                    status = demo.reconcile(demo.repo.commit(old, f"{label} precheck: 2025.1"))
                    assert status.condition() == "Ready", status.render()
                    t0 = time.monotonic()
                    status = demo.reconcile(demo.repo.commit(new, f"{label} precheck: placement 2026.1"),
                                            progress=progress)
                    t1 = time.monotonic()
                    assert status.condition() == "Ready", status.render()
                    took[label].append(t1 - t0)
                    # back to 2025.1 as an exact revert (not measured: a revert runs no precheck)
                    status = demo.reconcile(demo.repo.commit(old, f"{label} precheck: revert"))
                    assert status.condition() == "Ready", status.render()
                    print(f"{kind}: round {i + 1}, {label} precheck: upgrade {t1 - t0:.1f} s", flush=True)
            assert len(jobs) == rounds, jobs
            w, wo = statistics.median(took["with"]), statistics.median(took["without"])
            print(f"{kind}: placement upgrade, median of {rounds}: {w:.1f} s with the precheck, {wo:.1f} s "
                  f"without: {w - wo:+.1f} s ({(w - wo) / wo * 100:+.0f} %); the precheck job itself "
                  f"{statistics.median(jobs):.1f} s (median; {min(jobs):.1f}–{max(jobs):.1f} s)")
            demo.teardown()
            return 0
        finally:
            local.stop_engine(record, purge=True)
            remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
