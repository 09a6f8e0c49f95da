"""One cloud's data is never another's, on real engines (podman and docker): volumes are
named injectively and labelled, `down --volumes` removes by exact label, and a volume
named by an older tidegate keeps serving its cloud after the upgrade."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from controller.reconcile import Controller
from controller.source import Source
from controller.teardown import remove_cloud
from tests.conftest import BASE_RECIPE, ROOT, build_image
from tests.validators.helpers import GitRepo

pytestmark = pytest.mark.engine

# exits at once on SIGTERM: teardown need not wait a grace period
SLEEPER = ["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(600)"]


class Clouds:
    """Clouds in one repository, each one service `store` with one named volume at /data,
    converged by the real controller on one engine."""

    def __init__(self, tmp_path, engine, image):
        self.repo = GitRepo(tmp_path / "repo")
        self.engine, self.image, self.state = engine, image, tmp_path / "state"
        self.names: list[str] = []

    def add(self, name: str, volume: str) -> None:
        cloud = {"name": name, "hosts": {"local": {"engine": self.engine.kind}}}
        store = {"project": "web", "release": "2025.1", "image": self.image, "command": SLEEPER,
                 "volumes": [{"name": volume, "path": "/data"}], "stop_grace": 1}
        self.repo.commit({f"clouds/{name}/cloud.yaml": yaml.safe_dump(cloud),
                          f"clouds/{name}/services/store.yaml": yaml.safe_dump(store)}, f"cloud {name}")
        self.names.append(name)
        status = Controller(Source(self.repo.path), name, state_dir=self.state,
                            engines={"local": self.engine}).reconcile()
        assert status.condition() == "Ready", status.render()

    def store(self, name: str):
        [c] = self.engine.list_containers({"tidegate.cloud": name, "tidegate.service": "store"})
        return c

    def sh(self, name: str, script: str) -> str:
        result = self.engine.exec(self.store(name).id, ["sh", "-c", script])
        assert result.exit_code == 0, result.output
        return result.output.strip()

    def down(self, name: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "controller.cli", "down", "--repo", str(self.repo.path),
                               "--cloud", name, "--state-dir", str(self.state),
                               "--engine-url", f"{self.engine.kind}={self.engine.url}", *extra],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    def remove_all(self) -> None:
        for name in self.names:
            remove_cloud(self.engine, name, volumes=True, graceful=False)


@pytest.fixture
def clouds(tmp_path, engine):
    made = Clouds(tmp_path, engine, build_image(engine, *BASE_RECIPE))
    yield made
    made.remove_all()


def test_down_with_volumes_leaves_a_cloud_whose_name_starts_with_the_same_letters(clouds, unique):
    clouds.add(unique, "data")
    clouds.add(f"{unique}-eu", "data")
    clouds.sh(f"{unique}-eu", "echo eu > /data/value")
    proc = clouds.down(unique, "--volumes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{unique}_data" not in clouds.engine.list_volumes({})
    assert clouds.sh(f"{unique}-eu", "cat /data/value") == "eu"       # still mounted, and still there
    assert clouds.engine.list_volumes({"tidegate.cloud": f"{unique}-eu"}) == [f"{unique}-eu_data"]


def test_two_clouds_whose_names_and_volumes_concatenate_alike_get_their_own_volumes(clouds, unique):
    clouds.add(unique, "b-data")                 # formerly "<unique>-b-data"
    clouds.add(f"{unique}-b", "data")            # formerly "<unique>-b-data" as well
    clouds.sh(unique, "echo mine > /data/value")
    assert clouds.sh(f"{unique}-b", "cat /data/value 2>/dev/null || echo empty") == "empty"
    assert clouds.store(unique).volumes != clouds.store(f"{unique}-b").volumes


def test_a_volume_named_by_an_older_tidegate_keeps_its_data_and_goes_only_when_provably_the_clouds(
        clouds, unique, cleanup):
    old, stray = f"{unique}-data", f"{unique}-cache"          # the names tidegate gave volumes before
    cleanup["volumes"] += [old, stray]
    for vol in (old, stray):
        clouds.engine.ensure_volume(vol)                      # unlabelled, as they were made
    from controller.engines import ContainerSpec, VolumeMount
    seed = clouds.engine.run_job(ContainerSpec(f"{unique}-seed", clouds.image, ("sh", "-c", "echo before > /d/value"),
                                               volumes=(VolumeMount(old, "/d"),), ulimits={"nofile": (1024, 1024), "nproc": (5000, 5000)}),
                                 timeout=60)
    assert seed.exit_code == 0, seed.output
    clouds.add(unique, "data")
    assert clouds.sh(unique, "cat /data/value") == "before"   # adopted: the same data
    assert clouds.store(unique).volumes == (old,)
    assert f"{unique}_data" not in clouds.engine.list_volumes({})
    proc = clouds.down(unique, "--volumes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = clouds.engine.list_volumes({})
    assert old not in left                                    # mounted by the cloud's container: its own
    assert stray in left                                      # mounted by nothing: not provably the cloud's
