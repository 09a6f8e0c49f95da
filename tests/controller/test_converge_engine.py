"""The controller on real engines (podman and docker): upgrades one service without
downtime, keeps the old version serving when the new one fails, converges back on
`git revert`, repairs drift, resumes after a crash, ignores invalid commits."""
from __future__ import annotations

import pytest

from tests.conftest import BASE_RECIPE, ROOT, build_image

from .webcloud import LoadGenerator, make_web_cloud

pytestmark = pytest.mark.engine


@pytest.fixture
def web(tmp_path, engine, unique, port):
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    cloud = make_web_cloud(tmp_path, engine, unique, port, images=images)
    status = cloud.reconcile()
    assert status.condition() == "Ready", status.render()
    cloud.wait_serving("2025.1")
    yield cloud
    cloud.teardown()


def test_rolling_upgrade_of_one_service_keeps_serving_and_touches_nothing_else(web):
    lb_before = web.containers("lb")
    web_before = web.containers("web")
    assert len(web_before) == 2 and len(lb_before) == 1
    load = LoadGenerator(web.url()).start()
    while load.total < 300:                       # traffic flows before the change
        pass
    web.upgrade_web("2025.2")
    status = web.reconcile()
    load.stop(minimum=2000)
    assert status.condition() == "Ready", status.render()
    assert load.failed == 0, load.errors[:5]
    assert load.total >= 2000 and load.releases.get("2025.2", 0) > 0
    assert web.containers("lb") == lb_before                  # the balancer was not touched
    after = web.containers("web")
    assert len(after) == 2 and not set(after.values()) & set(web_before.values())
    web.wait_serving("2025.2")


def test_reconcile_is_idempotent(web):
    before = web.containers()
    status = web.reconcile()
    assert status.condition() == "Ready" and web.containers() == before


def test_failing_new_version_leaves_the_old_serving_and_status_red(web):
    before = web.containers("web")
    bad = web.upgrade_web("2025.2", FAIL_MODE="unhealthy")
    status = web.reconcile()
    assert status.condition() == "Stalled" and status.reason == "RolloutFailed"
    assert status.failed_revision == bad and status.failure["logs"] is not None
    assert "did not become healthy" in status.failure["error"]
    assert web.containers("web") == before                     # old replicas untouched
    web.wait_serving("2025.1")
    again = web.reconcile()                                    # the bad commit is not retried
    assert again.condition() == "Stalled" and web.containers("web") == before


def test_crashing_new_version_is_reported_with_its_logs(web):
    web.upgrade_web("2025.2", FAIL_MODE="crash")
    status = web.reconcile()
    assert status.reason == "RolloutFailed"
    assert "FAIL_MODE=crash" in status.failure["logs"]
    web.wait_serving("2025.1")


def test_git_revert_converges_back_and_volume_data_survives(web):
    assert web.put("/data", "written-on-2025.1") == 200
    up = web.upgrade_web("2025.2")
    assert web.reconcile().condition() == "Ready"
    web.wait_serving("2025.2")
    assert web.get("/data") == (200, "written-on-2025.1")
    web.repo.git("revert", "--no-edit", up)
    status = web.reconcile()
    assert status.condition() == "Ready", status.render()
    web.wait_serving("2025.1")
    assert web.get("/data") == (200, "written-on-2025.1")
    assert status.history[0]["result"] == "applied"


def test_drift_is_repaired(web):
    victim_name, victim_id = sorted(web.containers("web").items())[0]
    web.engine.remove(victim_id)
    status = web.reconcile(drift_check=True)
    assert status.condition() == "Ready" and status.drift_repairs == 1
    assert len(web.containers("web")) == 2 and victim_name in web.containers("web")


def test_invalid_commit_is_never_applied(web):
    before = web.containers()
    data = web.service("web")
    data["release"] = "2026.2"                    # 2025.1 -> 2026.2: not an upgrade path
    data["image"] = "localhost/tidegate/web:2026.2"
    bad = web.commit_service("web", data, "skip two releases")
    status = web.reconcile()
    assert status.condition() == "Stalled" and status.reason == "ValidationFailed"
    assert status.last_attempted_revision == bad and status.last_applied_revision != bad
    assert any(f["rule"] == "transition.upgrade-path" for f in status.findings)
    assert web.containers() == before
    web.wait_serving("2025.1")


def test_unlabelled_containers_are_never_touched(web, base_image, unique):
    from controller.engines import ContainerSpec
    stranger = f"{unique}-stranger"
    web.engine.create(ContainerSpec(name=stranger, image=base_image, command=("sleep", "60"),
                                    ulimits={"nofile": (1024, 1024), "nproc": (5000, 5000)}))
    try:
        web.upgrade_web("2025.2")
        assert web.reconcile().condition() == "Ready"
        assert web.engine.inspect(stranger) is not None
    finally:
        web.engine.remove(stranger)


def test_interrupted_rollout_is_finished_without_duplicates(web):
    import threading
    web.upgrade_web("2025.2")
    cancel = threading.Event()
    seen = []

    def progress(event, step, detail):
        seen.append((event, step.action))
        if event == "done" and step.action == "wait-healthy":
            cancel.set()                            # the controller is stopped mid-rollout
    status = web.controller(progress=progress, cancel=cancel).reconcile()
    assert status.reason == "Interrupted"
    mixed = web.containers("web")
    assert len(mixed) == 3                          # one successor beside two old replicas
    status = web.reconcile()                        # restart: the next reconcile finishes the job
    assert status.condition() == "Ready", status.render()
    final = web.containers("web")
    assert len(final) == 2 and len(set(final) & set(mixed)) == 1   # the successor was reused
    web.wait_serving("2025.2")
