"""A cloud of several machines: ports published on the host's address, names resolved to
the hosts that run a service, and health checks that never dial a remote host's container
address. Pure: no engine."""
from __future__ import annotations

from controller.desired import desired_state
from controller.engines.base import ContainerInfo
from controller.engines.health import check_once, via
from controller.spec import job_spec, replica_spec
from validators.load import load_cloud
from validators.tree import MemoryTree

from .helpers import files, findings_of, service

MACHINES = {"name": "c", "hosts": {
    "ctl1": {"engine": "podman", "url": "ssh://root@10.250.0.11/run/podman/podman.sock", "address": "10.250.0.11"},
    "ctl2": {"engine": "podman", "url": "ssh://root@10.250.0.12/run/podman/podman.sock", "address": "10.250.0.12"},
    "ctl3": {"engine": "docker", "url": "ssh://root@10.250.0.13/run/docker.sock", "address": "10.250.0.13"}}}
ONE_MACHINE = {"name": "c", "hosts": {"h1": {"engine": "podman"}, "h2": {"engine": "docker"}}}


def cloud_of(services, cloud=MACHINES):
    loaded = load_cloud(MemoryTree(files(services, cloud)), "c")
    assert loaded.cloud is not None, loaded.findings
    return loaded.cloud


def layout(keystone_hosts=("ctl2", "ctl3"), **front):
    return {
        "mariadb": service(project="mariadb", image="db", hosts=["ctl1"], expose=[3306],
                           health={"type": "tcp", "port": 3306}),
        "keystone": service(hosts=list(keystone_hosts), replicas=2, expose=[5000], depends_on=["mariadb"]),
        "front": service(project="haproxy", image="lb", hosts=["ctl1"], depends_on=["keystone"],
                         **{"ports": ["15000:5000"], **front}),
    }


def test_exposed_ports_are_published_on_each_replicas_host_address():
    cloud = cloud_of(layout())
    des = desired_state(cloud, MemoryTree(files(layout(), MACHINES)), "c0ffee")
    ports = [[(p.container, p.host, p.host_ip) for p in replica_spec(des, des.services["keystone"], r).ports]
             for r in (0, 1)]
    assert ports == [[(5000, 5000, "10.250.0.12")], [(5000, 5000, "10.250.0.13")]]
    # the front keeps what it asked for (all addresses), nothing more: its health port is published
    assert [(p.container, p.host, p.host_ip) for p in replica_spec(des, des.services["front"], 0).ports] == \
        [(5000, 15000, "")]


def test_a_replica_published_on_its_hosts_address_is_created_in_its_alias():
    """Other machines reach it through its host's port from its start: joining the alias
    later (leave the network, join again) would cut their requests in flight."""
    des = desired_state(cloud_of(layout()), MemoryTree(files(layout(), MACHINES)), "c0ffee")
    assert replica_spec(des, des.services["keystone"], 1).aliases == ("keystone", "keystone-1")
    assert replica_spec(des, des.services["front"], 0).aliases == ()      # its own ports only: joins after its gate
    one = {k: {**v, "hosts": ["h1"]} for k, v in layout().items()}
    des = desired_state(cloud_of(one, ONE_MACHINE), MemoryTree(files(one, ONE_MACHINE)), "c0ffee")
    assert replica_spec(des, des.services["keystone"], 0).aliases == ()


def test_a_service_resolves_what_it_depends_on_to_the_hosts_that_run_it():
    des = desired_state(cloud_of(layout()), MemoryTree(files(layout(), MACHINES)), "c0ffee")
    front = replica_spec(des, des.services["front"], 0)
    assert front.extra_hosts == (("keystone", "10.250.0.12"), ("keystone", "10.250.0.13"),
                                 ("keystone-0", "10.250.0.12"), ("keystone-1", "10.250.0.13"))
    # jobs reach their database the same way (a db sync on ctl2, the database on ctl1)
    services = layout()
    services["keystone"]["bootstrap"] = [{"command": ["keystone-manage", "db_sync"]}]
    des = desired_state(cloud_of(services), MemoryTree(files(services, MACHINES)), "c0ffee")
    lines = (("mariadb", "10.250.0.11"), ("mariadb-0", "10.250.0.11"))
    assert replica_spec(des, des.services["keystone"], 0).extra_hosts == lines
    assert job_spec(des, des.services["keystone"], "bootstrap", 0).extra_hosts == lines


def test_moving_replicas_rolls_the_services_that_reach_them_and_nothing_else():
    before = cloud_of(layout())
    after = cloud_of(layout(keystone_hosts=("ctl1", "ctl3")))
    tree = MemoryTree(files(layout(), MACHINES))
    a = desired_state(before, tree, "a")
    b = desired_state(after, MemoryTree(files(layout(keystone_hosts=("ctl1", "ctl3")), MACHINES)), "b")
    changed = {name for name in a.services if a.services[name].hash != b.services[name].hash}
    assert changed == {"front"}          # keystone's own containers are the same spec; placement is not in it


def test_one_machine_keeps_the_engines_network_and_dns():
    one = {k: {**v, "hosts": ["h1"]} for k, v in layout().items()}
    one["keystone"]["bootstrap"] = [{"command": ["keystone-manage", "db_sync"]}]
    des = desired_state(cloud_of(one, ONE_MACHINE), MemoryTree(files(one, ONE_MACHINE)), "c0ffee")
    spec = replica_spec(des, des.services["keystone"], 0)
    assert spec.ports == () and spec.extra_hosts == ()
    assert job_spec(des, des.services["keystone"], "bootstrap", 0).extra_hosts == ()


def test_an_exposed_port_that_collides_with_a_front_on_the_same_host_is_an_error():
    services = layout(ports=["5000:5000"])
    services["keystone"]["hosts"] = ["ctl1", "ctl2"]
    hits = [f for f in findings_of(services, MACHINES) if f.rule == "semantic.port-conflict"]
    assert len(hits) == 1 and hits[0].file.endswith("keystone.yaml") and "exposed" in hits[0].message, hits


def test_a_replicated_exposed_service_is_replaced_in_place_one_per_host():
    services = layout()
    services["keystone"]["replicas"] = 3          # three replicas on two hosts: no room on the host port
    hits = [f for f in findings_of(services, MACHINES) if f.rule == "semantic.replicas-exceed-hosts"]
    assert hits and "one replica per host" in hits[0].message


class _Remote:
    url, remote = "ssh://root@10.250.0.12/run/podman/podman.sock", True


class _Local:
    url, remote = "unix:///run/podman/podman.sock", False


def test_a_remote_hosts_container_is_probed_only_through_its_hosts_address(monkeypatch):
    """The container's own address (10.89.0.2, the host's internal bridge) is never dialled
    from here: that request would leave through the default route to someone else."""
    dialled = []

    def connect(address, timeout=None):
        dialled.append(address)
        raise ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr("socket.create_connection", connect)
    from validators.model import Health
    check = Health("tcp", port=5000, timeout=1)
    info = ContainerInfo("id", "c-keystone-0", "img", "sha", {}, "running",
                         networks={"tidegate-c": ("10.89.0.2", ())}, ports={"5000/tcp": 5000})
    ok, _ = check_once(_Remote(), info, check, network="tidegate-c", via=via(_Remote(), "10.250.0.12"))
    assert not ok and dialled == [("10.250.0.12", 5000)]
    unpublished = ContainerInfo("id", "c-keystone-0", "img", "sha", {}, "running",
                                networks={"tidegate-c": ("10.89.0.2", ())})
    ok, reason = check_once(_Remote(), unpublished, check, network="tidegate-c", via="10.250.0.12")
    assert not ok and "not published on the host's address 10.250.0.12" in reason and len(dialled) == 1
    # an engine on this machine: the container's own address, as before
    check_once(_Local(), info, check, network="tidegate-c", via=via(_Local(), "127.0.0.1"))
    assert dialled[-1] == ("10.89.0.2", 5000)


def test_a_volume_of_a_service_on_several_machines_is_flagged_not_shared():
    services = layout()
    services["keystone"]["volumes"] = [{"name": "keystone-fernet", "path": "/etc/keystone/fernet-keys"}]
    hits = [f for f in findings_of(services, MACHINES) if f.rule == "semantic.volume-per-machine"]
    assert len(hits) == 1 and hits[0].severity == "warning" and "ctl2, ctl3 each see their own copy" in hits[0].message
    one = {k: {**v, "hosts": ["h1", "h2"]} for k, v in services.items()}      # one machine: one engine's volumes
    assert not [f for f in findings_of(one, ONE_MACHINE) if f.rule == "semantic.volume-per-machine"]


def test_on_one_machine_no_spec_hash_moves_with_the_topology_fields():
    """An upgrade of tidegate must not roll every container: the hash of a service on one
    machine is computed from exactly what it was computed from before `published`,
    `reach` and `Port.on_host_address` existed."""
    import hashlib
    import json
    from dataclasses import asdict
    from controller.desired import container_hash
    one = {k: {**v, "hosts": ["h1"]} for k, v in layout().items()}
    cloud = cloud_of(one, ONE_MACHINE)
    for name in ("front", "keystone"):
        svc = cloud.services[name]
        spec = asdict(svc)
        spec["release"] = str(svc.release)
        old_fields = ("release", "image", "command", "entrypoint", "user", "ports", "environment",
                      "volumes", "stop_signal", "stop_grace", "ulimits")
        before = {k: spec[k] for k in old_fields}
        before["ports"] = [{k: v for k, v in p.items() if k != "on_host_address"} for p in spec["ports"]]
        expected = hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:12]
        assert container_hash(svc, ()) == expected, name
    spread = cloud_of(layout())
    assert container_hash(spread.services["keystone"], ()) != container_hash(cloud.services["keystone"], ())
