#!/usr/bin/env python3
"""Failed and retried requests through the demo's HAProxy over N placement rollouts.

Placement is upgraded to 2026.1 and reverted, again and again, while clients ask it
through HAProxy as fast as they go, each request on a fresh connection (the gate's
probe client). Per rollout it prints the requests made and the failed ones; at the
end, the rates over all rollouts and the requests HAProxy had to retry (from its log:
`option dontlog-normal` logs every retried request).

A failure is rare (CI: 1 request of 14,927) and retries are its precursor: a request
fails once its retries are spent. `--front FILE` runs the front with another
haproxy.cfg, e.g. the one before a change, to compare the two on one machine.

    bench/demo_rollouts.py [podman|docker] [--rollouts N] [--clients N] [--front FILE]

Measured on this 2-core machine (podman, 2 clients, other work beside it), the same way:
- before `option http-server-close` (857858c): 38 rollouts (30 beside a second podman
  engine creating and removing containers with published ports), 415,754 requests,
  0 failed, 3,423 retried (1 in 121): 203 of them twice, 7 three times, their last retry;
- with it: 16 rollouts, 150,745 requests, 0 failed, 88 retried (1 in 1,713), each once
  (a replica that stopped refused it).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.engines import connect, local  # noqa: E402
from gate.probes import get  # noqa: E402
from tests.conftest import remove_tree  # noqa: E402
from tests.demo.democloud import DemoCloud  # noqa: E402

RETRIES = re.compile(r" \d+/\d+/\d+/\d+/\+?(\d+) \d+/\d+ \"")     # actconn/feconn/beconn/srvconn/retries


class Clients:
    """`n` clients asking `url` back to back, each request on a new connection."""

    def __init__(self, url: str, n: int):
        self.url, self.ok, self.failed, self.errors = url, 0, 0, []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status, error = get(self.url)
            with self._lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {error or f'HTTP {status}'}")

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def retried(demo) -> Counter:
    """Requests HAProxy retried, by their number of retries (1 to `retries`)."""
    fronts = demo.engine.list_containers({"tidegate.cloud": demo.name, "tidegate.service": "haproxy"})
    found = Counter()
    for c in fronts:
        for line in demo.engine.logs(c.id, tail=None).splitlines():
            m = RETRIES.search(line)
            if m and int(m.group(1)):
                found[int(m.group(1))] += 1
    return found


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", nargs="?", default="podman", choices=("podman", "docker"))
    ap.add_argument("--rollouts", type=int, default=10)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--front", type=Path, help="haproxy.cfg to run the front with (default: the committed one)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-rollouts-", dir="/tmp"))
    record = local.start_engine(args.kind, tmp / "engine")
    demo = None
    try:
        demo = DemoCloud(tmp / "demo", connect(args.kind, record.url, "bench"))
        if args.front:
            path = f"clouds/{demo.name}/config/haproxy/haproxy.cfg"
            demo.files = {**demo.files, path: (args.front.read_bytes(), demo.files[path][1])}
            demo.base = demo.repo.commit(demo.files, f"front config from {args.front}")
        demo.build_images()
        status = demo.reconcile(demo.base)
        assert status.condition() == "Ready", status.render()
        clients = Clients(demo.url("placement"), args.clients)
        try:
            for i in range(args.rollouts):
                rev = demo.commit_upgrade() if i % 2 == 0 else demo.revert(demo.repo.git("rev-parse", "HEAD"))
                before, failed_before, t0 = clients.total, clients.failed, time.monotonic()
                status = demo.reconcile(rev)
                assert status.condition() == "Ready", status.render()
                print(f"rollout {i + 1} ({'up' if i % 2 == 0 else 'back'}): {time.monotonic() - t0:.1f} s, "
                      f"{clients.total - before} requests, {clients.failed - failed_before} failed", flush=True)
        finally:
            clients.stop()
        by_count = retried(demo)
        total_retried = sum(by_count.values())
        print(f"{args.kind}, {args.rollouts} rollouts, {args.clients} clients: {clients.total} requests, "
              f"{clients.failed} failed, {total_retried} retried"
              + (f" (1 in {clients.total // total_retried})" if total_retried else "")
              + f"; by retries: {dict(sorted(by_count.items()))}")
        for error in clients.errors[:10]:
            print("  " + error)
        return 1 if clients.failed else 0
    finally:
        if demo is not None:
            demo.teardown()
        local.stop_engine(record, purge=True)
        remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
