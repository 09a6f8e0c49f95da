"""One controller per cloud across machines, on real engines (podman and docker): the lease
on the cloud's hosts lives in the engine, so a second controller with another state
directory (another machine, or this one after its state directory was deleted) refuses
to converge until the first one's lease expires or is broken."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from controller.lease import Lease, LeaseHeld, read
from tests.conftest import ROOT

from .test_volumes_engine import Clouds, clouds  # noqa: F401 — the fixture

pytestmark = pytest.mark.engine


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_a_second_controller_is_refused_until_the_first_ones_lease_expires(engine, unique, tmp_path):
    hosts = {"local": engine}
    first = Lease(hosts, unique, tmp_path / "one", ttl=2).acquire()       # not renewed: a controller that died
    second = Lease(hosts, unique, tmp_path / "two", ttl=2)
    try:
        with pytest.raises(LeaseHeld, match=f"held by the controller .*{tmp_path / 'one'}.*--break-lease"):
            second.acquire()
        assert second.held == set()
        wait_for(lambda: _try(second), 15, "the expired lease taken over")
        assert [r.holder for r in read(engine, unique)] == [str(second.me)]
        assert first.renew() is False                                     # the first one learns it lost
    finally:
        second.release()
        first.release()
    assert read(engine, unique) == []


def _try(lease: Lease) -> bool:
    try:
        lease.acquire()
        return True
    except LeaseHeld:
        return False


def test_apply_is_refused_while_run_holds_the_cloud_even_after_its_state_dir_was_deleted(clouds: Clouds, unique, tmp_path):
    clouds.add(unique, "data")                       # converged once (no lease taken by the library call)
    engine = ("--engine-url", f"{clouds.engine.kind}={clouds.engine.url}")
    # short enough to see it renewed, long enough that a starved renewal (an engine call
    # that took over 2 s at load 20, once) does not let the lease lapse under the test
    env = {**os.environ, "TIDEGATE_LEASE_TTL": "8"}

    def apply(state, *extra):
        return subprocess.run([sys.executable, "-m", "controller.cli", "apply", "--repo", str(clouds.repo.path),
                               "--cloud", unique, "--state-dir", str(state), *engine, *extra],
                              capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    run = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", "--repo", str(clouds.repo.path),
                            "--cloud", unique, "--state-dir", str(tmp_path / "one"), *engine, "--poll", "1",
                            "--drift-interval", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT, env=env)
    try:
        status = tmp_path / "one" / unique / "status.json"
        wait_for(lambda: status.exists() and json.loads(status.read_text()).get("last_applied_revision"), 60,
                 "run applied the branch")
        # renewed twice (every ttl/4: 2 s)
        wait_for(lambda: any(r.generation >= 3 for r in read(clouds.engine, unique)), 30, "the lease renewed")
        refused = apply(tmp_path / "two")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "held by the controller" in refused.stderr and str(tmp_path / "one") in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        shutil.rmtree(tmp_path / "one")                # its state directory deleted under it: still refused
        assert apply(tmp_path / "one").returncode == 2
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.stderr.read()
        assert read(clouds.engine, unique) == []                          # released on the way out
        again = apply(tmp_path / "two")
        assert again.returncode == 0, again.stdout + again.stderr
        assert read(clouds.engine, unique) == []
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)


def test_break_lease_takes_the_cloud_from_a_controller_that_is_gone(clouds: Clouds, unique, tmp_path):
    clouds.add(unique, "data")
    gone = Lease({"local": clouds.engine}, unique, tmp_path / "gone", ttl=3600).acquire()
    argv = [sys.executable, "-m", "controller.cli", "down", "--repo", str(clouds.repo.path), "--cloud", unique,
            "--state-dir", str(tmp_path / "mine"), "--engine-url", f"{clouds.engine.kind}={clouds.engine.url}"]
    try:
        refused = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert refused.returncode == 2 and "--break-lease" in refused.stderr, refused.stdout + refused.stderr
        assert clouds.store(unique).running                               # down touched nothing
        done = subprocess.run(argv + ["--break-lease"], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert clouds.engine.list_containers({"tidegate.cloud": unique}) == []
    finally:
        gone.release()
