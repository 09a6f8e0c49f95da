"""Analysis after the rollout on real engines (podman and docker), on the web test cloud.

The breakage: a config change (FAIL_MODE=proxied) makes a replica refuse every request
that carries X-Forwarded-For — a proxy-headers setting that distrusts the front. Asked
directly, as its health check and its deep checks are, each successor works, so the
rollout completes; through HAProxy (which adds the header) every request fails with 500
once no old replica is left to retry on. The analysis asks the deep check through the
front, converges the cloud back within its window, and status says RolledBack naming
the check; the next reconcile does not apply the commit again; a newer commit is applied.
A load client through the front counts what clients saw."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import BASE_RECIPE, ROOT, build_image

from .webcloud import LoadGenerator, make_web_cloud

pytestmark = pytest.mark.engine

WINDOW = 10
CHECKS = [{"name": "api", "type": "http", "path": "/", "status": [200], "body": "release"}]


@pytest.fixture
def web(tmp_path, engine, unique, port):
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    cloud = make_web_cloud(tmp_path, engine, unique, port, images=images)
    data = cloud.service("web")
    data["checks"] = CHECKS
    data["analysis"] = {"window": WINDOW, "max_failures": 0, "interval": 1}
    data["upgrade"]["min_ready"] = 2
    cloud.commit_service("web", data, "web: a deep check, analysed through the front after a rollout")
    status = cloud.reconcile()
    assert status.condition() == "Ready", status.render()
    cloud.wait_serving("2025.1")
    yield cloud
    cloud.teardown()


def test_a_change_that_fails_only_through_the_front_is_converged_back_within_the_window(web):
    base = web.repo.git("rev-parse", "HEAD")
    load = LoadGenerator(web.url("/")).start()
    bad = web.upgrade_web("2025.2", FAIL_MODE="proxied")
    status = web.reconcile()
    web.wait_serving("2025.1")
    load.stop()
    print(f"load through the front during the bad rollout and its converge-back: {load.ok} ok, "
          f"{load.failed} failed; analysis: {status.analysis}")
    assert (status.condition(), status.reason) == ("Stalled", "RolledBack"), status.render()
    assert (status.failed_revision, status.last_applied_revision) == (bad, base)
    evidence = status.analysis
    assert evidence["check"] == "api" and evidence["revision"] == bad and evidence["rolled_back"]
    assert '/ answered 500 (expected 200): {"error": "untrusted proxy", "release": "2025.2"}' in evidence["answer"]
    assert evidence["front"].startswith("lb:8080 (") and f":{web.port}" in evidence["front"]
    assert evidence["seconds"] <= WINDOW                       # over the threshold before the window ended
    assert "deep check 'api'" in status.message and "converged back to" in status.message
    assert load.ok > 0

    before = web.containers()
    again = web.reconcile()                                     # the failed commit is not applied again
    assert web.containers() == before and again.reason == "RolledBack" and again.failed_revision == bad

    load = LoadGenerator(web.url("/")).start()
    data = web.service("web")                                   # the fix: proxy headers as before
    del data["environment"]["FAIL_MODE"]
    web.commit_service("web", data, "web: proxy headers as before")
    newer = web.upgrade_web("2026.1")
    status = web.reconcile()
    load.stop(minimum=10)
    print(f"load through the front during the newer commit's rollout and analysis: {load.ok} ok, "
          f"{load.failed} failed")
    assert (status.condition(), status.reason, status.last_applied_revision) == ("Ready", "Applied", newer), \
        status.render()
    assert status.failed_revision is None and status.analysis == {}
    web.wait_serving("2026.1")
    assert load.failed == 0, (load.errors[:5], web.front_logs())
