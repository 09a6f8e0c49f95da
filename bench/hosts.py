#!/usr/bin/env python3
"""Remote hosts (issue 14): figures on test hosts that are separate machines (tests/hosts:
own rootfs, network namespace, sshd and podman), reached only over ssh://.

1. converging a cloud over 1, 3 and 6 hosts — a first deploy (two services per host) and
   an upgrade of a per-host service (one replica per host, `max_unavailable` = hosts, as a
   compute agent is rolled) — and the ratio of each to the 1-host figure (goal: far less
   than linear, the hosts converge in parallel);
2. the same one-service rolling upgrade (one replica, published port) on a local engine
   and on one remote host: the overhead of the remote host (goal <= 1.2x).
Images are built on each host before the clock starts (cached rootfs, imported over ssh).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller import images  # noqa: E402
from controller.engines import connect, local  # noqa: E402
from controller.engines.remote import Access  # noqa: E402
from controller.reconcile import Controller  # noqa: E402
from controller.source import Source  # noqa: E402
from tests.conftest import BASE_RECIPE  # noqa: E402
from tests.hosts import route_device, start_hosts  # noqa: E402
from tests.validators.helpers import GitRepo  # noqa: E402

RELEASES = ("2025.1", "2025.2")


def svc(project: str, hosts: list[str], release: str, port: int = 8080, **extra) -> str:
    # on several machines the health port is published on each host's address: one per service
    return yaml.safe_dump({
        "project": project, "release": release, "image": f"localhost/tidegate/svc:{release}", "hosts": hosts,
        "replicas": len(hosts), "command": ["python3", "-m", "http.server", str(port)],
        "environment": {"RELEASE": release},
        "health": {"type": "tcp", "port": port, "interval": 0.5, "start_period": 20}, **extra})


def prepare(engine) -> None:
    info, _ = images.build(engine, images.load_recipe(*BASE_RECIPE))
    for release in RELEASES:
        engine.tag(info.ref, f"localhost/tidegate/svc:{release}")


class Bench:
    def __init__(self, tmp: Path, name: str, hosts: dict, engines: dict):
        self.repo, self.name, self.hosts, self.engines = GitRepo(tmp / name), name, hosts, engines
        self.state = tmp / f"{name}-state"

    def commit(self, services: dict[str, str]) -> None:
        self.repo.commit({f"clouds/{self.name}/cloud.yaml": yaml.safe_dump({"name": self.name, "hosts": self.hosts}),
                          **{f"clouds/{self.name}/services/{k}.yaml": v for k, v in services.items()}}, "bench")

    def converge(self) -> float:
        t0 = time.perf_counter()
        status = Controller(Source(self.repo.path), self.name, state_dir=self.state,
                            engines=self.engines).reconcile("HEAD")
        seconds = time.perf_counter() - t0
        assert status.condition() == "Ready", status.render()
        return seconds

    def teardown(self) -> None:
        for e in self.engines.values():
            for c in e.list_containers({"tidegate.cloud": self.name}):
                e.remove(c.id)
            e.remove_network(f"tidegate-{self.name}")


def over_hosts(n: int, tmp: Path) -> tuple[float, float]:
    hostset = start_hosts(["podman"] * n, tmp / f"hosts{n}", log=lambda line: None)
    try:
        for h in hostset:
            assert route_device(h.address) == hostset.bridge, h.address
        engines = {h.name: connect(h.kind, h.ssh_url, h.name, Access(known_hosts=h.known_hosts, identity=h.key))
                   for h in hostset}
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(prepare, engines.values()))
        hosts = {h.name: {"engine": h.kind, "url": h.ssh_url, "address": h.address, "known_hosts": h.known_hosts}
                 for h in hostset}
        names = list(hosts)
        b = Bench(tmp, f"bench{n}", hosts, engines)

        def services(agent_release: str) -> dict[str, str]:
            out = {f"api{i}": svc(f"api{i}", [h], "2025.1", 8080 + i) for i, h in enumerate(names)}
            out["agent"] = svc("agent", names, agent_release, 9090, role="agent", expose=[9090],
                               upgrade={"max_unavailable": n})
            return out
        b.commit(services("2025.1"))
        deploy = b.converge()
        b.commit(services("2025.2"))
        upgrade = b.converge()
        b.teardown()
        for e in engines.values():
            e.close()
        return deploy, upgrade
    finally:
        hostset.stop()


def remote_vs_local(tmp: Path) -> tuple[float, float]:
    figures = []
    record = local.start_engine("podman", tmp / "local-engine")
    hostset = start_hosts(["podman"], tmp / "hosts-one", log=lambda line: None)
    try:
        h = hostset[0]
        assert route_device(h.address) == hostset.bridge
        setups = [("local", {"engine": "podman", "url": record.url}, connect("podman", record.url, "local")),
                  (h.name, {"engine": "podman", "url": h.ssh_url, "address": h.address, "known_hosts": h.known_hosts},
                   connect("podman", h.ssh_url, h.name, Access(known_hosts=h.known_hosts, identity=h.key)))]
        for host, entry, engine in setups:
            prepare(engine)
            b = Bench(tmp, f"one{host.replace('host', 'r')}", {host: entry}, {host: engine})
            b.commit({"web": svc("web", [host], "2025.1", ports=["18080:8080"], upgrade={"min_ready": 2})})
            b.converge()
            b.commit({"web": svc("web", [host], "2025.2", ports=["18080:8080"], upgrade={"min_ready": 2})})
            figures.append(b.converge())
            b.teardown()
            engine.close()
    finally:
        hostset.stop()
        local.stop_engine(record)
    return figures[0], figures[1]


def main() -> int:
    if shutil.which("mmdebstrap") is None:
        print("bench/hosts.py: needs mmdebstrap (make setup)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-hosts-"))
    try:
        results = {n: over_hosts(n, tmp) for n in (1, 3, 6)}
        d1, u1 = results[1]
        for n, (d, u) in results.items():
            print(f"{n} remote host(s): first deploy {d:.1f} s ({d / d1:.2f}x the 1-host figure, {n * 2 + n} "
                  f"containers), per-host service upgrade {u:.1f} s ({u / u1:.2f}x)")
        t_local, t_remote = remote_vs_local(tmp)
        print(f"one-service rolling upgrade: local engine {t_local:.1f} s, remote host over ssh {t_remote:.1f} s: "
              f"{t_remote / t_local:.2f}x (goal <= 1.2x: {'met' if t_remote <= 1.2 * t_local else 'NOT met'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
