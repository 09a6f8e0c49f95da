"""Pre-upgrade checks on real engines (podman and docker), with the web test cloud: a
precheck job runs from the NEW image against the running cloud (it asks the old replicas
through the service's alias) before anything of the upgrade is applied. Exit 2 blocks
the rollout with nothing replaced, 1 warns and the rollout goes on, 0 passes."""
from __future__ import annotations

import pytest

from tests.conftest import BASE_RECIPE, ROOT, build_image

from .webcloud import LoadGenerator, make_web_cloud

pytestmark = pytest.mark.engine

# Prints an oslo.upgradecheck-style row about what runs now and exits $PRECHECK_EXIT
# (the new release's environment): the check reaches the running cloud by its alias.
CHECK = ("import json, os, sys, urllib.request\n"
         "running = json.load(urllib.request.urlopen('http://web:8080/', timeout=5))['release']\n"
         "code = int(os.environ.get('PRECHECK_EXIT', '0'))\n"
         "print('Check: Schema of the running release')\n"
         "print('Result: ' + {0: 'Success', 1: 'Warning'}.get(code, 'Failure'))\n"
         "print(f'Details: the cloud runs {running}; this image is {os.environ[\"RELEASE\"]}')\n"
         "sys.exit(code)\n")


@pytest.fixture
def web(tmp_path, engine, unique, port):
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    cloud = make_web_cloud(tmp_path, engine, unique, port, images=images)
    data = cloud.service("web")
    data["upgrade"]["jobs"] = {"precheck": [{"name": "schema", "command": ["python3", "-c", CHECK], "timeout": 60}]}
    cloud.commit_service("web", data, "web: a precheck")
    status = cloud.reconcile()
    assert status.condition() == "Ready", status.render()
    cloud.wait_serving("2025.1")
    yield cloud
    cloud.teardown()


def test_a_precheck_blocks_on_failure_warns_on_1_and_passes_on_0(web):
    before = web.containers("web")
    load = LoadGenerator(web.url()).start()

    blocked = web.upgrade_web("2025.2", PRECHECK_EXIT="2")
    status = web.reconcile()
    assert (status.condition(), status.reason, status.failed_revision) == ("Stalled", "PrecheckFailed", blocked), \
        status.render()
    assert "precheck schema of web" in status.failure["error"] and "exited 2" in status.failure["error"]
    assert "Schema of the running release: Failure (the cloud runs 2025.1; this image is 2025.2)" \
        in status.failure["error"]
    assert web.containers("web") == before                  # nothing replaced, not even one replica
    assert "nothing of" in status.message and "was applied" in status.message
    web.wait_serving("2025.1")
    again = web.reconcile()                                 # the blocked commit is not retried
    assert again.reason == "PrecheckFailed" and web.containers("web") == before

    web.upgrade_web("2025.2", PRECHECK_EXIT="1")
    status = web.reconcile()
    assert status.condition() == "Ready", status.render()
    [warning] = status.precheck_warnings
    assert warning["service"] == "web" and warning["exit_code"] == 1
    assert warning["summary"] == "Schema of the running release: Warning (the cloud runs 2025.1; this image is 2025.2)"
    assert "precheck warning at" in status.render() and "1 precheck warning(s): web" in status.history[0]["summary"]
    web.wait_serving("2025.2")
    assert not set(web.containers("web").values()) & set(before.values())

    web.upgrade_web("2026.1", PRECHECK_EXIT="0")
    status = web.reconcile()
    assert status.condition() == "Ready" and status.precheck_warnings == [], status.render()
    web.wait_serving("2026.1")
    load.stop(minimum=500)
    assert load.failed == 0, (load.errors[:5], web.front_logs())
