"""The first real OpenStack image: Keystone 2025.1 (Debian trixie) built offline, started
on each engine, db_sync / fernet_setup / bootstrap run as exec jobs, and a token issued."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from controller.engines import BindMount, ContainerSpec, PortMapping, VolumeMount
from controller.engines.health import wait_healthy
from validators.model import Health

from ..conftest import ROOT, build_image

pytestmark = [pytest.mark.engine, pytest.mark.slow]
CONF = ROOT / "clouds/minimal/config/keystone/keystone.conf"
AS_KEYSTONE = ["su", "-s", "/bin/sh", "keystone", "-c"]


def token_request(password: str) -> bytes:
    return json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}).encode()


def test_keystone_image_serves_tokens(engine, unique, port):
    image = build_image(engine, ROOT / "clouds/minimal/images", "keystone-2025.1")
    name = f"{unique}-keystone"
    volumes = (VolumeMount(f"{unique}-db", "/var/lib/keystone"), VolumeMount(f"{unique}-fernet", "/etc/keystone/fernet-keys"),
               VolumeMount(f"{unique}-cred", "/etc/keystone/credential-keys"))
    common = dict(image=image, volumes=volumes, mounts=(BindMount(str(CONF), "/etc/keystone/keystone.conf"),),
                  ulimits={"nofile": (10000, 10000), "nproc": (5000, 5000)})
    # uwsgi exits when keystone cannot load (no fernet keys yet): set-up runs first, as
    # one-off job containers on the same volumes, the way the controller bootstraps a service
    steps = [AS_KEYSTONE + ["keystone-manage db_sync"],
             ["keystone-manage", "fernet_setup", "--keystone-user", "keystone", "--keystone-group", "keystone"],
             ["keystone-manage", "credential_setup", "--keystone-user", "keystone", "--keystone-group", "keystone"],
             AS_KEYSTONE + ["keystone-manage bootstrap --bootstrap-password s3cret "
                            "--bootstrap-public-url http://localhost:5000/v3 --bootstrap-region-id RegionOne"]]
    try:
        for i, argv in enumerate(steps):
            result = engine.run_job(ContainerSpec(name=f"{unique}-job{i}", command=tuple(argv), **common), timeout=300)
            assert result.exit_code == 0, (argv, result.output[-2000:])
        engine.create(ContainerSpec(name=name, ports=(PortMapping(5000, port),), stop_grace=10, **common))
        engine.start(name)
        health = wait_healthy(engine, engine.inspect(name), Health("http", port=5000, path="/v3", status=(200,),
                                                                    interval=1, start_period=60))
        assert health.ok, health.reason + engine.logs(name, 30)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/auth/tokens", data=token_request("s3cret"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    assert r.status == 201
                    assert r.headers["X-Subject-Token"]
                    body = json.loads(r.read())
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert body["token"]["project"]["name"] == "admin"
        assert "27." in engine.exec(name, ["sh", "-c", "dpkg-query -W -f='${Version}' keystone"]).output
    finally:
        engine.remove(name)
        for v in volumes:
            engine.remove_volume(v.name)
