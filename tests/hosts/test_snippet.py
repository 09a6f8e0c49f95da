"""The cloud.yaml snippet for test hosts is a valid hosts: part (pure: no host is started)."""
import yaml

from tests.hosts.hostset import HostSet
from tests.hosts.machine import Host
from validators.check import check_state
from validators.load import load_cloud
from validators.tree import MemoryTree


def fake_set(tmp_path):
    def host(i, kind):
        address = f"10.250.7.{10 + i}"
        return Host(name=f"host{i}", kind=kind, address=address,
                    ssh_url=f"ssh://root@{address}/run/podman/podman.sock", known_hosts=str(tmp_path / "known_hosts"),
                    key=str(tmp_path / "id_ed25519"), dir=str(tmp_path / f"host{i}"), netns=f"tgh7-{i}", index=7,
                    number=i, tcp_url=f"tcp://{address}:2376" if kind == "docker" else "",
                    tls={k: str(tmp_path / "tls" / f"{k}.pem") for k in ("ca", "cert", "key")} if kind == "docker" else {})
    (tmp_path / "tls").mkdir()
    for k in ("ca", "cert", "key"):
        (tmp_path / "tls" / f"{k}.pem").write_text(k)
    return HostSet(tmp_path, 7, [host(1, "podman"), host(2, "docker")])


def findings(snippet: dict, extra=None):
    files = {"clouds/c/cloud.yaml": yaml.safe_dump({"name": "c", **snippet}), **(extra or {})}
    return [f for f in check_state(load_cloud(MemoryTree(files), "c")) if f.severity == "error"]


def test_ssh_snippet_validates(tmp_path):
    hs = fake_set(tmp_path)
    snippet = yaml.safe_load(hs.cloud_yaml())
    assert findings(snippet) == []
    assert snippet["hosts"]["host2"]["url"].startswith("ssh://root@10.250.7.12/")
    assert hs.controller_env() == {"TIDEGATE_SSH_KEY": str(tmp_path / "id_ed25519"),
                                   "TIDEGATE_KNOWN_HOSTS": str(tmp_path / "known_hosts")}


def test_tcp_snippet_copies_tls_files_into_the_cloud_folder(tmp_path):
    hs = fake_set(tmp_path)
    cloud_dir = tmp_path / "clouds" / "c"
    snippet = hs.cloud_hosts(transport="tcp", cloud_dir=cloud_dir)
    assert snippet["host2"] == {"engine": "docker", "url": "tcp://10.250.7.12:2376", "address": "10.250.7.12",
                                "tls": {"ca": "tls/ca.pem", "cert": "tls/cert.pem", "key": "tls/key.pem"}}
    extra = {f"clouds/c/tls/{p.name}": p.read_text() for p in (cloud_dir / "tls").iterdir()}
    assert findings({"hosts": snippet}, extra) == []
