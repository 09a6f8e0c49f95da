"""Fixtures for tests that touch real container engines.

Each xdist worker starts its own private engines (podman and docker) under a temporary
directory, lazily, the first time a test needs one, and stops them by PID when the
session ends — also when tests fail. Images come from the offline builder; rootfs
tarballs are cached across workers and runs in $TIDEGATE_CACHE.

A missing engine binary FAILS the tests (it does not skip them): `make test` installs
what they need.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from controller import images
from controller.engines import connect, local

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("podman", "docker")
BASE_RECIPE = (ROOT / "clouds/minimal/images", "python-base")


class EngineFarm:
    """Private engine instances for one test session (one xdist worker)."""

    def __init__(self, base: Path):
        self.base = base
        self.records: dict[str, local.LocalEngine] = {}

    def get(self, kind: str, slot: int = 0) -> local.LocalEngine:
        key = f"{kind}{slot}"
        if key not in self.records:
            self.records[key] = local.start_engine(kind, self.base / key)
        return self.records[key]

    def stop_all(self) -> None:
        for record in self.records.values():
            local.stop_engine(record, purge=True)
        self.records.clear()


@pytest.fixture(scope="session")
def farm(tmp_path_factory):
    # a short path: unix socket paths are limited to 108 bytes
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    base = Path(f"/tmp/tg-{worker}-{uuid.uuid4().hex[:6]}")
    f = EngineFarm(base)
    yield f
    f.stop_all()
    if not os.environ.get("TIDEGATE_KEEP_FARM"):       # images and layers: ~1 GB per worker
        remove_tree(base)


def remove_tree(base: Path) -> None:
    """Remove an engine farm's directory, first detaching any mount an engine left in it."""
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(base, ignore_errors=True)


_built: dict[tuple[str, str, str], str] = {}


def build_image(engine, folder, name) -> str:
    """Build (or find cached) the recipe on the engine; returns the image ref."""
    key = (engine.url, str(folder), name)
    if key not in _built:
        recipe = images.load_recipe(folder, name)
        images.build(engine, recipe)
        _built[key] = recipe.image
    return _built[key]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def engine(farm, kind):
    """A connected Engine of each kind (tests using it run once per kind)."""
    record = farm.get(kind)
    e = connect(kind, record.url, f"{kind}-host")
    yield e
    e.close()


@pytest.fixture
def two_hosts(farm, kind):
    """Two independent engine instances of the same kind: two "hosts" on one machine."""
    engines = [connect(kind, farm.get(kind, slot).url, f"host{slot + 1}") for slot in (0, 1)]
    yield engines
    for e in engines:
        e.close()


@pytest.fixture
def base_image(engine) -> str:
    return build_image(engine, *BASE_RECIPE)


_counter = itertools.count()


@pytest.fixture
def unique() -> str:
    """A short name prefix unique across workers and tests."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").replace("gw", "w")
    return f"t{worker}{next(_counter)}{uuid.uuid4().hex[:4]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def cleanup(engine):
    """Register containers, networks and volumes to remove after the test."""
    items = {"containers": [], "networks": [], "volumes": []}
    yield items
    for name in items["containers"]:
        engine.remove(name)
    for name in items["networks"]:
        engine.remove_network(name)
    for name in items["volumes"]:
        engine.remove_volume(name)


@pytest.fixture(scope="session")
def test_hosts():
    """test_hosts(n, kinds) -> tests.hosts.HostSet: n hosts that are separate machines to
    tidegate (own rootfs, network namespace and address, sshd, engine), kinds cycled over
    them (podman, docker, podman, …). One set per (n, kinds) per session, unless
    fresh=True (a test that stops a host's engine or sshd); every set is stopped by its
    recorded PIDs and names when the session ends. Host records carry the ssh URL,
    address, known_hosts and key; HostSet.cloud_yaml() writes a cloud.yaml hosts: part."""
    from tests.hosts import start_hosts
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    base = Path(f"/tmp/tgh-{worker}-{uuid.uuid4().hex[:6]}")
    sets: dict = {}
    started = []

    def make(n: int = 2, kinds=KINDS, *, fresh: bool = False):
        key = (n, tuple(kinds))
        if fresh or key not in sets:
            wanted = [kinds[i % len(kinds)] for i in range(n)]
            hosts = start_hosts(wanted, base / f"set{len(started)}", log=lambda line: None)
            started.append(hosts)
            if not fresh:
                sets[key] = hosts
            return hosts
        return sets[key]
    yield make
    for hosts in started:
        hosts.stop()
    remove_tree(base)


def pytest_collection_modifyitems(config, items):
    """Every test of a whole OpenStack cloud (tests/demo, tests/compute) is `openstack`:
    they take turns machine-wide, so `make test` runs them on their own (scripts/test.sh)."""
    for item in items:
        if {"demo", "compute"} & set(Path(str(item.fspath)).relative_to(ROOT / "tests").parts[:1]):
            item.add_marker(pytest.mark.openstack)
