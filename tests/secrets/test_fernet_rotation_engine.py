"""Keystone's fernet keys as a cloud secret, on real engines: every replica gets the same
key repository through the engine, and a staged rotation keeps tokens valid — one issued
before the rotation validates on a replica with the rotated keys, and one issued by that
replica validates on a replica that still has the old keys (the rolling window)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from controller import keyrepo
from controller.engines import BindMount, ContainerSpec, PortMapping, VolumeMount
from controller.engines.base import FileCopy
from controller.engines.health import wait_healthy
from validators.model import Health

from ..conftest import ROOT, build_image, free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]
CONF = ROOT / "clouds/minimal/config/keystone/keystone.conf"
AS_KEYSTONE = ["su", "-s", "/bin/sh", "keystone", "-c"]


def key_files(keys: dict, folder: str) -> tuple[FileCopy, ...]:
    return tuple(FileCopy(path, content, 0o400, "keystone") for path, content in keyrepo.files(keys, folder))


def call(port: int, method: str, headers: dict, body: bytes | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/auth/tokens", data=body, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def issue(port: int) -> str:
    body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "s3cret"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}).encode()
    status, headers = call(port, "POST", {}, body)
    assert status == 201, status
    return headers["X-Subject-Token"]


def validates(port: int, token: str) -> bool:
    return call(port, "GET", {"X-Auth-Token": token, "X-Subject-Token": token})[0] == 200


def test_staged_rotation_keeps_tokens_valid_across_replicas(engine, unique):
    image = build_image(engine, ROOT / "clouds/minimal/images", "keystone-2025.1")
    credential = key_files(keyrepo.create(), "/etc/keystone/credential-keys")
    before = keyrepo.create()
    after = keyrepo.rotate(before)
    volumes = (VolumeMount(f"{unique}-db", "/var/lib/keystone"),)
    common = dict(image=image, volumes=volumes, mounts=(BindMount(str(CONF), "/etc/keystone/keystone.conf"),),
                  ulimits={"nofile": (10000, 10000), "nproc": (5000, 5000)})
    names = []
    try:
        for i, argv in enumerate([AS_KEYSTONE + ["keystone-manage db_sync"],
                                  AS_KEYSTONE + ["keystone-manage bootstrap --bootstrap-password s3cret"]]):
            result = engine.run_job(ContainerSpec(name=f"{unique}-job{i}", command=tuple(argv), **common,
                                                  files=key_files(before, "/etc/keystone/fernet-keys") + credential),
                                    timeout=300)
            assert result.exit_code == 0, result.output[-2000:]
        ports = {}
        for label, keys in (("old", before), ("new", after)):
            name, ports[label] = f"{unique}-{label}", free_port()
            names.append(name)
            engine.create(ContainerSpec(name=name, ports=(PortMapping(5000, ports[label]),), stop_grace=5,
                                        files=key_files(keys, "/etc/keystone/fernet-keys") + credential, **common))
            engine.start(name)
            health = wait_healthy(engine, engine.inspect(name), Health("http", port=5000, path="/v3", status=(200,),
                                                                        interval=1, start_period=90))
            assert health.ok, health.reason + engine.logs(name, 30)
        deadline = time.monotonic() + 30
        while True:
            try:
                issued_before = issue(ports["old"])
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        issued_after = issue(ports["new"])
        assert validates(ports["new"], issued_before)          # its key is a secondary now
        assert validates(ports["old"], issued_after)           # the new primary was the old staged key
        purged = keyrepo.rotate(after)                         # two rotations on: the old key is gone
        assert before[1] not in purged.values()
        shown = engine.exec(names[1], ["sh", "-c", "stat -c '%U %a' /etc/keystone/fernet-keys/0; ls /etc/keystone/fernet-keys"])
        assert shown.output.split() == ["keystone", "400", "0", "1", "2"]
    finally:
        for name in names:
            engine.remove(name)
        engine.remove_volume(f"{unique}-db")
