"""The drivers' shared plumbing, without an engine: error reading, frames, refs, grace."""
from __future__ import annotations

import requests
import urllib3.exceptions

from controller.engines import common


def test_a_refused_connection_is_not_mistaken_for_a_timeout():
    # urllib3's NewConnectionError subclasses its ConnectTimeoutError
    refused = requests.exceptions.ConnectionError(urllib3.exceptions.NewConnectionError(None, "refused"))
    slow = requests.exceptions.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/wait", "read timed out"))
    assert not common.is_timeout(refused) and common.is_transport_error(refused)
    assert common.is_timeout(slow) and common.is_timeout(requests.exceptions.ReadTimeout())


def test_transport_reason_is_a_few_words():
    err = requests.exceptions.ConnectionError(FileNotFoundError(2, "No such file or directory"))
    assert common.transport_reason(err) == "no such file or directory"


def test_demux_keeps_frame_order_and_a_last_line_without_newline():
    frames = b"\x01\0\0\0\0\0\0\x04one\n" + b"\x02\0\0\0\0\0\0\x04two\n" + b"\x01\0\0\0\0\0\0\x05three"
    assert common.demux(frames) == b"one\ntwo\nthree"
    assert common.demux(b"plain tty text\n") == b"plain tty text\n"


def test_image_refs_split_into_repository_and_tag():
    assert common.split_ref("localhost/tidegate/python:bookworm") == ("localhost/tidegate/python", "bookworm")
    assert common.split_ref("registry:5000/app") == ("registry:5000/app", "latest")
    assert common.split_ref("app@sha256:abc") == ("app@sha256:abc", "")


def test_grace_is_rounded_up_to_whole_seconds():
    assert [common.grace_seconds(g) for g in (0, 0.2, 1, 1.5, 10)] == [0, 1, 1, 2, 10]


def test_exec_timeout_wraps_the_command_in_coreutils_timeout():
    assert common.exec_argv(["true"], None) == ["true"]
    assert common.exec_argv(["sleep", "9"], 2.5) == ["timeout", "-k", "2", "3", "sleep", "9"]


def test_states_speak_one_vocabulary():
    assert [common.normal_state(s) for s in ("configured", "Created", "running", "stopped", "exited")] == [
        "created", "created", "running", "exited", "exited"]
    assert common.started("0001-01-01T00:00:00Z") is None


def test_stop_signals_are_read_by_name_or_number():
    assert [common.signal_number(s) for s in ("SIGTERM", "term", "SIGQUIT", 15, "SIGNOPE")] == [15, 15, 3, 15, None]


def test_a_recorded_zero_grace_means_zero_and_only_absence_means_the_default():
    assert common.recorded_grace({"StopTimeout": 0}) == 0
    assert common.recorded_grace({"StopTimeout": 3}) == 3
    assert common.recorded_grace({"StopTimeout": None}) == common.DEFAULT_GRACE
    assert common.recorded_grace({}) == common.recorded_grace(None) == common.DEFAULT_GRACE


def test_netavarks_chain_race_between_two_podman_instances_is_temporary():
    """Two podman instances on one machine, one network name: their netavark processes race
    to create the same iptables chain. The loser's start is worth retrying; other netavark
    failures and other "exists" errors are not."""
    from controller.engines.podman import _looks_temporary
    assert _looks_temporary("netavark: code: 1, msg: iptables: Chain already exists.")
    assert _looks_temporary("netavark: code: 4, msg: iptables v1.8.9 (nf_tables): CHAIN_USER_ADD failed "
                            "(File exists): chain NETAVARK-18E865639BDB7")
    assert _looks_temporary("netavark: unable to append rule '-d 10.104.255.0/24 -j ACCEPT' to table 'nat': "
                            "code: 1, msg: iptables: No chain/target/match by that name.")
    assert not _looks_temporary("netavark: code: 1, msg: failed to create bridge tg123: Invalid argument")
    assert not _looks_temporary("container name \"web-0\" is already in use: File exists")
    assert _looks_temporary("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")


def test_a_network_create_that_met_a_vanishing_interface_is_tried_again(monkeypatch):
    """podman reads the host's addresses and interfaces to pick a free subnet; an interface
    another instance removed in between fails the create (met once in CI). The create is
    tried again, and the error counts as temporary when it persists."""
    import podman.errors
    import requests
    from controller.engines import podman as driver
    monkeypatch.setattr(driver.time, "sleep", lambda s: None)
    e = driver.PodmanEngine("h", "unix:///nonexistent.sock")
    calls = []

    def post(path, **kw):
        calls.append(path)
        if len(calls) == 1:
            answer = requests.Response()
            answer.status_code = 500
            raise podman.errors.APIError("network create failed", response=answer,
                                         explanation="route ip+net: no such network interface")
    monkeypatch.setattr(e, "_post", post)
    monkeypatch.setattr(driver.PodmanEngine, "client", property(lambda self: type("C", (), {
        "networks": type("N", (), {"exists": staticmethod(lambda name: False)})()})()))
    e.ensure_network("tg-net")
    assert calls == ["/networks/create", "/networks/create"]
    assert driver._looks_temporary("create network n: route ip+net: no such network interface")
    assert not driver._looks_temporary("create network n: subnet 10.88.0.0/16 is already used")
