"""Secret files reach a container through the engine's archive API, with their mode and
owner, before it starts — and their content is nowhere in what the engine tells."""
from __future__ import annotations

import json

import pytest

from controller.engines import ContainerSpec, EngineError
from controller.engines.base import FileCopy

pytestmark = pytest.mark.engine
LIMITS = {"nofile": (1024, 1024), "nproc": (5000, 5000)}
VALUE = b"s3cret-9d1f0e"


def spec(name, image, command, **kw) -> ContainerSpec:
    return ContainerSpec(name=name, image=image, command=tuple(command), ulimits=LIMITS, stop_grace=1, **kw)


def raw_inspect(engine, name) -> dict:
    """What `podman inspect` / `docker inspect` print: the engine's own answer."""
    if engine.kind == "podman":
        return engine.api.get(f"/containers/{name}/json").json()
    return engine.api.inspect_container(name)


def test_secret_file_is_in_the_container_with_its_mode_and_owner(engine, base_image, unique, cleanup):
    name = f"{unique}-job"
    cleanup["containers"].append(name)
    show = ("import os; s = os.stat('/etc/app/new/db.conf'); "
            "print(oct(s.st_mode & 0o777), s.st_uid, s.st_gid, open('/etc/app/new/db.conf').read())")
    files = (FileCopy("/etc/app/new/db.conf", b"password = " + VALUE, 0o440, "nobody"),)
    result = engine.run_job(spec(name, base_image, ["python3", "-c", show], files=files), timeout=60)
    assert result.exit_code == 0, result.output
    mode, uid, gid, text = result.output.split(" ", 3)
    assert (mode, uid) == ("0o440", "65534") and text.strip() == "password = " + VALUE.decode()


def test_secret_file_content_is_not_in_inspect_output(engine, base_image, unique, cleanup):
    name = f"{unique}-svc"
    cleanup["containers"].append(name)
    engine.create(spec(name, base_image, ["sleep", "30"], files=(FileCopy("/run/x", VALUE, 0o400),)))
    info = engine.inspect(name)
    raw = json.dumps(raw_inspect(engine, name))
    assert VALUE.decode() not in raw and VALUE.decode() not in repr(info)
    assert VALUE.decode() not in repr(spec(name, base_image, ["x"], files=(FileCopy("/run/x", VALUE),)))


def test_unknown_owner_is_one_line_and_leaves_no_container(engine, base_image, unique, cleanup):
    name = f"{unique}-bad"
    cleanup["containers"].append(name)
    with pytest.raises(EngineError) as err:
        engine.create(spec(name, base_image, ["true"], files=(FileCopy("/run/x", VALUE, 0o400, "nosuchuser"),)))
    assert "nosuchuser" in str(err.value) and "\n" not in str(err.value)
    assert engine.inspect(name) is None
