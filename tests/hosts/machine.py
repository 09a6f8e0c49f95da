"""One test host: a Debian root filesystem (an overlay on the shared unpacked rootfs),
its own network, mount, PID, UTS and IPC namespaces, and inside it sshd on port 22 of
its address and one engine (podman's API service or dockerd) on the usual socket.

The host is booted by `nsenter --net=<its netns> unshare --mount --pid --fork ...`
running BOOT: it mounts the overlay, a fresh /proc, sysfs (showing the host's own
interfaces), the machine's cgroup hierarchy (the engines need it; cgroup v1 here), a
private /dev (a few device nodes, its own devpts and shm), tmpfs /run and /tmp, and the
engines' storage from real directories of this machine (overlay storage drivers refuse
an overlay as backing filesystem), then pivot_root's into the overlay and execs the
host's init. The init is PID 1 of the host's PID namespace: killing it ends every
process of the host (engine, containers, sshd) at once, and with the last process the
mount namespace and all its mounts go away. Nothing of the machine's filesystem is
visible inside except those storage directories, seen at /var/lib/{containers,docker}.

Services inside are started and stopped by /usr/local/sbin/tg-service (pidfiles in
/run), so a test can stop a host's engine or sshd and start it again (`Host.service`).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.engines import local
from controller.engines.common import pid_alive

from . import keys, network

SOCKETS = {"podman": "/run/podman/podman.sock", "docker": "/var/run/docker.sock"}
DOCKER_TLS_PORT = 2376
READY_TIMEOUT = 90.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BOOT = r"""
set -e
H="$1"; LOWER="$2"; NAME="$3"; R="$H/root"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$H/upper,workdir=$H/work" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
mount -t mqueue mqueue "$R/dev/mqueue"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mkdir -p "$R/var/lib/containers" "$R/var/lib/docker"
mount --bind "$H/storage/containers" "$R/var/lib/containers"
mount --bind "$H/storage/docker" "$R/var/lib/docker"
hostname "$NAME"
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    /usr/bin/python3 /usr/local/sbin/tg-init
"""

INIT = """#!/usr/bin/python3
# PID 1 of a tidegate test host: start sshd and the engine, then reap every orphan.
import os, subprocess, time
for service in ("sshd", "engine"):
    subprocess.run(["/usr/local/sbin/tg-service", "start", service])
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
"""

SERVICE = """#!/bin/sh
# tg-service start|stop sshd|engine: each is started by the script /etc/tidegate/<name>.sh
set -e
what="$2"; pidfile="/run/tg-$what.pid"
case "$1" in
start)
    setsid sh "/etc/tidegate/$what.sh" >>"/var/log/tg-$what.log" 2>&1 </dev/null &
    echo $! >"$pidfile" ;;
stop)
    pid=$(cat "$pidfile" 2>/dev/null) || exit 0
    kill -TERM "$pid" 2>/dev/null || exit 0
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile" ;;
*)  echo "usage: tg-service start|stop sshd|engine" >&2; exit 2 ;;
esac
"""

SSHD_CONFIG = """# tidegate test host: root logs in with the set-up's key only
ListenAddress {address}
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
"""

CONTAINERS_CONF = """# tidegate test host: runc (crun fails on this machine's cgroups), ulimits within the machine's
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass
class Host:
    """A test host as tests and cloud.yaml see it, and what tearing it down needs."""
    name: str
    kind: str                        # podman | docker
    address: str
    ssh_url: str                     # ssh://root@ADDRESS/<engine socket>
    known_hosts: str                 # the set-up's known_hosts file (every host's key)
    key: str                         # the root login key (private)
    dir: str
    netns: str
    index: int                       # the set-up's network index
    number: int                      # i: 1, 2, …
    tcp_url: str = ""                # docker: tcp://ADDRESS:2376 (TLS)
    tls: dict = field(default_factory=dict)     # docker: the controller's {ca, cert, key}
    pid: int = 0                     # unshare (in this machine's PID namespace)
    init_pid: int = 0                # the host's PID 1, as this machine sees it
    start_seconds: float = 0.0

    def record(self) -> dict:
        return asdict(self)

    def alive(self) -> bool:
        """The recorded PID still runs this host's boot (not a reused PID)."""
        return pid_alive(self.pid) and self.dir in _cmdline(self.pid)

    def nsenter(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a command inside the host (its namespaces and root): the operator's hand on the
        machine, for tests that stop services or look at the host's disk. Never tidegate's way in."""
        return subprocess.run(["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                               "env", "-i", f"PATH={PATH}", "HOME=/root", *argv], capture_output=True, text=True, **kw)

    def service(self, action: str, what: str) -> None:
        """Stop or start the host's `sshd` or `engine` (as a failing machine would)."""
        proc = self.nsenter(["/usr/local/sbin/tg-service", action, what], timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"host {self.name}: tg-service {action} {what}: {proc.stderr.strip()}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _limit(resource_id, fallback: int) -> int:
    import resource
    soft, hard = resource.getrlimit(resource_id)
    return fallback if hard == resource.RLIM_INFINITY else min(hard, fallback)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def prepare(host: Host, authorized_key: str, ca_dir: Path) -> str:
    """Write the host's own files into its overlay's upper layer; returns its public host key."""
    import resource
    d = Path(host.dir)
    upper = d / "upper"
    for sub in ("upper", "work", "root", "storage/containers", "storage/docker"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    _write(upper / "etc/hostname", host.name + "\n")
    _write(upper / "etc/hosts", f"127.0.0.1 localhost\n{host.address} {host.name}\n")
    _write(upper / "etc/resolv.conf", "# no name server: a test host reaches only its bridge\n")
    (upper / "root").mkdir(mode=0o700, exist_ok=True)
    _write(upper / "root/.ssh/authorized_keys", authorized_key + "\n", 0o600)
    (upper / "root/.ssh").chmod(0o700)
    host_key = upper / "etc/ssh/ssh_host_ed25519_key"
    public = keys.ssh_key(host_key, f"root@{host.name}")
    host_key.chmod(0o600)
    _write(upper / "etc/ssh/sshd_config.d/tidegate.conf", SSHD_CONFIG.format(address=host.address))
    _write(upper / "etc/tidegate/sshd.sh", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e\n")
    if host.kind == "podman":
        _write(upper / "etc/containers/containers.conf",
               CONTAINERS_CONF.format(nofile=_limit(resource.RLIMIT_NOFILE, 10000),
                                      nproc=_limit(resource.RLIMIT_NPROC, 5000)))
        engine = f"mkdir -p /run/podman && exec podman system service --time=0 unix://{SOCKETS['podman']}"
    else:
        server = keys.signed_certificate(ca_dir, upper / "etc/docker/tls", host.name, server_ip=host.address)
        inside = {k: "/etc/docker/tls/" + Path(v).name for k, v in server.items()}
        engine = (f"exec dockerd -H unix://{SOCKETS['docker']} -H tcp://{host.address}:{DOCKER_TLS_PORT} "
                  f"--tlsverify --tlscacert {inside['ca']} --tlscert {inside['cert']} --tlskey {inside['key']}")
    _write(upper / "etc/tidegate/engine.sh", engine + "\n")
    _write(upper / "usr/local/sbin/tg-init", INIT, 0o755)
    _write(upper / "usr/local/sbin/tg-service", SERVICE, 0o755)
    return public


def boot(host: Host, lower: Path) -> None:
    """Start the host's namespaces and init (its netns must exist); records the PIDs."""
    log = open(Path(host.dir) / "boot.log", "ab")
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{host.netns}", "unshare", "--mount", "--uts", "--ipc",
                             "--pid", "--fork", "--kill-child=SIGKILL", "--propagation", "private",
                             "sh", "-c", BOOT, "boot", host.dir, str(lower), host.name],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    host.pid = proc.pid
    deadline = time.monotonic() + 10
    while not host.init_pid:
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            host.init_pid = int(children[0])
        elif proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"host {host.name}: boot failed: {_tail(Path(host.dir) / 'boot.log')}")
        else:
            time.sleep(0.01)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ssh_banner(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=2) as s:
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(host: Host, timeout: float = READY_TIMEOUT) -> None:
    """Until sshd answers on the host's address and the engine on its socket (looked at
    through /proc/<init>/root: the set-up's view, not the controller's)."""
    # /var/run is an absolute symlink: it would resolve in this machine's root, not the host's
    sock = f"/proc/{host.init_pid}/root{SOCKETS[host.kind].replace('/var/run/', '/run/')}"
    deadline = time.monotonic() + timeout
    ssh_up = engine_up = False
    while not (ssh_up and engine_up):
        ssh_up = ssh_up or _ssh_banner(host.address)
        engine_up = engine_up or local.answers(host.kind, sock)
        if not pid_alive(host.init_pid):
            raise RuntimeError(f"host {host.name}: stopped while starting: {_tail(Path(host.dir) / 'boot.log')}")
        if time.monotonic() > deadline:
            upper = Path(host.dir) / "upper/var/log"
            what = "sshd" if not ssh_up else "engine"
            raise RuntimeError(f"host {host.name}: {what} not up after {timeout:.0f}s: "
                               f"{_tail(upper / f'tg-{what}.log')}")
        time.sleep(0.1)


def halt(host: Host) -> None:
    """End every process of the host (SIGKILL to its PID 1) and wait for its boot process."""
    if host.init_pid and host.alive():
        try:
            os.kill(host.init_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if host.pid and host.alive():
        deadline = time.monotonic() + 30
        while pid_alive(host.pid) and time.monotonic() < deadline:
            try:
                if os.waitpid(host.pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if pid_alive(host.pid):
            os.kill(host.pid, signal.SIGKILL)
