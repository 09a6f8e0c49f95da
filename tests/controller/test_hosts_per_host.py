"""Several hosts on one machine, and `${host}` in config templates: one file, a value per
host (a Nova compute's identity). Pure: desired state, container specs, a fake engine."""
from __future__ import annotations

import yaml

from controller.desired import desired_state
from controller.spec import job_spec, replica_spec
from validators import templates
from validators.load import load_cloud
from validators.tree import MemoryTree

CLOUD = {"name": "c", "hosts": {"cmp1": {"engine": "podman"}, "cmp2": {"engine": "podman"}}}
CONF = "clouds/c/config/nova/compute.conf"


def desired(conf: bytes, template=True):
    svc = {"project": "nova", "role": "agent", "release": "2025.1", "image": "nova:2025.1", "replicas": 2,
           "hosts": ["cmp1", "cmp2"], "bootstrap": [{"command": ["nova-manage", "cell_v2", "discover_hosts"]}],
           "config": [{"source": "config/nova/compute.conf", "target": "/etc/nova/compute.conf",
                       "template": template}]}
    tree = MemoryTree({"clouds/c/cloud.yaml": yaml.safe_dump(CLOUD),
                       "clouds/c/services/compute.yaml": yaml.safe_dump(svc), CONF: conf})
    loaded = load_cloud(tree, "c")
    assert loaded.cloud is not None, loaded.findings
    return desired_state(loaded.cloud, tree, "c0")


def delivered(spec, target="/etc/nova/compute.conf") -> bytes:
    return next(f.content for f in spec.files if f.target == target)


def test_host_renders_the_name_and_keeps_escaped_literals():
    assert templates.render_host(b"host = ${host} # $${host}", "cmp1") == b"host = cmp1 # ${host}"
    assert templates.refers_to_host(b"host = ${host}")
    assert not templates.refers_to_host(b"literal $${host} only")


def test_each_replica_gets_its_own_hosts_name_from_one_file():
    des = desired(b"[DEFAULT]\nhost = ${host}\n")
    ds = des.services["compute"]
    assert delivered(replica_spec(des, ds, 0)) == b"[DEFAULT]\nhost = cmp1\n"
    assert delivered(replica_spec(des, ds, 1)) == b"[DEFAULT]\nhost = cmp2\n"


def test_a_job_renders_the_host_it_runs_on_by_default_the_first():
    des = desired(b"host = ${host}\n")
    ds = des.services["compute"]
    assert delivered(job_spec(des, ds, "bootstrap", 0, "cmp2")) == b"host = cmp2\n"
    assert delivered(job_spec(des, ds, "bootstrap", 0)) == b"host = cmp1\n"


def test_the_identity_survives_a_new_container_and_the_hash_is_the_templates():
    """A replaced container (a new release) renders the same name on the same host; the
    spec hash is one per service, so the file's rendering moves no hash."""
    old, new = desired(b"host = ${host}\n"), desired(b"host = ${host}\n# 2026.1\n")
    assert old.services["compute"].hash != new.services["compute"].hash
    for r, host in ((0, b"cmp1"), (1, b"cmp2")):
        assert delivered(replica_spec(old, old.services["compute"], r)).startswith(b"host = " + host + b"\n")
        assert delivered(replica_spec(new, new.services["compute"], r)).startswith(b"host = " + host + b"\n")


def test_a_file_that_is_not_a_template_keeps_host_as_text():
    des = desired(b"host = ${host}\n", template=False)
    assert delivered(replica_spec(des, des.services["compute"], 1)) == b"host = ${host}\n"


def test_hosts_sharing_one_engine_each_see_only_their_own_replicas():
    """Several hosts on one machine share its engine: a replica is labelled with the host
    it was made for, and only that host observes it (else every host would see every
    replica as a stray of its own and retire it)."""
    from controller.engines.base import ContainerSpec
    from controller.observe import observe

    from .fakeengine import FakeEngine

    des = desired(b"host = ${host}\n")
    ds = des.services["compute"]
    engine = FakeEngine()
    for r in (0, 1):
        engine.create(replica_spec(des, ds, r))
    legacy = {k: v for k, v in replica_spec(des, ds, 0).labels.items() if k != "tidegate.host"}
    engine.create(ContainerSpec(name="older", image="nova:2025.1", labels=legacy))
    observed, errors = observe({"cmp1": engine, "cmp2": engine}, "c")
    assert not errors
    seen = sorted((c.host, c.name) for c in observed.containers)
    names = [replica_spec(des, ds, r).name for r in (0, 1)]
    assert seen == sorted([("cmp1", names[0]), ("cmp2", names[1]), ("cmp1", "older"), ("cmp2", "older")])
