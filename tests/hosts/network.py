"""The test hosts' network: one bridge per set-up on this machine, 10.250.<n>.1/24, and
per host a network namespace joined to it by a veth pair (the host's eth0,
10.250.<n>.<10+i>). The hosts get no default route: nothing they send can leave the
bridge. The engines' private instances lease 10.100-249.0.0/16 (controller/engines/
local.py), so 10.250.0.0/16 collides with none of them.

A set-up leases its <n> from a file pool like the engines' subnets, so parallel test
workers and an operator's `make hosts` never share a bridge."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from controller.engines import local

POOL_DIR = Path(os.environ.get("TIDEGATE_HOSTPOOL", "/tmp/tidegate-hostpool"))
POOL_SIZE = 256
FIRST_HOST = 10                  # host i (1-based) is 10.250.<n>.<FIRST_HOST + i>


def bridge_name(index: int) -> str:
    return f"tgh{index}"


def gateway(index: int) -> str:
    return f"10.250.{index}.1"


def host_address(index: int, i: int) -> str:
    return f"10.250.{index}.{FIRST_HOST + i}"


def netns_name(index: int, i: int) -> str:
    return f"tgh{index}-{i}"


def veth_name(index: int, i: int) -> str:
    return f"tgh{index}v{i}"         # at most 10 characters: the kernel allows 15


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def lease(owner: str) -> int:
    """A free set-up index (the engines' pool logic, on the test hosts' own pool)."""
    return local.lease_slot(POOL_DIR, POOL_SIZE, owner)


def release(index: int) -> None:
    (POOL_DIR / str(index)).unlink(missing_ok=True)


def make_bridge(index: int) -> str:
    name = bridge_name(index)
    ip("link", "del", name, check=False)        # left by a killed set-up of the same lease
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", f"{gateway(index)}/24", "dev", name)
    ip("link", "set", name, "up")
    return name


def remove_bridge(index: int) -> None:
    ip("link", "del", bridge_name(index), check=False)


def make_netns(index: int, i: int) -> str:
    """The namespace of host i, its eth0 on the set-up's bridge; returns its name."""
    ns, veth = netns_name(index, i), veth_name(index, i)
    clear_stale(index, i)
    ip("netns", "add", ns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", veth, "master", bridge_name(index), "up")
    ip("-n", ns, "addr", "add", f"{host_address(index, i)}/24", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")
    return ns


def clear_stale(index: int, i: int) -> None:
    """What a killed set-up of the same lease left of host i: processes still running in
    its namespace (they keep the namespace, and with it the veth pair, alive after
    `ip netns del`), the namespace's name, and the veth. The lease makes them ours. Seen
    in CI: "ip link add tgh0v1 …: RTNETLINK answers: File exists"."""
    ns, veth = netns_name(index, i), veth_name(index, i)
    for pid in ip("netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    ip("netns", "del", ns, check=False)
    ip("link", "del", veth, check=False)
    deadline = time.monotonic() + 10
    while ip("link", "show", veth, check=False).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{veth} of a stale test host is still there after 10 s; "
                               f"remove it with: ip link del {veth}")
        time.sleep(0.1)


def remove_netns(index: int, i: int) -> None:
    ip("netns", "del", netns_name(index, i), check=False)     # takes its veth pair along
    ip("link", "del", veth_name(index, i), check=False)


def route_device(address: str) -> str | None:
    """The interface this machine sends to `address` through (`ip route get`)."""
    proc = ip("-o", "route", "get", address, check=False)
    words = proc.stdout.split()
    return words[words.index("dev") + 1] if "dev" in words else None
