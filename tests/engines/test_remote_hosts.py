"""tidegate's engines on hosts that are separate machines (tests/hosts): reached only over
ssh:// (both engines) and tcp:// + TLS (docker), never through a shared filesystem."""
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest

from controller import images
from controller.engines import BindMount, ContainerSpec, EngineError, EngineUnreachable, connect
from controller.engines.remote import Access
from tests.conftest import BASE_RECIPE
from tests.hosts import route_device

pytestmark = pytest.mark.engine
LIMITS = {"nofile": (1024, 1024), "nproc": (1024, 1024)}


@pytest.fixture(scope="module")
def hosts(test_hosts):
    hs = test_hosts(2, ("podman", "docker"))
    for h in hs:       # before any test sends anything: the host is behind our own bridge
        assert route_device(h.address) == hs.bridge, h.address
    return hs


def answers_within(engine, seconds: float) -> bool:
    """Does the engine answer a ping within `seconds` (a bounded wait, not a timed assert)?"""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return bool(engine.ping())
        except EngineUnreachable:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def ssh_engine(h, **access):
    return connect(h.kind, h.ssh_url, h.name, Access(**{"known_hosts": h.known_hosts, "identity": h.key, **access}))


@pytest.fixture(params=[0, 1], ids=["podman", "docker"])
def host(request, hosts):
    return hosts[request.param]


@pytest.fixture(scope="module")
def images_on(hosts):
    """The base image built on each host by tidegate's builder through its remote engine."""
    built = {}
    for h in hosts:
        e = ssh_engine(h)
        try:
            info, _ = images.build(e, images.load_recipe(*BASE_RECIPE))
            built[h.name] = info
        finally:
            e.close()
    return built


def test_hosts_are_only_behind_their_bridge_with_their_own_addresses(hosts):
    addresses = [h.address for h in hosts]
    assert len(set(addresses)) == len(addresses) and all(a.startswith("10.250.") for a in addresses)
    for h in hosts:
        assert route_device(h.address) == hosts.bridge
        assert h.known_hosts == hosts.known_hosts and Path(h.known_hosts).read_text().count(h.address) == 1


def test_builder_imports_and_runs_a_container_over_ssh(host, hosts, images_on):
    image = images_on[host.name]
    e = ssh_engine(host)
    name = f"tgr{uuid.uuid4().hex[:8]}"
    try:
        assert e.ping()
        assert e.image(images.load_recipe(*BASE_RECIPE).image).id == image.id
        info = e.create(ContainerSpec(name, image.id, ("sleep", "300"), ulimits=LIMITS, stop_grace=1))
        e.start(info.id)
        out = e.exec(name, ["hostname"], timeout=20)
        assert out.exit_code == 0
        e.remove(name)
        assert e.inspect(name) is None
    finally:
        e.remove(name)
        e.close()


def test_a_host_does_not_see_the_controllers_files(host, images_on, tmp_path_factory):
    marker = Path("/tmp") / f"tidegate-controller-only-{uuid.uuid4().hex}"
    marker.write_text("controller")
    e = ssh_engine(host)
    name = f"tgr{uuid.uuid4().hex[:8]}"
    try:
        info = e.create(ContainerSpec(name, images_on[host.name].id, ("sleep", "300"), ulimits=LIMITS,
                                      stop_grace=1, mounts=(BindMount("/tmp", "/hosttmp", read_only=True),)))
        e.start(info.id)
        seen = e.exec(name, ["ls", "-a", "/hosttmp"], timeout=20)
        assert seen.exit_code == 0 and marker.name not in seen.output
        assert e.exec(name, ["test", "-e", f"/hosttmp/{marker.name}"], timeout=20).exit_code == 1
    finally:
        marker.unlink()
        e.remove(name)
        e.close()


def test_an_unknown_or_changed_host_key_is_refused_naming_host_and_file(host, hosts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    e = ssh_engine(host, known_hosts=str(empty))
    with pytest.raises(EngineUnreachable) as err:
        e.ping()
    e.close()
    assert f"host key of {host.address} is not in {empty}" in str(err.value) and "\n" not in str(err.value)
    other = next(h for h in hosts if h is not host)
    wrong = tmp_path / "wrong_known_hosts"      # the other host's key under this host's address
    line = next(l for l in Path(hosts.known_hosts).read_text().splitlines() if l.startswith(other.address + " "))
    wrong.write_text(line.replace(other.address, host.address, 1) + "\n")
    e = ssh_engine(host, known_hosts=str(wrong))
    with pytest.raises(EngineUnreachable) as err:
        e.ping()
    e.close()
    assert f"host key of {host.address} does not match {wrong}" in str(err.value)
    assert wrong.read_text().count("\n") == 1          # nothing was added


def test_docker_over_tcp_needs_tls_client_certificates(hosts, images_on):
    h = next(h for h in hosts if h.kind == "docker")
    e = connect("docker", h.tcp_url, h.name, Access(tls=(h.tls["ca"], h.tls["cert"], h.tls["key"])))
    try:
        assert e.ping() and e.image(images_on[h.name].id) is not None
    finally:
        e.close()
    plain = connect("docker", h.tcp_url, h.name, Access())
    with pytest.raises(EngineError) as err:
        plain.ping()
    assert "plain tcp://" in str(err.value) and not err.value.temporary
    # a client that trusts the host's CA but shows no certificate is turned away by dockerd
    context = ssl.create_default_context(cafile=h.tls["ca"])
    port = int(h.tcp_url.rsplit(":", 1)[1])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection((h.address, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=h.address) as s:
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                if not s.recv(64):
                    raise ConnectionError("closed without an answer")


def test_a_stopped_engine_is_unreachable_and_answers_again_when_started(test_hosts):
    h = test_hosts(1, ("podman",), fresh=True)[0]
    e = ssh_engine(h)
    try:
        assert e.ping()
        h.service("stop", "engine")
        with pytest.raises(EngineUnreachable) as err:
            e.ping()
        assert str(err.value).startswith(f"host {h.name} (podman): ping: engine at {h.ssh_url}")
        h.service("start", "engine")
        assert answers_within(e, 20.0)
    finally:
        e.close()
