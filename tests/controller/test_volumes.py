"""Which engine volume a cloud's named volume is, and which ones `down --volumes` may
remove: pure decisions (controller/volumes.py), no engine."""
from __future__ import annotations

import pytest

from controller.desired import legacy_volume_name, volume_name
from controller.engines.base import ContainerInfo
from controller.volumes import VolumeConflict, choose, provably_the_clouds, volume_labels


def container(cloud: str, *volumes: str) -> ContainerInfo:
    return ContainerInfo(id=cloud, name=cloud, image="i", image_id="i", labels={"tidegate.cloud": cloud},
                         state="running", volumes=volumes)


def test_volume_names_are_injective_where_the_old_ones_collided():
    assert legacy_volume_name("a", "b-data") == legacy_volume_name("a-b", "data")      # the old bug
    assert volume_name("a", "b-data") != volume_name("a-b", "data")
    assert volume_name("a", "b_data") != volume_name("a-b", "data")


def test_a_new_cloud_gets_a_new_labelled_volume():
    assert choose("demo", "db", new=None, legacy=None, users={}, clouds=set()) == ("demo_db", "")
    assert choose("demo", "db", new=volume_labels("demo", "db"), legacy=None, users={}, clouds=set()) == ("demo_db", "")


def test_a_volume_under_the_new_name_that_is_not_the_clouds_is_refused():
    with pytest.raises(VolumeConflict, match="demo_db exists but is unlabelled"):
        choose("demo", "db", new={}, legacy=None, users={}, clouds=set())
    with pytest.raises(VolumeConflict, match="cloud other's, not cloud demo's"):
        choose("demo", "db", new={"tidegate.cloud": "other"}, legacy=None, users={}, clouds=set())


def test_a_legacy_volume_is_adopted_when_it_is_the_clouds_and_said_so():
    name, note = choose("demo", "db", new=None, legacy={}, users={"demo-db": {"demo"}}, clouds={"demo"})
    assert name == "demo-db" and "keeps its volume demo-db" in note
    # taken down before the upgrade (nothing mounts it) and no other cloud could have named it
    assert choose("demo", "db", new=None, legacy={}, users={}, clouds={"prod"})[0] == "demo-db"


def test_a_legacy_volume_that_may_be_another_clouds_is_never_adopted():
    with pytest.raises(VolumeConflict, match="mounted by cloud\\(s\\) a-b too"):
        choose("a", "b-data", new=None, legacy={}, users={"a-b-data": {"a", "a-b"}}, clouds={"a", "a-b"})
    with pytest.raises(VolumeConflict, match="may be cloud a-b's as well as cloud a's"):
        choose("a", "b-data", new=None, legacy={}, users={}, clouds={"a-b"})
    # a volume under the old name that another cloud labelled as its own (a-b's new name)
    assert choose("a", "b_data", new=None, legacy={"tidegate.cloud": "a-b"}, users={}, clouds=set()) == ("a_b_data", "")


def test_down_removes_a_legacy_volume_only_when_provably_the_clouds():
    everyone = [container("demo", "demo-db", "demo_cache"), container("demo-eu", "demo-eu-db"),
                container("demo", "demo-shared"), container("other", "demo-shared")]
    labels = {"demo-db": {}, "demo_cache": volume_labels("demo", "cache"), "demo-shared": {}}
    assert provably_the_clouds("demo", everyone, labels) == {"demo-db"}
    assert provably_the_clouds("demo", everyone, {**labels, "demo-db": {"tidegate.cloud": "x"}}) == set()
