"""Records of private engines, without an engine: a recorded PID is trusted only while it
is still that engine, and a socket file is trusted only when an engine answers on it.

A reboot or PID reuse can give a recorded PID to an unrelated process: `engine down`
must never signal it and `engine up` must not call it "already running". Every process
here is one the test starts itself (and stops by its PID).
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from controller.cli import main
from controller.engines import local

from ..conftest import KINDS, ROOT


@pytest.fixture
def pool(tmp_path, monkeypatch):
    """A subnet pool of the test's own: leases here never touch real instances'."""
    path = tmp_path / "pool"
    path.mkdir()
    monkeypatch.setattr(local, "POOL_DIR", path)
    return path


@pytest.fixture(autouse=True)
def removed_bridges(monkeypatch):
    """Bridges are named by pool index, so real instances' bridges must be out of reach:
    the calls that would delete one are recorded instead."""
    removed = []
    monkeypatch.setattr(local, "_remove_bridge", removed.append)
    monkeypatch.setattr(local, "_clear_stale_bridges", lambda index: None)
    return removed


@pytest.fixture
def processes():
    """Start processes for the test; each is killed by its own PID (group) afterwards."""
    started: list[subprocess.Popen] = []

    def start(argv, **kw):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, **kw)
        started.append(proc)
        deadline = time.monotonic() + 5
        while not local._argv(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return proc
    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def write_record(directory: Path, kind: str, pid: int, pool: Path, started_at: float, index: int = 7,
                 lease: bool = True):
    """engine.json (and its subnet lease) as start_engine writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    record = local.LocalEngine(kind, str(directory), f"unix://{directory}/{kind}.sock", pid, index, started_at)
    (directory / "engine.json").write_text(json.dumps(record.__dict__))
    if lease:
        (pool / str(index)).write_text(json.dumps({"owner": str(directory), "pid": pid, "at": started_at}))
    return record


def look_alike(processes, kind: str, url: str):
    """A process whose command line is that of the engine of `kind` serving `url`."""
    program = local.PROGRAMS[kind]
    return processes([program, "-c", "sleep 600; :", url], executable="/bin/sh")


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_whose_pid_runs_something_else_is_stale_and_never_signalled(kind, tmp_path, pool, processes,
                                                                              removed_bridges):
    unrelated = processes(["sleep", "600"])
    record = write_record(tmp_path / kind, kind, unrelated.pid, pool, time.time())
    reason = local.stale_reason(record)
    assert reason is not None and str(unrelated.pid) in reason and "sleep 600" in reason
    assert local.running(tmp_path / kind) is None
    assert local.recorded(tmp_path / kind) == record

    assert local.stop_engine(record, purge=True) == reason           # nothing stopped, and why
    assert unrelated.poll() is None and local.pid_alive(unrelated.pid)  # the unrelated process lives on
    assert local.recorded(tmp_path / kind) is None                   # the stale record is gone
    assert not (pool / str(record.pool_index)).exists()              # and so is its lease
    assert removed_bridges == ([record.pool_index] if kind == "docker" else [])   # the lease was its own


@pytest.mark.parametrize("kind", KINDS)
def test_a_pid_is_trusted_only_when_it_runs_the_engine_on_its_socket_and_predates_the_record(
        kind, tmp_path, pool, processes):
    url = f"unix://{tmp_path / kind}/{kind}.sock"
    engine_like = look_alike(processes, kind, url)
    record = write_record(tmp_path / kind, kind, engine_like.pid, pool, time.time())
    assert local.stale_reason(record) is None and local.running(tmp_path / kind) == record

    other_socket = write_record(tmp_path / "other", kind, engine_like.pid, pool, time.time(), index=8)
    assert "not " + local.PROGRAMS[kind] + " on " + other_socket.url in local.stale_reason(other_socket)

    other_kind = "docker" if kind == "podman" else "podman"
    mistaken = write_record(tmp_path / kind, other_kind, engine_like.pid, pool, time.time())
    assert local.stale_reason(mistaken) is not None

    # written long before the process started: the PID was reused since (a reboot, say)
    reused = write_record(tmp_path / kind, kind, engine_like.pid, pool, time.time() - 3600)
    assert "reused" in local.stale_reason(reused) and local.running(tmp_path / kind) is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_with_the_processes_identity_survives_a_wall_clock_jump(kind, tmp_path, pool, processes):
    """The wall clock jumped (measured here: 15 s after boot): by start times, a live
    engine looked started after its own record and was replaced while it ran. A record
    carrying the process's boot id and start tick is judged by those alone."""
    url = f"unix://{tmp_path / kind}/{kind}.sock"
    engine_like = look_alike(processes, kind, url)
    me = local.process_identity(engine_like.pid)
    assert me and me == local.process_identity(engine_like.pid)
    record = write_record(tmp_path / kind, kind, engine_like.pid, pool, time.time() - 3600)   # the clock "jumped"
    same = local.LocalEngine(**{**record.__dict__, "identity": me})
    assert local.stale_reason(same) is None
    other = local.LocalEngine(**{**record.__dict__, "identity": me.split(":")[0] + ":1"})     # a reused PID
    assert "another process" in local.stale_reason(other)


def test_a_subnet_lease_is_reclaimed_from_a_dead_or_reused_pid_and_kept_by_a_live_owner(pool, processes):
    # a lease is reclaimed only once older than 30 s; pid 1 plays the live owner, whose
    # lease was taken just after it started
    minute_ago = time.time() - 60
    owner_taken = (local._process_start(1) or time.time()) + 1
    if owner_taken > time.time() - 31:
        pytest.skip("pid 1 started less than half a minute ago")
    dead = subprocess.Popen(["true"])
    dead.wait()
    reused = processes(["sleep", "600"])                 # started after its lease was taken
    for index, pid, at in ((0, dead.pid, minute_ago), (1, reused.pid, minute_ago), (2, 1, owner_taken)):
        (pool / str(index)).write_text(json.dumps({"owner": f"/old/{index}", "pid": pid, "at": at}))
    got = local._lease("test")
    try:
        assert not (pool / "0").exists() and not (pool / "1").exists()     # reclaimed
        assert json.loads((pool / "2").read_text())["owner"] == "/old/2"   # its owner still runs
        assert got == 3
        assert local._lease("test") == 0                                   # reclaimed leases are free again
    finally:
        for index in (0, got):
            local._release(index)


def test_a_stopped_engine_with_its_data_keeps_its_slot_until_its_directory_is_gone(pool, tmp_path):
    # make test met it: a stopped dockerd's slot went to another worker's new engine, whose
    # set-up deleted the bridges of the stopped engine's networks as stale
    data = tmp_path / "engine-b"
    data.mkdir()
    first = local.lease_slot(pool, 4, str(data))
    local.keep_slot(pool, first, str(data))                  # stop_engine without purge does this
    other = local.lease_slot(pool, 4, "/elsewhere")
    assert other != first                                    # not handed to anybody else
    assert local.lease_slot(pool, 4, str(data)) == first     # but back to its own directory
    local.keep_slot(pool, first, str(data))
    data.rmdir()                                             # its data gone: the range is free
    local.lease_slot(pool, 4, "/third")                      # the scan reclaims it...
    assert local.lease_slot(pool, 4, "/fourth") == first     # ...and hands it out again


def tidegate(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("kind", KINDS)
def test_engine_status_and_down_report_a_stale_record_and_signal_nothing(kind, tmp_path, pool, processes):
    unrelated = processes(["sleep", "600"])
    directory = tmp_path / kind
    # no lease: nothing of a real instance (its bridge, named by index) is ever in reach
    write_record(directory, kind, unrelated.pid, pool, time.time(), lease=False)
    env = {"TIDEGATE_NETPOOL": str(pool)}
    status = tidegate("engine", "status", "--kind", kind, "--dir", str(directory), env=env)
    assert status.returncode == 1 and "not running" in status.stdout and "stale record" in status.stdout
    assert f"pid {unrelated.pid}" in status.stdout
    down = tidegate("engine", "down", "--kind", kind, "--dir", str(directory), env=env)
    assert down.returncode == 0, down.stderr
    assert "not running" in down.stdout and "nothing was signalled" in down.stdout
    assert unrelated.poll() is None
    assert not (directory / "engine.json").exists()


# -- a system engine's socket ------------------------------------------------------------

class _PingHandler(http.server.BaseHTTPRequestHandler):
    ping_path = "/_ping"

    def do_GET(self):
        self.send_response(200 if self.path == self.ping_path else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def system(tmp_path, monkeypatch):
    """Point `engine up` at a system socket path of the test's own, and record the private
    engines it would start instead of starting them."""
    started = []

    def start_engine(kind, directory):
        started.append((kind, Path(directory)))
        return local.LocalEngine(kind, str(directory), f"unix://{directory}/{kind}.sock", 4242, 0, time.time(), 0.5)
    sockets = {kind: str(tmp_path / f"{kind}-system.sock") for kind in KINDS}
    monkeypatch.setattr(local, "SYSTEM_SOCKETS", sockets)
    monkeypatch.setattr(local, "start_engine", start_engine)
    monkeypatch.setenv("TIDEGATE_ENGINE_DIR", str(tmp_path / "home"))
    return sockets, started


@pytest.mark.parametrize("kind", KINDS)
def test_engine_up_starts_a_private_engine_when_the_system_socket_is_stale(kind, system, capsys):
    sockets, started = system
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sockets[kind])                           # the file stays; nobody listens on it
    stale.close()
    assert os.path.exists(sockets[kind])
    assert main(["engine", "up", "--kind", kind]) == 0
    out = capsys.readouterr().out
    assert f"{sockets[kind]} exists but no engine answers on it" in out
    assert "started in" in out and "using it as it is" not in out
    assert started == [(kind, local.engines_home() / kind)]


@pytest.mark.parametrize("kind", KINDS)
def test_engine_up_uses_a_system_engine_that_answers(kind, system, capsys):
    sockets, started = system
    handler = type("Handler", (_PingHandler,), {"ping_path": local.PING_PATHS[kind]})
    server = _UnixHTTPServer(sockets[kind], handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert main(["engine", "up", "--kind", kind, "--json"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    report = json.loads(capsys.readouterr().out)
    assert report["url"] == f"unix://{sockets[kind]}" and "using it as it is" in report["note"]
    assert started == []
