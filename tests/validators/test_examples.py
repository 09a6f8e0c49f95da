"""The clouds shipped in clouds/ are valid: they are the documentation's examples."""
from pathlib import Path

import pytest

from validators.check import check_state
from validators.load import list_clouds, load_cloud
from validators.tree import DirTree

ROOT = Path(__file__).resolve().parents[2]
TREE = DirTree(ROOT)


@pytest.mark.parametrize("cloud", list_clouds(TREE))
def test_shipped_cloud_has_no_errors(cloud):
    errors = [f.render() for f in check_state(load_cloud(TREE, cloud)) if f.severity == "error"]
    assert errors == []


def test_examples_include_a_minimal_and_a_multi_host_cloud():
    clouds = {name: load_cloud(TREE, name).cloud for name in ("minimal", "multihost")}
    assert len(clouds["minimal"].hosts) == 1 and len(clouds["minimal"].services) == 1
    multi = clouds["multihost"]
    assert len(multi.hosts) >= 3
    assert {"keystone", "placement", "nova", "neutron", "glance"} <= {s.project for s in multi.services.values()}
    assert {s.role for s in multi.services.values()} == {"control", "agent"}
