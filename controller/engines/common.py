"""Plumbing the two drivers share: reading library errors, log frames, image refs.

Nothing here knows podman-py or docker-py; both drivers use it to speak the same
words (EngineUnreachable "does not answer" / "timed out", "still running after").
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import weakref

import requests
import urllib3.exceptions

from . import remote

API_TIMEOUT = 60.0          # seconds for one ordinary API call
STOP_MARGIN = 30.0          # HTTP time a stop may take beyond its grace period
CONNECT_TIMEOUT = 10.0      # seconds to reach the engine's socket or port
# An exec with a timeout runs under coreutils `timeout`: SIGTERM at the deadline, SIGKILL
# this much later; exit 124 then means "timed out" (GNU timeout's own code).
EXEC_KILL_AFTER = 2


def _chain(err: BaseException):
    """err, its causes/contexts, and exceptions wrapped in args (requests wraps urllib3's)."""
    seen, todo = set(), [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)


def is_timeout(err: BaseException) -> bool:
    """Did the HTTP call run out of time (rather than find nobody listening)?"""
    # urllib3's NewConnectionError (refused) subclasses its ConnectTimeoutError: not a timeout
    return any(isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError,
                              socket.timeout, TimeoutError))
               and not isinstance(e, urllib3.exceptions.NewConnectionError) for e in _chain(err))


def is_transport_error(err: BaseException) -> bool:
    """A failure to talk to the engine at all: socket missing, refused, reset, timed out, ssh."""
    return any(isinstance(e, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                              OSError)) for e in _chain(err))


def transport_reason(err: BaseException) -> str:
    """A few words on why the engine could not be reached ("connection refused")."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    for e in _chain(err):
        if isinstance(e, OSError) and not isinstance(e, requests.exceptions.RequestException) and str(e):
            return one_line(str(e), 160)
    return type(err).__name__


def one_line(text, limit: int = 400) -> str:
    return " ".join(str(text).split())[:limit]


DEFAULT_GRACE = 10.0       # seconds, when a container records no stop timeout


def recorded_grace(config: dict) -> float:
    """The stop grace a container was created with, from its inspected Config: absent or
    null means the engine's default, and 0 means 0 (kill at once), never the default."""
    value = (config or {}).get("StopTimeout")
    return DEFAULT_GRACE if value is None else float(value)


def grace_seconds(grace: float) -> int:
    """The engines take whole seconds; never give a process less time than asked."""
    return max(0, math.ceil(grace - 1e-9))


def signal_number(name: str | int) -> int | None:
    """SIGTERM, TERM, 15 -> 15; None when it names no signal."""
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        return None


def demux(data: bytes) -> bytes:
    """stdout and stderr of a multiplexed stream (8-byte frame headers), in arrival order."""
    out, i = bytearray(), 0
    while i + 8 <= len(data):
        if data[i] not in (0, 1, 2) or data[i + 1:i + 4] != b"\0\0\0":
            return bytes(out) + data[i:]          # not multiplexed (a tty): raw text
        size = int.from_bytes(data[i + 4:i + 8], "big")
        out += data[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(out) + data[i:]


def split_ref(ref: str) -> tuple[str, str]:
    """("registry/repo", "tag") of an image reference (tag "latest" when absent)."""
    name = ref.rsplit("/", 1)[-1]
    if "@" in name:
        return ref, ""
    if ":" in name:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


def exec_argv(command, timeout: float | None) -> list[str]:
    argv = list(command)
    if timeout is None:
        return argv
    return ["timeout", "-k", str(EXEC_KILL_AFTER), str(max(1, math.ceil(timeout)))] + argv


def wrapper_missing(code: int, output: str) -> bool:
    """The image has no coreutils `timeout` (exec reports 126/127 naming it)."""
    return code in (126, 127) and '"timeout"' in output and "not found" in output


def normal_state(state: str) -> str:
    """One vocabulary for both engines: podman says configured/stopped where docker says
    created/exited."""
    state = str(state or "").lower()
    return {"configured": "created", "stopped": "exited"}.get(state, state)


def has_labels(actual, wanted) -> bool:
    """`actual` carries every label in `wanted` ("" value: any value), compared exactly."""
    actual = actual or {}
    return all(k in actual and (v == "" or actual[k] == v) for k, v in wanted.items())


def named_volumes(mounts) -> tuple[str, ...]:
    """The named volumes in an inspect answer's `Mounts` (docker's and libpod's format)."""
    return tuple(sorted({m["Name"] for m in mounts or () if m.get("Type") == "volume" and m.get("Name")}))


def started(value) -> str | None:
    """An engine's StartedAt, or None for a container that never started."""
    if not value or str(value).startswith("0001-01-01"):
        return None
    return str(value)


class SSHTunnel:
    """One `ssh -N -L` forward of a remote engine socket to a local one, shared by every
    call of one engine object and restarted when it dies.

    Why not the libraries' own ssh support: podman-py starts one ssh process per HTTP
    connection and waits up to 300 s for a socket that a failed ssh (unknown host,
    refused key) never creates; docker-py needs paramiko even for its shell-out mode.
    Here ssh runs in batch mode (never prompts) with a connect timeout, checks the host
    key strictly (engines/remote.py: never accept-new), and its own error ends up in the
    EngineUnreachable message.
    """

    def __init__(self, url: str, default_socket: str, local_dir: str | None = None, access=None):
        u = urllib.parse.urlparse(url)
        if u.scheme != "ssh" or not u.hostname:
            raise ValueError(f"not an ssh:// URL: {url}")
        self.url = url
        self.access = access                            # remote.Access: known_hosts, identity
        self.destination = f"ssh://{u.netloc}"          # user@host[:port]
        self.remote_socket = u.path if u.path not in ("", "/") else default_socket
        self._dir = local_dir or tempfile.mkdtemp(prefix="tidegate-ssh-")
        self.local_socket = f"{self._dir}/engine.sock"
        self._procs: list[subprocess.Popen] = []       # the running ssh (one at most)
        self._lock = threading.Lock()
        # an engine dropped without close() must not leave its ssh running
        self._finalizer = weakref.finalize(self, _end_tunnel, self._procs, self._dir)

    @property
    def _proc(self) -> subprocess.Popen | None:
        return self._procs[0] if self._procs else None

    def local_url(self) -> str:
        """unix:// URL of the forwarded socket, (re)starting ssh when needed. Raises
        ConnectionError with ssh's own words when the tunnel cannot be opened."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None and os.path.exists(self.local_socket):
                return f"unix://{self.local_socket}"
            self._stop()
            try:
                os.unlink(self.local_socket)
            except FileNotFoundError:
                pass
            try:
                checks = remote.ssh_options(self.access)
            except remote.AccessRefused as err:
                raise ConnectionError(str(err)) from None
            argv = ["ssh", "-N", *checks, "-o", f"ConnectTimeout={int(CONNECT_TIMEOUT)}",
                    "-o", "ExitOnForwardFailure=yes",
                    "-o", "ServerAliveInterval=15", "-o", "StreamLocalBindUnlink=yes",
                    "-L", f"{self.local_socket}:{self.remote_socket}", self.destination]
            log = f"{self._dir}/ssh.log"        # a file, not a pipe: a long-lived ssh never blocks on it
            try:
                with open(log, "wb") as err_file:
                    self._procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                        stderr=err_file, start_new_session=True))
            except OSError as err:
                raise ConnectionError(f"cannot run ssh: {err.strerror}") from None
            deadline = time.monotonic() + CONNECT_TIMEOUT + 5
            while not os.path.exists(self.local_socket):
                if self._proc.poll() is not None:
                    self._stop()
                    with open(log, "rb") as f:
                        text = f.read().decode(errors="replace")
                    raise ConnectionError(remote.ssh_failure(text, self.destination, self.access))
                if time.monotonic() > deadline:
                    self._stop()
                    raise ConnectionError(f"ssh tunnel to {self.destination} not up after "
                                          f"{CONNECT_TIMEOUT + 5:g}s")
                time.sleep(0.05)
            return f"unix://{self.local_socket}"

    def _stop(self) -> None:
        _end_tunnel(self._procs, None)

    def close(self) -> None:
        with self._lock:
            self._finalizer()


def _end_tunnel(procs: list, directory: str | None) -> None:
    """Stop the tunnel's ssh (ours, by its Popen) and remove its socket directory."""
    while procs:
        proc = procs.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:        # still alive: kill it
                proc.kill()
                proc.wait()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """A process of this machine with that pid exists (a zombie counts as dead): for the
    records of the engines `tidegate engine up` started, and for the lease's holders."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
