#!/usr/bin/env python3
"""Controller figures (issue #4).

1. plan time for a 1,000-service / 100-host cloud (pure planner; goal < 0.5 s), for a
   converged cloud (nothing to do) and for an upgrade of 10 services; the hosts are
   separate machines (ssh://, addresses), so the cross-host topology is derived too
   (`--plan-only` stops after this part);
2. commit → first action latency with no webhook (goal < 2 s): `tidegate run`'s service
   loop on a local repository (watchdog on the refs), from `git commit` returning to the
   executor starting the first step of the change, on a real engine;
3. a one-service rolling upgrade's wall time vs raw engine commands (needs an engine).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.desired import Container, Observed, desired_state  # noqa: E402
from controller.plan import plan  # noqa: E402
from validators.load import load_cloud  # noqa: E402
from validators.tree import MemoryTree  # noqa: E402

HOSTS, SERVICES = 100, 1000


def cloud_files(upgraded: set[int]) -> dict:
    # 100 machines reached over ssh: the topology (ports on each host's address, /etc/hosts
    # lines of what a service depends on) is derived and hashed for every service
    files = {"clouds/big/cloud.yaml": yaml.safe_dump(
        {"name": "big", "hosts": {f"h{h}": {"engine": "podman", "address": f"10.250.{h // 200}.{h % 200 + 10}",
                                            "url": f"ssh://root@10.250.{h // 200}.{h % 200 + 10}/run/podman/podman.sock"}
                                  for h in range(HOSTS)}})}
    for i in range(SERVICES):
        release = "2025.2" if i in upgraded else "2025.1"
        files[f"clouds/big/services/svc{i}.yaml"] = yaml.safe_dump({
            "project": f"p{i % 25}", "release": release, "image": f"img/svc{i}:{release}", "replicas": 3,
            "hosts": [f"h{(i + k) % HOSTS}" for k in range(3)],
            "depends_on": [f"svc{j}" for j in (i - 1,) if j >= 0 and j // 40 == i // 40],
            "expose": [10000 + i], "health": {"type": "http", "port": 10000 + i},
            "upgrade": {"jobs": {"expand": [{"command": ["m", "expand"]}], "contract": [{"command": ["m", "contract"]}]}}})
    return files


def desired(upgraded=frozenset()):
    loaded = load_cloud(MemoryTree(cloud_files(set(upgraded))), "big")
    return desired_state(loaded.cloud, loaded.tree, "head")


def observed_for(des) -> Observed:
    out = []
    for name, ds in des.services.items():
        for r, host in enumerate(ds.service.placement):
            out.append(Container(host, f"{name}-{r}", f"big-{name}-{r}-{ds.hash[:8]}", name, r, ds.hash,
                                 str(ds.service.release), "running"))
    return Observed(tuple(out))


def timed(fn, runs=7):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def rolling_upgrade_bench(kind: str) -> None:
    """A one-service rolling upgrade (2 replicas) by tidegate vs the same steps by hand
    with the engine's CLI: run the successor, poll it until healthy, leave it min_ready
    seconds (as tidegate does), stop and remove the old replica, for each replica."""
    import json
    import subprocess
    import tempfile
    import urllib.request

    from controller.engines import connect, local
    from tests.conftest import BASE_RECIPE, build_image
    from tests.controller.webcloud import make_web_cloud

    with tempfile.TemporaryDirectory(prefix="tg-bench-") as tmp:
        record = local.start_engine(kind, Path(tmp) / "engine")
        try:
            engine = connect(kind, record.url, "local")
            images = {"python": build_image(engine, *BASE_RECIPE),
                      "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cloud = make_web_cloud(Path(tmp), engine, "bench", port, images=images)
            cloud.reconcile()
            cloud.upgrade_web("2025.2")
            hold = cloud.controller().target("HEAD").desired.services["web"].service.upgrade.min_ready
            t0 = time.perf_counter()
            status = cloud.reconcile()
            t_tidegate = time.perf_counter() - t0
            assert status.condition() == "Ready", status.render()

            # the same by hand: docker/podman CLI against the same engine
            env = dict(os.environ, **record.env())
            cli = [kind] if kind == "docker" else ["podman", "--remote", "--url", record.url]
            if kind == "docker":
                cli += ["-H", record.url]
            mount = cloud.folder / "config/web/server.py"      # the committed file tidegate puts in
            net = "tidegate-bench"

            def run(*args):
                return subprocess.run(cli + list(args), env=env, check=True, capture_output=True, text=True).stdout.strip()
            for i in range(2):
                run("run", "-d", "--name", f"raw-{i}", "--network", net, "--network-alias", "rawweb",
                    "-e", "RELEASE=2025.1", "-v", f"{mount}:/srv/server.py:ro", "--ulimit", "nofile=1024:1024",
                    "--ulimit", "nproc=5000:5000", images["python"], "python3", "/srv/server.py")
            t0 = time.perf_counter()
            for i in range(2):
                run("run", "-d", "--name", f"raw-new-{i}", "--network", net, "--network-alias", "rawweb",
                    "-e", "RELEASE=2025.2", "-v", f"{mount}:/srv/server.py:ro", "--ulimit", "nofile=1024:1024",
                    "--ulimit", "nproc=5000:5000", images["python"], "python3", "/srv/server.py")
                ip = json.loads(run("inspect", f"raw-new-{i}"))[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
                while True:
                    try:
                        urllib.request.urlopen(f"http://{ip}:8080/healthz", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.5)       # the same interval tidegate's check uses
                time.sleep(hold)              # as tidegate: the successor stays healthy min_ready s
                run("stop", "-t", "10", f"raw-{i}")
                run("rm", f"raw-{i}")
            t_raw = time.perf_counter() - t0
            for i in range(2):
                run("rm", "-f", f"raw-new-{i}")
            cloud.teardown()
            print(f"{kind}: one-service rolling upgrade (2 replicas): tidegate {t_tidegate:.2f} s "
                  f"(validate + observe + plan + execute), raw CLI {t_raw:.2f} s, ratio {t_tidegate / t_raw:.2f}x")
        finally:
            local.stop_engine(record, purge=True)


def latency_bench(kind: str = "podman", runs: int = 5) -> None:
    """commit → first executor step, through the same Service loop `tidegate run` uses."""
    import socket
    import tempfile
    import threading

    from controller.engines import connect, local
    from controller.reconcile import Controller
    from controller.service import Service, open_branch
    from tests.conftest import BASE_RECIPE, build_image, remove_tree
    from tests.controller.webcloud import make_web_cloud

    with tempfile.TemporaryDirectory(prefix="tg-bench-", dir="/tmp") as tmp:
        record = local.start_engine(kind, Path(tmp) / "engine")
        try:
            engine = connect(kind, record.url, "local")
            images = {"python": build_image(engine, *BASE_RECIPE),
                      "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            cloud = make_web_cloud(Path(tmp), engine, "lat", port, images=images)
            first_step = threading.Event()

            def progress(event, step, detail):
                if event == "start":
                    first_step.set()
            branch = open_branch(str(cloud.repo.path), "main", cloud.state_dir, "lat")
            ctl = Controller(branch.source, "lat", state_dir=cloud.state_dir, engines={"local": engine},
                             progress=progress)
            idle = threading.Event()
            reconcile = ctl.reconcile

            def traced(*args, **kw):
                idle.clear()
                try:
                    return reconcile(*args, **kw)
                finally:
                    idle.set()
            ctl.reconcile = traced
            service = Service(ctl, branch, cloud="lat", poll=30, drift_interval=0)
            loop = threading.Thread(target=service.run, daemon=True)
            loop.start()
            first_step.wait(120)                          # the initial deploy
            latencies = []
            for i in range(runs):
                time.sleep(0.5)
                idle.wait(300)                            # the previous change is converged
                first_step.clear()
                t0 = time.perf_counter()
                cloud.commit_service("web", {**cloud.service("web"), "replicas": 3 if i % 2 == 0 else 2}, f"scale {i}")
                if not first_step.wait(30):
                    raise SystemExit("no action within 30 s")
                latencies.append(time.perf_counter() - t0)
            idle.wait(300)
            service.stop()
            loop.join(120)
            cloud.teardown()
            print(f"{kind}: commit → first action (tidegate run, local repo, no webhook), {runs} commits: "
                  f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                  f"(goal < 2 s: {'met' if max(latencies) < 2 else 'NOT met'}; Argo CD polls every 180 s, "
                  f"Flux at the source interval, commonly 60 s)")
        finally:
            local.stop_engine(record, purge=True)
            remove_tree(Path(tmp))


def main() -> int:
    base = desired()
    observed = observed_for(base)
    head = desired(upgraded={i for i in range(0, SERVICES, 100)})
    t_noop, p_noop = timed(lambda: plan(base, observed))
    t_up, p_up = timed(lambda: plan(head, observed))
    print(f"plan, converged cloud ({SERVICES} services, {HOSTS} hosts, {len(observed.containers)} containers): "
          f"{t_noop * 1000:.0f} ms, {len(p_noop.steps)} steps")
    print(f"plan, 10 services upgraded: {t_up * 1000:.0f} ms, {len(p_up.steps)} steps in {len(p_up.waves)} wave(s)")
    print(f"goal < 500 ms: {'met' if max(t_noop, t_up) < 0.5 else 'NOT met'}")
    files = cloud_files({i for i in range(0, SERVICES, 100)})

    def from_yaml():
        from validators.check import check_state
        loaded = load_cloud(MemoryTree(files), "big")
        assert not [f for f in check_state(loaded) if f.severity == "error"]
        return plan(desired_state(loaded.cloud, loaded.tree, "head"), observed)
    t_all, _ = timed(from_yaml, runs=3)
    print(f"the same from its YAML (load, validate, resolve specs, plan — `tidegate plan` short of "
          f"observing the engines): {t_all * 1000:.0f} ms")
    if "--plan-only" in sys.argv:
        return 0
    latency_bench("podman")
    for kind in ("podman", "docker"):
        rolling_upgrade_bench(kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
