"""Private local engine instances for the demo and the tests, on a machine where none
runs (or beside one that does, without touching it).

- podman: `podman system service` on its own socket, with its own storage root, run
  root, network config dir, and a project-local containers.conf (runc: crun fails on
  hybrid cgroups; ulimits within the host's; its own subnet pool) passed as
  CONTAINERS_CONF — /etc is never edited.
- docker: `dockerd` with its own socket, data-root, exec-root, pidfile, address pool and
  default bridge (tgbr<N>, created here: docker0 would be shared), and no iptables rules (several daemons coexist; published ports go
  through docker-proxy).

Quirk: podman 4.3's netavark keeps aardvark-dns state in the machine-global
/run/containers/networks; each private instance gets its own in a mount namespace.

Each instance leases a /16 from a small file-based pool so that instances (xdist
workers, a demo, a gate) never route the same subnet. Its PID and URL are recorded in
<dir>/engine.json; `stop_engine` stops that PID and nothing else.

A recorded PID is trusted only while it is still that engine: after a reboot or once
the PID is reused, an unrelated process may carry it. The process must run the
instance's engine program (podman / dockerd) on the instance's own socket, and must have
started before the record was written; otherwise the record is stale: it is reported,
never signalled, and replaced by the next start.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .common import pid_alive

POOL_DIR = Path(os.environ.get("TIDEGATE_NETPOOL", "/tmp/tidegate-netpool"))
POOL_SIZE = 150                  # 10.100.0.0/16 … 10.249.0.0/16
SYSTEM_SOCKETS = {"podman": "/run/podman/podman.sock", "docker": "/var/run/docker.sock"}
PING_PATHS = {"podman": "/v4.0.0/libpod/_ping", "docker": "/_ping"}
PROGRAMS = {"podman": "podman", "docker": "dockerd"}     # what an instance's PID runs
START_TIMEOUT = 60.0
CLOCK_SLACK = 2.0                # seconds: process start times are read to 1/100 s, boot time to 1 s


class LocalEngineError(Exception):
    pass


@dataclass
class LocalEngine:
    kind: str
    dir: str
    url: str
    pid: int
    pool_index: int
    started_at: float
    start_seconds: float = 0.0
    replaced: str = ""           # why the record found in `dir` was stale, when this start replaced one
    identity: str = ""           # boot id and start tick of `pid` (process_identity): immune to clock jumps

    @property
    def containers_conf(self) -> str | None:
        return str(Path(self.dir) / "containers.conf") if self.kind == "podman" else None

    def env(self) -> dict[str, str]:
        """What a shell needs to use this engine's CLI."""
        if self.kind == "podman":
            return {"CONTAINERS_CONF": self.containers_conf, "CONTAINER_HOST": self.url}
        return {"DOCKER_HOST": self.url}


# -- the subnet pool -------------------------------------------------------------

def lease_slot(pool: Path, size: int, owner: str) -> int:
    """The first free slot (0..size-1) of a file-based pool: a file per slot, created
    exclusively, naming its owner process. A slot whose process is gone (or is another
    process by now: process_identity) is taken over after 30 s. A slot kept for a stopped
    engine's data (`keep_slot`) goes back to that engine's directory and to nobody else
    while the directory exists. Raises LocalEngineError."""
    pool.mkdir(parents=True, exist_ok=True)
    kept = _kept_for(pool, size, owner)
    if kept is not None:
        _write_lease(pool / str(kept), owner, os.getpid())
        return kept
    for i in range(size):
        path = pool / str(i)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            # reclaim a lease whose owner died without releasing it
            try:
                data = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                continue
            if data.get("kept"):
                if not Path(data.get("owner") or "/nonexistent").is_dir():
                    path.unlink(missing_ok=True)         # its data is gone: nothing uses the range
                continue
            pid, at = data.get("pid"), data.get("at", 0)
            if pid and (not pid_alive(pid) or _not_the_process(pid, data.get("identity", ""), at)) \
                    and time.time() - at > 30:
                path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"owner": owner, "pid": os.getpid(), "at": time.time(),
                       "identity": process_identity(os.getpid())}, f)
        return i
    raise LocalEngineError(f"no free slot in {pool} ({size} in use?)")


def _kept_for(pool: Path, size: int, owner: str) -> int | None:
    for i in range(size):
        try:
            data = json.loads((pool / str(i)).read_text() or "{}")
        except (OSError, ValueError):
            continue
        if data.get("kept") and data.get("owner") == owner:
            return i
    return None


def _write_lease(path: Path, owner: str, pid: int | None, kept: bool = False) -> None:
    data = {"owner": owner, "pid": pid, "at": time.time()}
    data.update({"kept": True} if kept else {"identity": process_identity(pid)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def keep_slot(pool: Path, index: int, owner: str) -> None:
    """A stopped engine whose data stays keeps its slot: dockerd's networks, kept in its data
    directory, come back with subnets of that slot's range. Had the slot gone to another
    instance, that instance's set-up would delete their bridges as stale (seen:
    "could not find bridge br-…" when the stopped engine came back)."""
    _write_lease(pool / str(index), owner, None, kept=True)


def _lease(owner: str) -> int:
    index = lease_slot(POOL_DIR, POOL_SIZE, owner)
    _clear_stale_bridges(index)
    return index


def _clear_stale_bridges(index: int) -> None:
    """Bridges left in our freshly leased range by an engine that was killed: they would
    route our new subnets to nowhere. The lease makes them ours to delete."""
    proc = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    prefix = f"10.{100 + index}."
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3].startswith(prefix) and parts[1].startswith(("podman", "br-", "tg")):
            subprocess.run(["ip", "link", "del", parts[1]], capture_output=True)


def _claim(index: int, pid: int, owner: str) -> None:
    _write_lease(POOL_DIR / str(index), owner, pid)


def _release(index: int) -> None:
    (POOL_DIR / str(index)).unlink(missing_ok=True)


def _owns(record: "LocalEngine") -> bool:
    """Whether the record's slot is still leased to it (not taken over by another instance)."""
    try:
        data = json.loads((POOL_DIR / str(record.pool_index)).read_text() or "{}")
    except (OSError, ValueError):
        return False
    return data.get("owner") == record.dir and data.get("pid") == record.pid


def _release_if_ours(record: "LocalEngine") -> bool:
    """Release the lease of a stale record, unless another instance holds that index now."""
    if _owns(record):
        (POOL_DIR / str(record.pool_index)).unlink(missing_ok=True)
        return True
    return False


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), from /proc; None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # the command name (field 2) may hold spaces and parentheses: fields after the last ")"
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_identity(pid: int) -> str:
    """`<boot id>:<start tick>` of `pid`: the same process gives the same text for as long as
    it runs, whatever the wall clock does; a reused PID or a reboot gives another. "" when
    /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
    return f"{boot}:{ticks}"


def _not_the_process(pid: int, identity: str, when: float) -> bool:
    """Is `pid` another process than the one recorded (with `identity`, at `when`)? Records
    that carry an identity compare it exactly: a wall clock that jumped after boot (measured
    here: 15 s) made a live engine look started after its own record, and it was replaced
    while it ran. Older records fall back to the start time."""
    if identity:
        return process_identity(pid) != identity
    return _started_after(pid, when)


def _started_after(pid: int, when: float) -> bool:
    """Did `pid` start after `when`? Then it is not the process recorded at `when`."""
    start = _process_start(pid)
    return start is not None and start > when + CLOCK_SLACK


def stale_reason(record: "LocalEngine") -> str | None:
    """Why `record` no longer describes a running engine, or None when its PID is still
    that engine: the instance's engine program, serving the instance's socket, started
    before the record was written. A live PID alone proves nothing (reboot, PID reuse)."""
    if not pid_alive(record.pid):
        return f"pid {record.pid} is not running"
    argv = _argv(record.pid)
    program = PROGRAMS.get(record.kind, record.kind)
    if not argv or os.path.basename(argv[0]) != program or record.url not in argv:
        what = " ".join(argv)[:80] or "unreadable"
        return f"pid {record.pid} is now `{what}`, not {program} on {record.url}"
    if _not_the_process(record.pid, record.identity, record.started_at):
        return f"pid {record.pid} is another process than the recorded one (the PID was reused, or a reboot)"
    return None


def forget(record: "LocalEngine") -> None:
    """Drop a stale record (and its subnet lease) without signalling anything."""
    if _release_if_ours(record) and record.kind == "docker":
        _remove_bridge(record.pool_index)        # the lease was still ours: so is its bridge
    path = Path(record.dir, "engine.json")
    try:
        if json.loads(path.read_text()).get("pid") == record.pid:
            path.unlink()
    except (OSError, ValueError):
        pass


# -- start / stop ------------------------------------------------------------------

def _host_limit(resource, fallback: int) -> int:
    import resource as r
    soft, hard = r.getrlimit(resource)
    hard = fallback if hard == r.RLIM_INFINITY else hard
    return min(hard, fallback)


def write_containers_conf(path: Path, index: int) -> None:
    import resource
    nofile = _host_limit(resource.RLIMIT_NOFILE, 10000)
    nproc = _host_limit(resource.RLIMIT_NPROC, 5000)
    path.write_text(f"""# Written by tidegate for a private podman instance; used via CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]

[network]
default_subnet_pools = [{{"base" = "10.{100 + index}.0.0/16", "size" = 24}}]
default_subnet = "10.{100 + index}.255.0/24"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
""")


def answers(kind: str, sock: str) -> bool:
    """Does an engine of `kind` answer on unix socket `sock` (not merely: does the file exist)?"""
    return _ping(sock, PING_PATHS[kind])


def _ping(sock: str, path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def _bridge(index: int) -> str:
    """The instance's own default bridge (docker0 is shared by every dockerd otherwise)."""
    name = f"tgbr{index}"
    if not Path(f"/sys/class/net/{name}").exists():
        for cmd in (["ip", "link", "add", name, "type", "bridge"],
                    ["ip", "addr", "add", f"10.{100 + index}.254.1/24", "dev", name],
                    ["ip", "link", "set", name, "up"]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 and "File exists" not in proc.stderr:
                raise LocalEngineError(f"cannot create bridge {name}: {' '.join(cmd)}: {proc.stderr.strip()}")
    return name


def _remove_bridge(index: int) -> None:
    subprocess.run(["ip", "link", "del", f"tgbr{index}"], capture_output=True)


def _own_netrun(d: Path) -> list[str]:
    """Run podman in a private mount namespace whose /run/containers/networks is its own:
    podman 4.3 hard-codes that directory for netavark and aardvark-dns state, so several
    instances on one machine would share one DNS server and overwrite each other's
    records. The network namespace stays the host's: bridges and ports are real."""
    script = ('mkdir -p /run/containers/networks && '
              'mount --bind "$0" /run/containers/networks && exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(d / "netrun")]


def podman_args(d: Path) -> list[str]:
    return ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"), "--tmpdir", str(d / "tmp"),
            "--network-config-dir", str(d / "net"), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def start_engine(kind: str, directory: str | os.PathLike) -> LocalEngine:
    """Start a private engine in `directory` (created), wait until it answers. An engine
    recorded there and still running is returned as it is; a stale record is replaced
    (the new record's `replaced` says why)."""
    d = Path(directory).resolve()
    replaced = ""
    existing = recorded(d)
    if existing is not None:
        replaced = stale_reason(existing) or ""
        if not replaced:
            return existing
        forget(existing)
    d.mkdir(parents=True, exist_ok=True)
    index = _lease(str(d))
    sock = d / f"{kind}.sock"
    sock.unlink(missing_ok=True)
    log = open(d / "engine.log", "ab")
    env = dict(os.environ)
    if kind == "podman":
        conf = d / "containers.conf"
        write_containers_conf(conf, index)
        for sub in ("root", "run", "tmp", "net"):
            (d / sub).mkdir(exist_ok=True)
        env["CONTAINERS_CONF"] = str(conf)
        env.pop("CONTAINER_HOST", None)
        (d / "netrun").mkdir(exist_ok=True)
        argv = _own_netrun(d) + podman_args(d) + ["system", "service", "--time=0", f"unix://{sock}"]
    elif kind == "docker":
        bridge = _bridge(index)
        argv = ["dockerd", "-H", f"unix://{sock}", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                "--pidfile", str(d / "docker.pid"), "--bridge", bridge, "--iptables=false", "--ip6tables=false",
                "--default-address-pool", f"base=10.{100 + index}.0.0/16,size=24"]
    else:
        _release(index)
        raise LocalEngineError(f"unknown engine kind {kind!r}")
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    except FileNotFoundError:
        _release(index)
        raise LocalEngineError(f"{argv[0]} is not installed (make setup installs it)") from None
    _claim(index, proc.pid, str(d))
    while not answers(kind, str(sock)):
        if proc.poll() is not None:
            _release(index)
            tail = (d / "engine.log").read_text(errors="replace").splitlines()[-5:]
            raise LocalEngineError(f"{kind} exited with {proc.returncode} while starting: {' | '.join(tail)}")
        if time.monotonic() - t0 > START_TIMEOUT:
            _kill(proc.pid)
            _release(index)
            raise LocalEngineError(f"{kind} did not answer on {sock} within {START_TIMEOUT:.0f}s")
        time.sleep(0.05)
    record = LocalEngine(kind, str(d), f"unix://{sock}", proc.pid, index, time.time(), time.monotonic() - t0,
                         replaced, process_identity(proc.pid))
    (d / "engine.json").write_text(json.dumps(asdict(record), indent=2))
    return record


def recorded(directory: str | os.PathLike) -> LocalEngine | None:
    """The engine recorded in `directory`, whether or not it still runs."""
    path = Path(directory) / "engine.json"
    try:
        return LocalEngine(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running(directory: str | os.PathLike) -> LocalEngine | None:
    """The engine recorded in `directory`, if that engine still runs (see stale_reason)."""
    record = recorded(directory)
    return record if record is not None and stale_reason(record) is None else None


def _kill(pid: int, timeout: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, os.WNOHANG)     # reap it when it is our child
    except ChildProcessError:
        pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _namespace_members(pid: int) -> list[int]:
    """Other processes in the private mount namespace of engine `pid`."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return []
    if ns == os.readlink("/proc/self/ns/mnt"):
        return []           # not in a private namespace: never kill outside our own
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != pid and os.readlink(proc / "ns/mnt") == ns:
                members.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return members


def stop_engine(record: LocalEngine, *, purge: bool = False) -> str | None:
    """Stop the engine by its PID; its containers stop with it (podman's are stopped
    first, as dockerd stops its own). With purge (tests), they are removed too.

    A stale record (its PID is no longer this engine) is forgotten and nothing is
    signalled: the reason is returned (None when the engine was stopped)."""
    stale = stale_reason(record)
    if stale is not None:
        forget(record)
        return stale
    if record.kind == "podman" and pid_alive(record.pid):
        # Containers would live on under conmon after the API service stops, their network
        # namespaces mounted in this instance's private mount namespace only: a restarted
        # instance could not use them. Stop them (kept, restartable) as dockerd does on
        # shutdown; purge removes them.
        env = dict(os.environ, CONTAINERS_CONF=record.containers_conf)
        env.pop("CONTAINER_HOST", None)
        what = ["rm", "-a", "-f", "-t", "0"] if purge else ["stop", "-a", "-t", "10"]
        subprocess.run(["nsenter", f"--mount=/proc/{record.pid}/ns/mnt"] + podman_args(Path(record.dir)) + what,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    if purge and record.kind == "docker" and pid_alive(record.pid):
        host = ["docker", "-H", record.url]
        ids = subprocess.run(host + ["ps", "-aq"], capture_output=True, text=True, timeout=60).stdout.split()
        if ids:
            subprocess.run(host + ["rm", "-f", *ids], capture_output=True, timeout=120)
        subprocess.run(host + ["network", "prune", "-f"], capture_output=True, timeout=60)
    helpers = _namespace_members(record.pid) if record.kind == "podman" else []
    _kill(record.pid)
    # aardvark-dns of this instance lives on in its namespace; exec sessions leave a
    # conmon behind for --exit-delay (300 s): end them too.
    for pid in helpers if purge else [p for p in helpers if "aardvark" in _cmdline(p)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if record.kind == "docker":
        _remove_bridge(record.pool_index)
    if purge:
        _release(record.pool_index)
    elif _owns(record):
        keep_slot(POOL_DIR, record.pool_index, str(Path(record.dir).resolve()))
    Path(record.dir, "engine.json").unlink(missing_ok=True)
    return None


# -- what hosts without a url use ----------------------------------------------------

def engines_home() -> Path:
    return Path(os.environ.get("TIDEGATE_ENGINE_DIR", ".tidegate/engines"))


def default_url(kind: str) -> str | None:
    """A private engine started by `tidegate engine up` here, else the system socket."""
    record = running(engines_home() / kind)
    if record is not None:
        return record.url
    system = SYSTEM_SOCKETS.get(kind)
    if system and os.path.exists(system):
        return f"unix://{system}"
    return None
