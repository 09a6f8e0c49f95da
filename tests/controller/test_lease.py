"""The cloud's lease on its hosts (controller/lease.py) against an in-memory engine with
docker's volume semantics: creating a volume that exists keeps the first creator's labels."""
from __future__ import annotations

import pytest

from controller.engines.base import EngineUnreachable
from controller.lease import Holder, Lease, LeaseHeld, Record, may_take, read, ttl_from_environment


class VolumeStore:
    """The four volume calls the lease makes, on one host."""

    def __init__(self, host="h1"):
        self.host, self.volumes, self.down = host, {}, False

    def _answer(self):
        if self.down:
            raise EngineUnreachable(self.host, "docker", "list volumes", "engine does not answer")

    def ensure_volume(self, name, labels=None):
        self._answer()
        self.volumes.setdefault(name, dict(labels or {}))

    def volume_labels(self, name):
        self._answer()
        return self.volumes.get(name)

    def list_volumes(self, labels):
        self._answer()
        return [n for n, have in self.volumes.items() if all(have.get(k) == v for k, v in labels.items())]

    def remove_volume(self, name):
        self._answer()
        self.volumes.pop(name, None)


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def lease(engines, state_dir, clock, **kw) -> Lease:
    return Lease(engines, "prod", state_dir, ttl=60, clock=clock, **kw)


def test_a_second_controller_is_refused_naming_the_holder_and_how_to_break_it(tmp_path):
    clock, hosts = Clock(), {"h1": VolumeStore("h1"), "h2": VolumeStore("h2")}
    first = lease(hosts, tmp_path / "a", clock).acquire()
    with pytest.raises(LeaseHeld) as err:
        lease(hosts, tmp_path / "b", clock).acquire()
    message = str(err.value)
    assert f"{tmp_path / 'a'}" in message and "until 2027-01-15T08:01:00Z" in message and "--break-lease" in message
    assert first.renew()                                              # still ours


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it_lost(tmp_path):
    clock, hosts, lost = Clock(), {"h1": VolumeStore()}, []
    first = lease(hosts, tmp_path / "a", clock, on_lost=lost.append).acquire()
    clock.now += 61                                                   # it stopped renewing (a frozen machine)
    second = lease(hosts, tmp_path / "b", clock).acquire()
    assert [r.holder for r in read(hosts["h1"], "prod")] == [str(second.me)]   # one generation left
    assert first.renew() is False and "passed to" in lost[0]


def test_break_lease_takes_a_live_lease_and_release_gives_it_back(tmp_path):
    clock, hosts = Clock(), {"h1": VolumeStore()}
    lease(hosts, tmp_path / "a", clock).acquire()
    taken = lease(hosts, tmp_path / "b", clock, force=True).acquire()
    taken.release()
    assert read(hosts["h1"], "prod") == []
    lease(hosts, tmp_path / "c", clock).acquire()                      # free again


def test_a_refused_controller_holds_no_host(tmp_path):
    clock, hosts = Clock(), {"h1": VolumeStore("h1"), "h2": VolumeStore("h2")}
    lease({"h2": hosts["h2"]}, tmp_path / "a", clock).acquire()          # h2 only
    with pytest.raises(LeaseHeld):
        lease(hosts, tmp_path / "b", clock).acquire()                    # h1 first, then h2 refuses
    assert read(hosts["h1"], "prod") == []


def test_an_unreachable_host_is_skipped_and_taken_when_it_answers(tmp_path):
    clock, hosts = Clock(), {"h1": VolumeStore("h1"), "h2": VolumeStore("h2")}
    hosts["h2"].down = True
    held = lease(hosts, tmp_path / "a", clock).acquire()
    assert held.held == {"h1"}
    hosts["h2"].down = False
    assert held.renew() and held.held == {"h1", "h2"}


def test_a_restart_on_the_same_machine_need_not_wait_for_expiry_but_a_live_holder_is_kept():
    me = Holder("m1", 200, "/var/lib/tidegate")
    dead, alive = (lambda pid: False), (lambda pid: True)
    held = Record("v", str(Holder("m1", 100, "/var/lib/tidegate")), 3, 0.0, 100.0)
    assert may_take(held, me, now=50.0, alive=dead)           # killed: the restart takes over at once
    assert not may_take(held, me, now=50.0, alive=alive)      # still running (its state dir deleted, say)
    elsewhere = Record("v", str(Holder("m2", 100, "/var/lib/tidegate")), 3, 0.0, 100.0)
    assert not may_take(elsewhere, me, now=50.0, alive=dead)  # another machine's pids mean nothing here
    assert may_take(elsewhere, me, now=100.0, alive=alive)    # expired


def test_the_time_to_live_comes_from_the_environment_and_a_bad_one_is_named():
    assert ttl_from_environment({}) == 60 and ttl_from_environment({"TIDEGATE_LEASE_TTL": "2.5"}) == 2.5
    for bad in ("soon", "0", "-3", "nan"):
        with pytest.raises(ValueError, match=f"TIDEGATE_LEASE_TTL='{bad}': expected a number of seconds"):
            ttl_from_environment({"TIDEGATE_LEASE_TTL": bad})
