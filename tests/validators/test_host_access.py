"""cloud.yaml's remote hosts: strict ssh host keys, docker tcp only with TLS (pure)."""
import os

from validators.load import load_cloud
from validators.tree import MemoryTree

from .helpers import files, findings_of, service

SSH = "ssh://root@10.0.0.11/run/podman/podman.sock"
TCP = "tcp://10.0.0.21:2376"
TLS = {"ca": "tls/ca.pem", "cert": "tls/cert.pem", "key": "tls/key.pem"}
TLS_FILES = {f"clouds/c/tls/{n}.pem": f"-----{n}-----\n" for n in ("ca", "cert", "key")}


def cloud(**hosts):
    return {"name": "c", "hosts": hosts}


def only(found, rule):
    return [f for f in found if f.rule == rule]


def test_plain_tcp_docker_is_an_error_naming_the_host():
    found = only(findings_of({"ks": service(hosts=["cmp1"])}, cloud(cmp1={"engine": "docker", "url": TCP})),
                 "semantic.host-plain-tcp")
    assert len(found) == 1 and found[0].severity == "error"
    assert "host cmp1" in found[0].message and TCP in found[0].message and found[0].line == 4


def test_tcp_docker_with_tls_files_of_the_cloud_folder_passes_and_carries_them():
    c = cloud(cmp1={"engine": "docker", "url": TCP, "tls": TLS})
    found = findings_of({"ks": service(hosts=["cmp1"])}, c, TLS_FILES)
    assert not [f for f in found if f.rule.startswith("semantic.host")]
    host = load_cloud(MemoryTree(files({}, c, TLS_FILES)), "c").cloud.hosts["cmp1"]
    assert host.tls == ("tls/ca.pem", "tls/cert.pem", "tls/key.pem")
    assert dict(host.files) == {"tls.ca": b"-----ca-----\n", "tls.cert": b"-----cert-----\n",
                                "tls.key": b"-----key-----\n"}


def test_insecure_tcp_is_accepted_with_a_warning():
    found = findings_of({"ks": service(hosts=["cmp1"])},
                        cloud(cmp1={"engine": "docker", "url": TCP, "insecure": True}))
    assert not only(found, "semantic.host-plain-tcp")
    warned = only(found, "semantic.host-insecure")
    assert len(warned) == 1 and warned[0].severity == "warning" and "plain tcp" in warned[0].message


def test_podman_over_tcp_cannot_use_tls():
    found = findings_of({"ks": service(hosts=["ctl1"])},
                        cloud(ctl1={"engine": "podman", "url": "tcp://10.0.0.11:8080", "tls": TLS}), TLS_FILES)
    assert only(found, "semantic.host-plain-tcp") and only(found, "semantic.host-access-mismatch")


def test_known_hosts_on_a_tcp_host_and_tls_on_an_ssh_host_are_mismatches():
    found = only(findings_of({"ks": service(hosts=["a", "b"], replicas=2)},
                             cloud(a={"engine": "docker", "url": TCP, "tls": TLS, "known_hosts": "/etc/kh"},
                                   b={"engine": "docker", "url": SSH, "tls": TLS}), TLS_FILES),
                 "semantic.host-access-mismatch")
    assert sorted(f.message.split(":")[0] for f in found) == ["host a", "host b"]


def test_relative_known_hosts_must_be_a_file_of_the_cloud_folder():
    for path, word in (("ssh/known_hosts", "not a file in"), ("../../etc/known_hosts", "outside")):
        found = only(findings_of({"ks": service(hosts=["ctl1"])},
                                 cloud(ctl1={"engine": "podman", "url": SSH, "known_hosts": path})),
                     "semantic.host-file")
        assert len(found) == 1 and word in found[0].message and "host ctl1" in found[0].message


def test_known_hosts_read_from_the_commit_and_absolute_paths_left_to_the_controller():
    c = cloud(ctl1={"engine": "podman", "url": SSH, "known_hosts": "ssh/known_hosts"},
              ctl2={"engine": "podman", "url": SSH, "known_hosts": "/etc/tidegate/known_hosts"})
    extra = {"clouds/c/ssh/known_hosts": "10.0.0.11 ssh-ed25519 AAAA\n"}
    assert not only(findings_of({"ks": service(hosts=["ctl1", "ctl2"])}, c, extra), "semantic.host-file")
    hosts = load_cloud(MemoryTree(files({}, c, extra)), "c").cloud.hosts
    assert dict(hosts["ctl1"].files) == {"known_hosts": b"10.0.0.11 ssh-ed25519 AAAA\n"}
    assert hosts["ctl2"].files == () and hosts["ctl2"].known_hosts == "/etc/tidegate/known_hosts"


def test_the_multihost_example_reaches_its_docker_hosts_over_tls():
    from pathlib import Path
    from validators.check import check_state
    from validators.tree import DirTree
    root = Path(__file__).resolve().parents[2]
    found = check_state(load_cloud(DirTree(str(root)), "multihost"))
    assert not [f for f in found if f.rule.startswith("semantic.host")], [f.message for f in found]
    assert os.path.isabs(load_cloud(DirTree(str(root)), "multihost").cloud.hosts["cmp1"].tls[0])
