"""A set of test hosts: start N in parallel, record them, stop them by PID and name.

The record (<dir>/hosts.json) holds each host's PIDs, network namespace and bridge, so
`python -m tests.hosts down <dir>` (or a later test session) stops exactly what one
set-up started. Set-up credentials live in <dir>: `id_ed25519` (root's login key on
every host), `known_hosts` (every host's own key), `tls/` (the client certificate a
controller shows to the docker hosts' TLS port) and `ca/`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from . import keys, machine, network, rootfs
from .machine import Host


class HostSet:
    def __init__(self, directory: Path, index: int, hosts: list[Host]):
        self.dir, self.index, self.hosts = directory, index, hosts
        self.bridge = network.bridge_name(index)
        self.setup_seconds = 0.0

    def __iter__(self):
        return iter(self.hosts)

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    @property
    def known_hosts(self) -> str:
        return str(self.dir / "known_hosts")

    @property
    def key(self) -> str:
        return str(self.dir / "id_ed25519")

    def controller_env(self) -> dict[str, str]:
        """The controller's settings that let it log in to these hosts."""
        return {"TIDEGATE_SSH_KEY": self.key, "TIDEGATE_KNOWN_HOSTS": self.known_hosts}

    def save(self) -> None:
        (self.dir / "hosts.json").write_text(json.dumps(
            {"index": self.index, "bridge": self.bridge, "hosts": [h.record() for h in self.hosts]}, indent=2))

    def cloud_hosts(self, *, transport: str = "ssh", cloud_dir: str | Path | None = None) -> dict:
        """The `hosts:` mapping of a cloud.yaml for these hosts. transport "tcp" gives docker
        hosts their TLS port (certificates copied into `cloud_dir`, named relative to it)."""
        out = {}
        for h in self.hosts:
            entry = {"engine": h.kind, "url": h.ssh_url, "address": h.address, "known_hosts": h.known_hosts}
            if transport == "tcp" and h.kind == "docker":
                entry = {"engine": h.kind, "url": h.tcp_url, "address": h.address, "tls": dict(h.tls)}
                if cloud_dir is not None:
                    target = Path(cloud_dir) / "tls"
                    target.mkdir(parents=True, exist_ok=True)
                    for k, v in h.tls.items():
                        shutil.copy(v, target / Path(v).name)
                        entry["tls"][k] = f"tls/{Path(v).name}"
            out[h.name] = entry
        return out

    def cloud_yaml(self, **kw) -> str:
        """A cloud.yaml `hosts:` snippet for these hosts (see cloud_hosts)."""
        return yaml.safe_dump({"hosts": self.cloud_hosts(**kw)}, sort_keys=False)

    def stop(self) -> None:
        stop_hosts(self.hosts, self.index)
        remove_dir(self.dir)


def start_hosts(kinds: list[str] | tuple[str, ...], directory: str | Path, *, prefix: str = "host",
                log=print) -> HostSet:
    """Start one host per entry of `kinds` ("podman"/"docker"), in parallel; returns when
    every sshd and engine answers. On failure, whatever started is stopped again."""
    t0 = time.monotonic()
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    lower = rootfs.lower_dir(log)
    index = network.lease(str(d))
    hosts: list[Host] = []
    try:
        network.make_bridge(index)
        authorized = keys.ssh_key(d / "id_ed25519", "tidegate-controller")
        client_tls = keys.signed_certificate(d / "ca", d / "tls", "tidegate-controller")
        for i, kind in enumerate(kinds, start=1):
            address = network.host_address(index, i)
            hosts.append(Host(
                name=f"{prefix}{i}", kind=kind, address=address,
                ssh_url=f"ssh://root@{address}{machine.SOCKETS[kind]}",
                known_hosts=str(d / "known_hosts"), key=str(d / "id_ed25519"), dir=str(d / f"{prefix}{i}"),
                netns=network.netns_name(index, i), index=index, number=i,
                tcp_url=f"tcp://{address}:{machine.DOCKER_TLS_PORT}" if kind == "docker" else "",
                tls=dict(client_tls) if kind == "docker" else {}))

        def one(host: Host) -> str:
            began = time.monotonic()
            public = machine.prepare(host, authorized, d / "ca")
            network.make_netns(host.index, host.number)
            machine.boot(host, lower)
            machine.wait_ready(host)
            host.start_seconds = time.monotonic() - began
            return keys.known_hosts_line(host.address, 22, public)

        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            lines = list(pool.map(one, hosts))
        (d / "known_hosts").write_text("\n".join(lines) + "\n")
    except BaseException:
        stop_hosts(hosts, index)
        raise
    finally:
        if hosts:
            HostSet(d, index, hosts).save()
    result = HostSet(d, index, hosts)
    result.setup_seconds = time.monotonic() - t0
    return result


def stop_hosts(hosts: list[Host], index: int) -> None:
    """Stop each host by its recorded PIDs (a PID that no longer runs that host's boot is
    left alone), then remove its namespace, and the set-up's bridge and lease."""
    for h in hosts:
        machine.halt(h)
        network.remove_netns(h.index, h.number)
    network.remove_bridge(index)
    network.release(index)


def recorded(directory: str | Path) -> HostSet | None:
    path = Path(directory) / "hosts.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return HostSet(Path(directory).resolve(), data["index"], [Host(**h) for h in data["hosts"]])


def remove_dir(d: Path) -> None:
    """The set-up's directory; first detach anything still mounted under it."""
    prefix = str(d) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)
