"""How tidegate reaches a remote engine (engines/remote.py): pure decisions."""
import os
import stat

import pytest

from controller.engines import EngineError, connect
from controller.engines.remote import (Access, AccessRefused, host_access, settings, ssh_failure,
                                       ssh_options, transport)
from validators.model import Host


def options(access):
    argv = ssh_options(access)
    assert argv[::2] == ["-o"] * (len(argv) // 2)
    return dict(o.split("=", 1) for o in argv[1::2])


def test_ssh_never_accepts_an_unknown_host_key():
    for access in (None, Access(), Access(known_hosts="/k", identity="/id")):
        opts = options(access)
        assert opts["StrictHostKeyChecking"] == "yes" and opts["BatchMode"] == "yes"
        assert "accept-new" not in " ".join(ssh_options(access))


def test_ssh_checks_only_the_named_known_hosts_file_and_uses_the_named_key():
    opts = options(Access(known_hosts="/etc/tidegate/known_hosts", identity="/etc/tidegate/id_ed25519"))
    assert opts["UserKnownHostsFile"] == "/etc/tidegate/known_hosts" and opts["GlobalKnownHostsFile"] == "/dev/null"
    assert opts["IdentityFile"] == "/etc/tidegate/id_ed25519" and opts["IdentitiesOnly"] == "yes"
    assert "UserKnownHostsFile" not in options(Access())       # ssh's own files then


def test_a_path_ssh_would_split_or_expand_is_refused():
    for path in ("/a b/known_hosts", "~/known_hosts", "/x/%h"):
        with pytest.raises(AccessRefused):
            ssh_options(Access(known_hosts=path))


def test_host_key_failures_name_the_host_and_the_known_hosts_file():
    access = Access(known_hosts="/etc/tidegate/known_hosts")
    unknown = "No ED25519 host key is known for 10.0.0.11 and you have requested strict checking.\r\n" \
              "Host key verification failed.\r\n"
    text = ssh_failure(unknown, "ssh://root@10.0.0.11", access)
    assert text == ("host key of 10.0.0.11 is not in /etc/tidegate/known_hosts: "
                    "unknown hosts are refused, never added")
    changed = "@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@\nHost key verification failed.\n"
    text = ssh_failure(changed, "ssh://root@10.0.0.11:2222", access)
    assert text.startswith("host key of 10.0.0.11 does not match /etc/tidegate/known_hosts")
    assert "known_hosts: in cloud.yaml" in ssh_failure(unknown, "ssh://root@h", None)
    assert ssh_failure("ssh: connect to host h port 22: Connection refused\n", "ssh://h", access) == \
        "ssh: connect to host h port 22: Connection refused"


def test_transport_decisions():
    tls = Access(tls=("/ca", "/cert", "/key"))
    assert transport("docker", "tcp://h:2376", tls) == "tls"
    assert transport("docker", "tcp://h:2375", Access(insecure=True)) == "plain"
    assert transport("podman", "tcp://h:8080", Access(insecure=True)) == "plain"
    assert transport("podman", "ssh://root@h/run/podman/podman.sock", None) == "ssh"
    assert transport("docker", "unix:///var/run/docker.sock", Access()) == "unix"
    for kind, url, access in (("docker", "tcp://h:2375", Access()), ("docker", "tcp://h:2375", None),
                              ("podman", "tcp://h:8080", tls), ("docker", "ssh://h/s", tls),
                              ("docker", "http://h", Access())):
        with pytest.raises(AccessRefused):
            transport(kind, url, access)


def test_plain_tcp_is_a_permanent_error_at_the_first_operation():
    e = connect("docker", "tcp://127.0.0.1:1", "cmp1", Access())
    with pytest.raises(EngineError) as err:
        e.ping()
    assert str(err.value).startswith("host cmp1 (docker): connect: plain tcp://127.0.0.1:1 is unauthenticated")
    assert not err.value.temporary
    e.close()


def test_settings_come_from_the_controllers_environment():
    assert settings({"TIDEGATE_KNOWN_HOSTS": "/k", "TIDEGATE_SSH_KEY": "/id"}) == Access(known_hosts="/k", identity="/id")
    assert settings({}) == Access()


def test_host_access_writes_relative_files_privately_and_keeps_absolute_ones():
    host = Host("cmp1", "docker", "tcp://h:2376", tls=("tls/ca.pem", "/etc/tls/cert.pem", "tls/key.pem"),
                files=(("tls.ca", b"CA"), ("tls.key", b"KEY")))
    access = host_access(host, {"TIDEGATE_SSH_KEY": "/id"})
    ca, cert, key = access.tls
    assert open(ca, "rb").read() == b"CA" and open(key, "rb").read() == b"KEY" and cert == "/etc/tls/cert.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and os.path.basename(key) == "key.pem"
    assert access.identity == "/id" and access.known_hosts is None and not access.insecure
    own = host_access(Host("c", "podman", "ssh://h/s", known_hosts="kh", files=(("known_hosts", b"h k"),)),
                      {"TIDEGATE_KNOWN_HOSTS": "/global"})
    assert open(own.known_hosts, "rb").read() == b"h k"
    assert host_access(Host("c", "podman", "ssh://h/s"), {"TIDEGATE_KNOWN_HOSTS": "/global"}).known_hosts == "/global"
    with pytest.raises(AccessRefused):
        host_access(Host("c", "podman", "ssh://h/s", known_hosts="missing"), {})
