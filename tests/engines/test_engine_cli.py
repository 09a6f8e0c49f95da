"""`tidegate engine up|status|down` and `tidegate images build|list`, as an operator runs
them: a private engine in a directory of its own, an image built on it, the engine gone
(its PID, and only its PID) after `down`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from controller.engines import connect, local

from ..conftest import KINDS, ROOT, remove_tree

pytestmark = pytest.mark.engine
TIDEGATE = [sys.executable, "-m", "controller.cli"]


def tidegate(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(TIDEGATE + list(args), capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("kind", KINDS)
def test_engine_up_builds_images_and_down_stops_only_its_pid(kind, tmp_path):
    directory = Path(f"/tmp/tg-cli-{os.getpid()}-{kind}")     # short: socket paths ≤ 108 bytes
    # left by an instance before a reboot: its PID now belongs to an unrelated process
    unrelated = subprocess.Popen(["sleep", "600"], start_new_session=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "engine.json").write_text(json.dumps(asdict(local.LocalEngine(
        kind, str(directory), f"unix://{directory}/{kind}.sock", unrelated.pid, local.POOL_SIZE, time.time() - 60))))
    try:
        up = tidegate("engine", "up", "--kind", kind, "--dir", str(directory), "--json")
        assert up.returncode == 0, up.stderr
        record = json.loads(up.stdout)
        assert record["pid"] and record["url"].startswith("unix://") and os.path.isdir(f"/proc/{record['pid']}")
        assert record["pid"] != unrelated.pid and unrelated.poll() is None       # replaced, not signalled
        assert any(f"stale record: pid {unrelated.pid}" in note for note in record["notes"]), record
        again = tidegate("engine", "up", "--kind", kind, "--dir", str(directory))
        assert again.returncode == 0 and "already running" in again.stdout and str(record["pid"]) in again.stdout
        status = tidegate("engine", "status", "--kind", kind, "--dir", str(directory), "--json")
        assert json.loads(status.stdout)["pid"] == record["pid"]

        listing = tidegate("images", "list", "--cloud", "minimal")
        assert listing.returncode == 0 and "python-base" in listing.stdout and "localhost/tidegate/python:" in listing.stdout
        build = tidegate("images", "build", "--cloud", "minimal", "--engine", kind, "--url", record["url"], "python-base")
        assert build.returncode == 0, build.stderr
        assert "== python-base" in build.stdout and "built:" in build.stdout
        cached = tidegate("images", "build", "--cloud", "minimal", "--engine", kind, "--url", record["url"], "python-base")
        assert cached.returncode == 0 and "up to date" in cached.stdout
        engine = connect(kind, record["url"], "cli")
        assert engine.image_exists("localhost/tidegate/python:bookworm")
        engine.close()

        missing = tidegate("images", "build", "--cloud", "no-such-cloud", "--engine", kind, "--url", record["url"])
        assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no-such-cloud" in missing.stderr

        down = tidegate("engine", "down", "--kind", kind, "--dir", str(directory), "--purge")
        assert down.returncode == 0 and "stopped" in down.stdout
        assert not local.pid_alive(record["pid"])
        gone = tidegate("engine", "status", "--kind", kind, "--dir", str(directory))
        assert gone.returncode == 1 and "not running" in gone.stdout
    finally:
        unrelated.kill()
        unrelated.wait()
        leftover = local.running(directory)
        if leftover is not None:
            local.stop_engine(leftover, purge=True)
        remove_tree(directory)


def test_an_engine_url_that_does_not_answer_is_one_line_exit_2(tmp_path):
    build = tidegate("images", "build", "--cloud", "minimal", "--engine", "podman",
                     "--url", f"unix://{tmp_path}/nothing.sock", "python-base")
    assert build.returncode == 2 and build.stderr.count("\n") == 1, build.stderr
    assert "nothing.sock" in build.stderr or "unreachable" in build.stderr.lower()
