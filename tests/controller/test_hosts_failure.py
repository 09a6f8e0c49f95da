"""A cloud over three test hosts that are separate machines (tests/hosts), reached only over
ssh://: one host's engine and sshd stop in the middle of a rollout. The other hosts
converge, status names the host, when it came back nothing is duplicated and drift on a
host is repaired; a second controller (another state directory) is refused by the lease
held on the hosts' engines."""
from __future__ import annotations

import threading

import pytest
import yaml

from controller import images
from controller.engines import connect
from controller.engines.remote import Access
from controller.lease import Lease, LeaseHeld
from controller.reconcile import Controller
from controller.source import Source
from tests.conftest import BASE_RECIPE
from tests.hosts import route_device
from tests.validators.helpers import GitRepo

pytestmark = pytest.mark.engine


def service(project: str, host: str, release: str, **extra) -> str:
    return yaml.safe_dump({
        "project": project, "release": release, "image": f"localhost/tidegate/svc:{release}", "hosts": [host],
        "replicas": 1, "command": ["python3", "-m", "http.server", "8080"], "environment": {"RELEASE": release},
        "expose": [8080], "health": {"type": "tcp", "port": 8080, "interval": 0.5, "start_period": 20}, **extra})


def test_a_host_that_goes_away_mid_rollout_and_comes_back(test_hosts, tmp_path, unique):
    hostset = test_hosts(3, ("podman", "docker", "podman"), fresh=True)     # this test stops a host
    for h in hostset:
        assert route_device(h.address) == hostset.bridge, h.address
    h1, h2, h3 = (h.name for h in hostset)
    engines = {h.name: connect(h.kind, h.ssh_url, h.name, Access(known_hosts=h.known_hosts, identity=h.key))
               for h in hostset}
    for e in engines.values():            # the base image on every host, through its remote engine
        info, _ = images.build(e, images.load_recipe(*BASE_RECIPE))
        for release in ("2025.1", "2025.2"):
            e.tag(info.ref, f"localhost/tidegate/svc:{release}")
    repo = GitRepo(tmp_path / "repo")
    folder = f"clouds/{unique}"
    cloud = {"name": unique, "hosts": {h.name: {"engine": h.kind, "url": h.ssh_url, "address": h.address,
                                                "known_hosts": h.known_hosts} for h in hostset}}

    def commit(release: str, message: str) -> str:
        return repo.commit({f"{folder}/cloud.yaml": yaml.safe_dump(cloud),
                            f"{folder}/services/a.yaml": service("pa", h1, release),
                            f"{folder}/services/b.yaml": service("pb", h2, release, depends_on=["a"]),
                            f"{folder}/services/c.yaml": service("pc", h3, release)}, message)

    def controller(state="state", **kw):
        return Controller(Source(repo.path), unique, state_dir=tmp_path / state, engines=engines, **kw)

    def names(host: str, service: str) -> list[str]:
        return sorted(c.name for c in engines[host].list_containers({"tidegate.cloud": unique,
                                                                     "tidegate.service": service}))
    down = threading.Event()

    def host2_goes_away(event, step, detail):
        # service b waits for a (depends_on): once a's successor is healthy, b's host dies
        if event == "done" and step.service == "a" and step.action == "wait-healthy" and not down.is_set():
            down.set()
            hostset[1].service("stop", "engine")
            hostset[1].service("stop", "sshd")
    try:
        assert controller().reconcile(commit("2025.1", "three hosts")).condition() == "Ready"
        first = {h: names(h, s) for h, s in ((h1, "a"), (h2, "b"), (h3, "c"))}

        upgrade = commit("2025.2", "every service 2025.2")
        status = controller(progress=host2_goes_away).reconcile(upgrade)
        assert down.is_set() and status.condition() != "Ready", status.render()
        assert status.reason == "EngineUnavailable" and h2 in status.message, status.render()
        assert names(h1, "a") != first[h1] and names(h3, "c") != first[h3]          # the others converged
        assert status.hosts[h2]["reachable"] is False and status.hosts[h1]["reachable"], status.hosts
        text = status.render()
        assert f"host {h2} unreachable" in text and "UNREACHABLE" in text

        again = controller().reconcile(upgrade)                 # still away: nothing else is blocked
        assert h2 in again.unreachable and again.hosts[h2]["since"] == status.hosts[h2]["since"]

        hostset[1].service("start", "sshd")
        hostset[1].service("start", "engine")
        engines[h3].remove(names(h3, "c")[0])                   # drift on another host, by hand
        status = controller().reconcile(upgrade)
        assert status.condition() == "Ready" and not status.unreachable, status.render()
        for host, svc in ((h1, "a"), (h2, "b"), (h3, "c")):
            found = engines[host].list_containers({"tidegate.cloud": unique, "tidegate.service": svc})
            assert [c.labels["tidegate.release"] for c in found] == ["2025.2"], (host, svc, found)

        # one controller per cloud, across machines: the lease lives on the hosts' engines
        held = Lease(engines, unique, tmp_path / "state").acquire()
        try:
            with pytest.raises(LeaseHeld):
                Lease(engines, unique, tmp_path / "elsewhere").acquire()
        finally:
            held.release()
    finally:
        if down.is_set():
            for what in ("sshd", "engine"):
                try:
                    hostset[1].service("start", what)
                except RuntimeError:
                    pass
        for e in engines.values():
            try:
                for c in e.list_containers({"tidegate.cloud": unique}):
                    e.remove(c.id)
                e.remove_network(f"tidegate-{unique}")
            finally:
                e.close()
