"""Issue 18's case on the real demo: a change to Placement's config with a wrong
`[keystone_authtoken]` service password. Each successor answers `GET /` with 200 (its
health check passes); it cannot validate a token it has not seen, so its deep check
(`GET /resource_providers` with a fresh token) fails: the old replicas keep serving,
status names the check and the answer, and clients asking with a FRESH token for every
request through HAProxy see no failure."""
from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass, field

import pytest
import yaml

from controller.secrets import Vault, encrypt
from validators.tree import MemoryTree

from .democloud import DemoCloud
from .test_demo import ids

pytestmark = [pytest.mark.engine, pytest.mark.slow]

def login(password: str) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": password, "domain": {"id": "default"}}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}


@dataclass
class FreshTokens:
    """One client: a new token from Keystone, then GET /resource_providers with it, through HAProxy."""
    keystone: str
    placement: str
    password: str                    # the admin's: the demo's secret keystone-admin
    ok: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _one(self) -> None:
        req = urllib.request.Request(self.keystone.rstrip("/") + "/auth/tokens", data=json.dumps(login(self.password)).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            token = r.headers["X-Subject-Token"]
        req = urllib.request.Request(self.placement.rstrip("/") + "/resource_providers",
                                     headers={"X-Auth-Token": token})
        with urllib.request.urlopen(req, timeout=10) as r:
            json.loads(r.read())["resource_providers"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._one()
                self.ok += 1
            except (OSError, ValueError, KeyError) as err:       # HTTPError is an OSError
                self.failed += 1
                if len(self.errors) < 10:
                    self.errors.append(repr(err))

    def start(self) -> "FreshTokens":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_wrong_service_password_in_placement_replaces_no_replica(engine, tmp_path):
    demo = DemoCloud(tmp_path, engine)
    try:
        demo.build_images()
        status = demo.reconcile(demo.base)
        assert status.condition() == "Ready", status.render()
        before = ids(demo, "placement")
        # placement's keystone_authtoken password is the secret placement-keystone: the
        # change encrypts a wrong one (Keystone's user keeps the right one)
        conf, _ = demo.files[f"clouds/{demo.name}/config/placement/placement.conf"]
        assert b"password = ${secret:placement-keystone}\n" in conf
        cloud_yaml, _ = demo.files[f"clouds/{demo.name}/cloud.yaml"]
        recipients = yaml.safe_load(cloud_yaml)["secrets"]["recipients"].values()
        path = f"clouds/{demo.name}/secrets/placement-keystone.age"
        demo.files = {**demo.files, path: (encrypt(b"not-the-placement-password", recipients), demo.files[path][1])}
        bad = demo.repo.commit(demo.files, "placement: wrong keystone_authtoken password")
        admin = Vault.of(MemoryTree({k: v for k, (v, _) in demo.files.items()}), f"clouds/{demo.name}",
                         demo.identities).text("keystone-admin")
        clients = [FreshTokens(demo.url("keystone"), demo.url("placement"), admin).start() for _ in range(2)]
        try:
            status = demo.reconcile(bad)
        finally:
            for c in clients:
                c.stop()
        ok, failed = sum(c.ok for c in clients), sum(c.failed for c in clients)
        error = (status.failure or {}).get("error", "")
        print(f"fresh-token requests through HAProxy during the failed rollout: {ok} ok, {failed} failed; "
              f"status: {error}")
        assert status.condition() == "Stalled" and status.reason == "RolloutFailed", status.render()
        assert "failed its deep check 'resource-providers': GET http://" in error, error
        assert "/resource_providers answered " in error and "(expected 200)" in error, error
        assert ids(demo, "placement") == before                       # both old replicas serve
        assert failed == 0 and ok > 0, ([e for c in clients for e in c.errors], demo.front_log())
    finally:
        demo.teardown()
