"""Deep readiness checks on real engines (podman and docker), on the web test cloud: a
successor that passes its health check but cannot do real work (it cannot validate a
fresh token, as Placement with a wrong service password) never joins its alias, no old
replica goes, a client asking with a FRESH token for every request through the front
sees no failure, and status names the check and the answer."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
import yaml

from tests.conftest import BASE_RECIPE, ROOT, build_image

from .webcloud import make_web_cloud

pytestmark = pytest.mark.engine

AUTH = {"admin": {"service": "web", "port": 8080, "user": "admin", "project": "admin",
                  "password": {"service": "web", "env": "AUTH_PASSWORD"}}}
CHECKS = [{"name": "things", "type": "http", "path": "/things", "status": [200], "body": "things", "auth": "admin"},
          {"name": "python", "type": "exec", "command": ["python3", "-c", "import json"]}]


@pytest.fixture
def web(tmp_path, engine, unique, port):
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    cloud = make_web_cloud(tmp_path, engine, unique, port, images=images)
    cloud_yaml = yaml.safe_load((cloud.folder / "cloud.yaml").read_text())
    data = cloud.service("web")
    data["environment"]["AUTH_PASSWORD"] = "web-admin"
    data["checks"] = CHECKS
    data["upgrade"]["min_ready"] = 2
    cloud.repo.commit({f"clouds/{unique}/cloud.yaml": yaml.safe_dump({**cloud_yaml, "auth": AUTH}, sort_keys=False),
                       f"clouds/{unique}/services/web.yaml": yaml.safe_dump(data, sort_keys=False)},
                      "web: deep checks with a token")
    status = cloud.reconcile()
    assert status.condition() == "Ready", status.render()
    cloud.wait_serving("2025.1")
    yield cloud
    cloud.teardown()


@dataclass
class FreshTokenLoad:
    """Through the front, as fast as one client goes: a new token, then GET /things with it."""
    base: str
    ok: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _one(self) -> None:
        login = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "password": "web-admin", "domain": {"name": "Default"}}}}}}
        req = urllib.request.Request(self.base + "/v3/auth/tokens", data=json.dumps(login).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            token = r.headers["X-Subject-Token"]
        req = urllib.request.Request(self.base + "/things", headers={"X-Auth-Token": token})
        with urllib.request.urlopen(req, timeout=10) as r:
            json.loads(r.read())["things"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._one()
                self.ok += 1
            except (OSError, ValueError, KeyError) as err:      # HTTPError is an OSError
                self.failed += 1
                body = err.read()[:200] if isinstance(err, urllib.error.HTTPError) else b""
                self.errors.append(f"{err!r} {body!r}")          # a replica's 503 or the front's

    def start(self) -> "FreshTokenLoad":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_successor_that_cannot_validate_fresh_tokens_never_replaces_an_old_replica(web):
    # a good upgrade passes its deep checks (tokens asked of the serving replicas)
    web.upgrade_web("2025.2")
    status = web.reconcile()
    assert status.condition() == "Ready", status.render()
    before = web.containers("web")
    load = FreshTokenLoad(web.url("").rstrip("/")).start()
    bad = web.upgrade_web("2026.1", TOKEN_KEY="not-the-clouds-key")       # healthy; GET / answers too
    status = web.reconcile()
    load.stop()
    assert status.condition() == "Stalled" and status.reason == "RolloutFailed", status.render()
    assert status.failed_revision == bad
    error = status.failure["error"]
    assert "is healthy but failed its deep check 'things': GET http://" in error, error
    assert '/things answered 503 (expected 200): {"error": "cannot validate the token", "release": "2026.1"}' in error
    print(f"fresh-token requests through the front: {load.ok} ok, {load.failed} failed; status: {error}")
    assert web.containers("web") == before                      # both old replicas still serve
    assert load.failed == 0 and load.ok > 10, f"{load.ok} ok; {load.errors[:5]}\n{web.front_logs()}"
    web.wait_serving("2025.2")
