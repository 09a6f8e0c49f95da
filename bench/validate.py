#!/usr/bin/env python3
"""Time `tidegate check` on a synthetic cloud: 1,000 services over 100 hosts, committed
to a temporary git repository; the head commit upgrades 10 services by one release.

Prints the time of a plain check and of a check with --base (transition rules), both
in-process (the library call the controller makes) and as the CLI an operator runs.
Goal (issue #2): < 1 s each.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.report import check  # noqa: E402
from validators.load import _parse  # noqa: E402

HOSTS, SERVICES, PROJECTS = 100, 1000, 25


def service(i: int, release: str) -> dict:
    project = f"proj{i % PROJECTS}"
    hosts = [f"h{(i + k) % HOSTS}" for k in range(3)]
    deps = [f"svc{j}" for j in (i - 1, i - 7) if j >= 0 and j // 40 == i // 40]
    return {"project": project, "release": release, "image": f"registry.local/{project}/svc{i}:{release}",
            "role": "agent" if i % 10 == 9 else "control", "replicas": 3, "hosts": hosts,
            "ports": [f"{20000 + i}:8080"], "expose": [8080], "depends_on": deps,
            "environment": {"LOG_LEVEL": "info", "WORKERS": 4},
            "volumes": [{"name": f"svc{i}-data", "path": "/var/lib/data"}],
            "config": [{"source": f"config/{project}.conf", "target": "/etc/app.conf"}],
            "health": {"type": "http", "port": 8080, "path": "/healthz"},
            "upgrade": {"strategy": "rolling", "max_unavailable": 1,
                        "jobs": {"expand": [{"command": ["manage", "db", "expand"]}]}}}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def build(repo: Path) -> tuple[str, str]:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.net")
    git(repo, "config", "user.name", "bench")
    cloud = repo / "clouds/big"
    (cloud / "services").mkdir(parents=True)
    (cloud / "config").mkdir()
    (cloud / "cloud.yaml").write_text(yaml.safe_dump(
        {"name": "big", "hosts": {f"h{h}": {"engine": "podman" if h % 2 else "docker"} for h in range(HOSTS)}}))
    for p in range(PROJECTS):
        (cloud / f"config/proj{p}.conf").write_text("[DEFAULT]\n")
    for i in range(SERVICES):
        (cloud / f"services/svc{i}.yaml").write_text(yaml.safe_dump(service(i, "2025.1")))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    for i in range(0, SERVICES, 100):     # one control service in each of 10 projects
        (cloud / f"services/svc{i}.yaml").write_text(yaml.safe_dump(service(i, "2025.2")))
    git(repo, "commit", "-q", "-am", "upgrade 10 services")
    return base, git(repo, "rev-parse", "HEAD")


def timed(fn, runs: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        base, head = build(repo)
        print(f"synthetic cloud: {SERVICES} services, {HOSTS} hosts, {PROJECTS} projects; head upgrades 10 services")
        def cold(**kw):
            _parse.cache_clear()        # every file parsed and schema-checked again
            return check(str(repo), **kw)
        t_state, report = timed(cold)
        t_trans, report_b = timed(lambda: cold(base=base))
        t_warm, _ = timed(lambda: check(str(repo), base=base))
        print(f"check (library, cold)    : {t_state * 1000:7.0f} ms  ({report['summary']})")
        print(f"check --base (lib, cold) : {t_trans * 1000:7.0f} ms  ({report_b['summary']})")
        print(f"check --base (lib, warm) : {t_warm * 1000:7.0f} ms  (controller steady state: unchanged blobs cached)")
        exe = [sys.executable, "-m", "controller.cli", "check", "--repo", str(repo)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t_cli, _ = timed(lambda: subprocess.run(exe, capture_output=True, env=env), runs=3)
        t_cli_b, _ = timed(lambda: subprocess.run(exe + ["--base", base], capture_output=True, env=env), runs=3)
        print(f"tidegate check (CLI)     : {t_cli * 1000:7.0f} ms")
        print(f"tidegate check --base    : {t_cli_b * 1000:7.0f} ms")
        goal = max(t_cli, t_cli_b) < 1.0
        print(f"goal < 1 s each          : {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
