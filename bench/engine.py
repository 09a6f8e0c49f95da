#!/usr/bin/env python3
"""Engine figures (issue #3), on private local engines of both kinds:

1. engine start time (`tidegate engine up`: private podman service / dockerd);
2. create + start + healthy of a small HTTP service through tidegate's engine layer
   (driver create/start, tidegate-run health check) vs the same with the engine's CLI
   (`run -d`, then an HTTP poll at the same interval); median of RUNS, ratio (goal ≤ 1.2x);
3. image build of the python base recipe: cold (mmdebstrap into an empty cache, import,
   metadata build), rootfs cached on a new engine (import + build), and cached (up to date);
   then another recipe naming the same image (built), and the first one again: its build
   is found by its hash tag and only the name tag moves back (no rebuild).

Usage: bench/engine.py [podman|docker ...]   (default: both)
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller import images  # noqa: E402
from controller.engines import connect, local  # noqa: E402
from controller.engines.base import ContainerSpec  # noqa: E402
from controller.engines.health import wait_healthy  # noqa: E402
from validators.model import Health  # noqa: E402

RUNS = 5
INTERVAL = 0.1          # health poll interval, the same for tidegate and the raw CLI
NET = "tg-bench"
COMMAND = ["python3", "-m", "http.server", "8080"]
ULIMITS = {"nofile": (1024, 1024), "nproc": (5000, 5000)}


def build_base(engine, cache: str | None) -> tuple[float, str]:
    old = os.environ.get("TIDEGATE_CACHE")
    if cache:
        os.environ["TIDEGATE_CACHE"] = cache
    try:
        recipe = images.load_recipe(ROOT / "clouds/minimal/images", "python-base")
        t = time.perf_counter()
        info, _ = images.build(engine, recipe)
        return time.perf_counter() - t, recipe.image
    finally:
        if cache:
            os.environ.pop("TIDEGATE_CACHE") if old is None else os.environ.__setitem__("TIDEGATE_CACHE", old)


def same_name_other_recipe(engine) -> tuple[float, float]:
    """Seconds to build a variant of python-base under the same image name, then to get
    the original back (re-tag by its hash tag)."""
    with tempfile.TemporaryDirectory(prefix="tg-bench-recipes-") as folder:
        shutil.copy(ROOT / "clouds/minimal/images/python-base.yaml", folder)
        with open(Path(folder, "python-base.yaml"), "a") as f:
            f.write("workdir: /tmp\n")                    # another recipe, the same name
        t = time.perf_counter()
        _, built = images.build(engine, images.load_recipe(folder, "python-base"))
        t_other = time.perf_counter() - t
        assert built
    t = time.perf_counter()
    _, built = images.build(engine, images.load_recipe(ROOT / "clouds/minimal/images", "python-base"))
    assert not built
    return t_other, time.perf_counter() - t


def via_tidegate(engine, image: str, name: str) -> float:
    check = Health(type="http", port=8080, path="/", interval=INTERVAL, timeout=1.0, retries=50)
    spec = ContainerSpec(name=name, image=image, command=tuple(COMMAND), network=NET, ulimits=ULIMITS)
    t = time.perf_counter()
    info = engine.create(spec)
    engine.start(info.id)
    result = wait_healthy(engine, info, check, network=NET)
    took = time.perf_counter() - t
    assert result.ok, result.reason
    return took


def via_cli(cli: list[str], env: dict, image: str, name: str) -> float:
    def run(*args):
        return subprocess.run(cli + list(args), env=env, check=True, capture_output=True, text=True).stdout

    t = time.perf_counter()
    run("run", "-d", "--name", name, "--network", NET, "--ulimit", "nofile=1024:1024",
        "--ulimit", "nproc=5000:5000", image, *COMMAND)
    ip = json.loads(run("inspect", name))[0]["NetworkSettings"]["Networks"][NET]["IPAddress"]
    while True:
        try:
            urllib.request.urlopen(f"http://{ip}:8080/", timeout=1).read()
            break
        except OSError:
            time.sleep(INTERVAL)
    return time.perf_counter() - t


def bench(kind: str) -> None:
    with tempfile.TemporaryDirectory(prefix="tg-bench-", dir="/tmp") as tmp:
        record = local.start_engine(kind, Path(tmp) / "engine")
        try:
            print(f"{kind}: engine start {record.start_seconds:.2f} s")
            engine = connect(kind, record.url, "bench")
            with tempfile.TemporaryDirectory(prefix="tg-cold-cache-", dir="/var/tmp") as cold:
                t_cold, image = build_base(engine, cold)
            # a second, fresh engine: the rootfs tar is cached, the engine has no image yet
            second = local.start_engine(kind, Path(tmp) / "engine2")
            try:
                t_import, _ = build_base(connect(kind, second.url, "bench2"), None)
            finally:
                local.stop_engine(second, purge=True)
            t_cached, image = build_base(engine, None)
            print(f"{kind}: python-base image: cold {t_cold:.1f} s (mmdebstrap + import + build), "
                  f"rootfs cached {t_import:.1f} s (import + build), up to date {t_cached * 1000:.0f} ms")
            t_other, t_back = same_name_other_recipe(engine)
            print(f"{kind}: another recipe naming the same image: built in {t_other:.1f} s; the first one "
                  f"again: re-tagged in {t_back * 1000:.0f} ms (no rebuild)")

            engine.ensure_network(NET)
            env = dict(os.environ, **record.env())
            cli = ["docker", "-H", record.url] if kind == "docker" else ["podman", "--remote", "--url", record.url]
            ours, raw = [], []
            for i in range(RUNS):           # interleaved: both see the same machine load
                ours.append(via_tidegate(engine, image, f"bench-tg-{i}"))
                raw.append(via_cli(cli, env, image, f"bench-raw-{i}"))
            for i in range(RUNS):
                for name in (f"bench-tg-{i}", f"bench-raw-{i}"):
                    engine.remove(name)
            a, b = statistics.median(ours), statistics.median(raw)
            print(f"{kind}: create + start + healthy (http), median of {RUNS}: tidegate {a:.2f} s, "
                  f"raw CLI {b:.2f} s, ratio {a / b:.2f}x (goal <= 1.2x: {'met' if a / b <= 1.2 else 'NOT met'})")
            engine.close()
        finally:
            local.stop_engine(record, purge=True)
            from tests.conftest import remove_tree
            remove_tree(Path(tmp))


def main(argv: list[str]) -> int:
    for kind in argv or ("podman", "docker"):
        bench(kind)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
