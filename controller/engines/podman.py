"""Podman driver: podman-py over the libpod REST API (podman 4.3 and later).

Where podman-py 5.8 or libpod 4.3 fall short, this driver speaks the REST API through
podman-py's own session (`client.api`), and says why at the spot. In short:
- podman-py turns every transport failure (socket missing, refused, timed out) into a
  bare APIError("GET operation failed"): the cause chain tells unreachable from slow.
- podman-py defaults every call to its client timeout (None means 60 s): waits, stops
  and execs set their own HTTP timeouts.
- podman-py's networks.list crashes on list filters, and its dict filters stringify
  lists: list filters are sent as libpod's JSON here.
- libpod's list format lacks addresses and aliases: containers are listed, then
  inspected (one format, like docker).
- libpod force flags delete dependants: `network rm -f`, `volume rm -f` and `rmi -f`
  remove the containers using them. Never forced here; "in use" is an error.
- `rm -f` on a running container waits its whole stop grace: timeout=0 kills at once.
- libpod 4.3 decodes stop_signal only as a number ("SIGTERM" fails).
- podman-py's stop() reads a JSON body on 304 (already stopped), which is empty.
- podman-py's exec_run(demux=True) splits stdout from stderr (order lost) and its log
  reader drops a last line without a newline: frames are demuxed here, in order. (Order
  across stdout and stderr is conmon's: a burst may come stdout first.)
- libpod 4.3's logs `tail` glues a partial last line onto the line before: the tail is
  cut here.
- podman-py's build() reads the whole build before returning (no live log, and the log
  is lost on failure) and pull() reports a failed pull as success: both stream here.
- Rootfs import has no podman-py call: the libpod `images/import` endpoint is used.
- No healthcheck is ever configured: podman 4.3 without systemd never runs it
  (tidegate runs its own checks, engines/health.py).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Mapping, Sequence
from urllib.parse import quote

import podman
import podman.api
import podman.errors

from . import common, files, remote
from .base import ContainerInfo, ContainerSpec, Engine, EngineError, EngineUnreachable, ExecResult, ImageInfo


class _Lines(tuple):
    """/etc/hosts lines for podman-py, which reads `extra_hosts` with `.items()`: a dict
    cannot hold one name twice, and a service on three hosts has three lines."""
    def items(self):
        return iter(self)


def _filters(labels: Mapping[str, str]) -> str | None:
    """libpod's filter JSON for "carries every label" ("" value: any value)."""
    if not labels:
        return None
    return json.dumps({"label": [f"{k}={v}" if v else k for k, v in labels.items()]})


def _q(name: str) -> str:
    # image refs keep their "/" and ":" (libpod routes match them unescaped)
    return quote(name, safe="/:@")


def bridge_name(url: str, network: str) -> str:
    """The bridge interface of `network` on the engine at `url`.

    podman 4.3 names bridges podman1, podman2, … counting only its own networks (a bridge
    exists on the host only while a container uses it). Several podman instances share the
    host's network namespace — the tests' engines, the demo, a gate — and two of them pick
    the same name: one adds its subnet to the other's bridge, and the first teardown takes
    the bridge away from both. Measured: a replica whose subnet had no route any more; its
    health probe left by the default route and was answered 404 by a host beyond it. A
    name unique per engine and network (15 characters, the kernel's limit) rules that out."""
    return "tg" + hashlib.sha256(f"{url}\0{network}".encode()).hexdigest()[:13]


class PodmanEngine(Engine):
    kind = "podman"

    def __init__(self, host: str, url: str, access=None):
        super().__init__(host, url, access)
        self._client: podman.PodmanClient | None = None
        self._tunnel: common.SSHTunnel | None = None
        self._lock = threading.Lock()
        self._addresses = threading.Lock()          # start and rejoin: see rejoin

    # -- plumbing -----------------------------------------------------------------
    @property
    def client(self) -> podman.PodmanClient:
        """One API client (one HTTP session) per engine, created on first use."""
        with self._lock:
            if self._client is None:
                url = self.url
                try:
                    how = remote.transport(self.kind, url, self.access)
                except remote.AccessRefused as err:
                    raise self.error("connect", str(err)) from None
                if how == "ssh":
                    # our own tunnel: podman-py's ssh transport waits 300 s on a failed ssh
                    self._tunnel = self._tunnel or common.SSHTunnel(url, "/run/podman/podman.sock", access=self.access)
                    url = self._tunnel.local_url()
                self._client = podman.PodmanClient(base_url=url, timeout=common.API_TIMEOUT)
            return self._client

    @property
    def api(self):
        """podman-py's requests session on the libpod API (paths relative to /vX/libpod)."""
        return self.client.api

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._tunnel is not None:
                self._tunnel.close()
                self._tunnel = None

    def _unreachable(self, operation: str, err: BaseException) -> EngineUnreachable:
        if self._tunnel is not None:
            with self._lock:                         # next call re-checks (restarts) the tunnel
                self._client = None
        if common.is_timeout(err):
            return EngineUnreachable(self.host, self.kind, operation, f"engine at {self.url} timed out")
        return EngineUnreachable(self.host, self.kind, operation,
                                 f"engine at {self.url} does not answer ({common.transport_reason(err)})")

    def _call(self, operation: str, fn, *, missing=None, missing_ok: bool = False):
        """Run fn(); turn every library or HTTP failure into an EngineError naming the host
        and the operation (EngineUnreachable when the engine did not answer)."""
        try:
            return fn()
        except EngineError:
            raise
        except (podman.errors.NotFound, podman.errors.ImageNotFound) as err:
            if missing_ok:
                return missing
            raise self.error(operation, _message(err)) from None
        except podman.errors.APIError as err:
            if getattr(err, "response", None) is None and common.is_transport_error(err):
                raise self._unreachable(operation, err) from None
            text = _message(err)
            if missing_ok and "no such" in text.lower():
                return missing
            raise self.error(operation, text, temporary=_looks_temporary(text)) from None
        except podman.errors.PodmanError as err:     # BuildError, ImageNotFound…
            raise self.error(operation, _message(err)) from None
        except json.JSONDecodeError as err:
            raise self.error(operation, f"unreadable answer from the engine ({err})") from None
        except Exception as err:                     # requests/urllib3/socket/ssh
            if common.is_transport_error(err):
                raise self._unreachable(operation, err) from None
            raise

    def _get(self, path: str, **kw):
        r = self.api.get(path, **kw)
        r.raise_for_status()
        return r

    def _post(self, path: str, **kw):
        r = self.api.post(path, **kw)
        r.raise_for_status()
        return r

    # -- engine -------------------------------------------------------------------
    def ping(self) -> str:
        return self._call("ping", lambda: self._get("/version").json().get("Version", "?"))

    # -- containers -----------------------------------------------------------------
    def list_containers(self, labels, *, all=True):
        params = {"all": bool(all)}
        if _filters(labels):
            params["filters"] = _filters(labels)
        rows = self._call("list containers", lambda: self._get("/containers/json", params=params).json())
        found = []
        for row in rows or []:
            # libpod's list lacks addresses and aliases: inspect each (one format, like docker)
            a = self._call("list containers", lambda: self._get(f"/containers/{row['Id']}/json").json(),
                           missing_ok=True)
            if a is not None:                        # removed meanwhile
                found.append(_info(a))
        return found

    def inspect(self, name_or_id):
        a = self._call(f"inspect {name_or_id}", lambda: self._get(f"/containers/{_q(name_or_id)}/json").json(),
                       missing_ok=True)
        return None if a is None else _info(a)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        stop_signal = common.signal_number(spec.stop_signal)
        if stop_signal is None:
            raise self.error(f"create {spec.name}", f"unknown stop signal {spec.stop_signal!r}")
        if spec.network:
            self.ensure_network(spec.network)
        for v in spec.volumes:
            self.ensure_volume(v.name, v.labels)
        ports: dict[str, list] = {}
        for p in spec.ports:
            ports.setdefault(f"{p.container}/{p.protocol}", []).append(
                {k: v for k, v in (("port", p.host), ("ip", p.host_ip)) if v})
        kwargs = dict(
            name=spec.name,
            environment=dict(spec.environment),
            labels=dict(spec.labels),
            stop_signal=stop_signal,                  # libpod 4.3 decodes numbers only
            stop_timeout=common.grace_seconds(spec.stop_grace),
            ulimits=[{"Name": n, "Soft": s, "Hard": h} for n, (s, h) in spec.ulimits.items()],
            volumes={v.name: {"bind": v.target, "mode": "ro" if v.read_only else "rw"} for v in spec.volumes},
            mounts=[{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
                    for m in spec.mounts],
            ports=ports,
        )
        if spec.extra_hosts:
            kwargs["extra_hosts"] = _Lines(spec.extra_hosts)
        if spec.restart_policy and spec.restart_policy != "no":
            kwargs["restart_policy"] = {"Name": spec.restart_policy}
        if spec.network:
            kwargs["networks"] = {spec.network: {"aliases": list(spec.aliases)}}
        if spec.entrypoint is not None:
            kwargs["entrypoint"] = list(spec.entrypoint)
        if spec.user:
            kwargs["user"] = spec.user
        if spec.workdir:
            kwargs["working_dir"] = spec.workdir
        command = list(spec.command) if spec.command is not None else None
        c = self._call(f"create {spec.name}", lambda: self.client.containers.create(spec.image, command, **kwargs))
        if spec.files:
            self._put_files(c, spec)
        info = self.inspect(c.id)
        if info is None:
            raise self.error(f"create {spec.name}", "created, then gone before it could be inspected")
        return info

    def _put_files(self, c, spec: ContainerSpec) -> None:
        """Config and secret files into the created container, before it starts, with the
        owners the archive names (engines/files.py); a container that did not get them is
        removed (a later create makes it again)."""
        def read(path):
            try:
                chunks, _ = c.get_archive(path)
            except podman.errors.NotFound:
                return None
            return files.first_member(b"".join(chunks))
        op = f"create {spec.name}"
        try:
            data = self._call(op, lambda: files.archive(spec.files, read, spec.user))
            # libpod chowns what it unpacks to the container's user unless told not to
            # (podman-py's put_archive cannot say so): the tar's owners are the ones wanted
            self._call(op, lambda: self.api.put(f"/containers/{_q(c.id)}/archive", data=data,
                                                params={"path": "/", "copyUIDGID": "false"}).raise_for_status())
        except files.OwnerError as err:
            self.remove(c.id)
            raise self.error(op, f"file owner: {err}") from None
        except EngineError:
            self.remove(c.id)
            raise

    def start(self, name_or_id):
        # 304 (already running) is fine. A start that lost netavark's chain race to another
        # podman instance on this machine (see _CHAIN_RACE) is tried again here, so that
        # every caller (executor, jobs, gate, tests) is spared it.
        def once():
            with self._addresses:
                return self._call(f"start {name_or_id}", lambda: self._post(f"/containers/{_q(name_or_id)}/start"))
        return _through_instance_race(once)

    def stop(self, name_or_id, grace=None):
        op = f"stop {name_or_id}"
        if grace is None:
            a = self._call(op, lambda: self._get(f"/containers/{_q(name_or_id)}/json").json(), missing_ok=True)
            if a is None:
                return
            grace = common.recorded_grace(a.get("Config"))
        seconds = common.grace_seconds(grace)
        # Raw call: podman-py's stop() reads a JSON body from a 304 (already stopped), and
        # the HTTP call must outlive the grace it asks the engine to wait.
        self._call(op, lambda: self._post(f"/containers/{_q(name_or_id)}/stop", params={"timeout": seconds},
                                          timeout=(common.CONNECT_TIMEOUT, seconds + common.STOP_MARGIN)),
                   missing_ok=True)

    def remove(self, name_or_id):
        # force + timeout=0: a running container is killed at once (`rm -f` alone waits its
        # whole stop grace); v=false: named volumes are never touched.
        self._call(f"remove {name_or_id}",
                   lambda: self._delete(f"/containers/{_q(name_or_id)}",
                                        params={"force": True, "v": False, "timeout": 0}),
                   missing_ok=True)

    def _delete(self, path: str, **kw):
        r = self.api.delete(path, **kw)
        r.raise_for_status()
        return r

    def logs(self, name_or_id, tail=50):
        # libpod 4.3's `tail` glues a partial last line ("printf done") onto the line before
        # it: read the whole log and keep the tail here.
        data = self._call(f"logs {name_or_id}", lambda: self._get(
            f"/containers/{_q(name_or_id)}/logs", params={"stdout": True, "stderr": True}).content,
            missing_ok=True)
        if data is None:
            return ""
        text = common.demux(data).decode(errors="replace")
        if tail is None:
            return text
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""

    def exec(self, name_or_id, command: Sequence[str], *, environment=None, timeout=None):
        op = f"exec in {name_or_id}"
        result = self._call(op, lambda: self._exec(name_or_id, common.exec_argv(command, timeout), environment,
                                                   timeout))
        if timeout is not None and common.wrapper_missing(result.exit_code, result.output):
            # no coreutils `timeout` in this image: run bare, bounded by the HTTP timeout only
            result = self._call(op, lambda: self._exec(name_or_id, list(command), environment, timeout))
        return result

    def _exec(self, name_or_id, argv, environment, timeout) -> ExecResult:
        body = {"AttachStdout": True, "AttachStderr": True, "Cmd": argv,
                "Env": [f"{k}={v}" for k, v in (environment or {}).items()]}
        exec_id = self._post(f"/containers/{_q(name_or_id)}/exec", data=json.dumps(body)).json()["Id"]
        read = None if timeout is None else timeout + common.EXEC_KILL_AFTER + common.STOP_MARGIN
        t0 = time.monotonic()
        out = self._post(f"/exec/{exec_id}/start", data=json.dumps({"Detach": False, "Tty": False}),
                         timeout=(common.CONNECT_TIMEOUT, read or common.API_TIMEOUT)).content
        code = self._get(f"/exec/{exec_id}/json").json().get("ExitCode")
        return _exec_result(code, common.demux(out).decode(errors="replace"), timeout, time.monotonic() - t0)

    def wait(self, name_or_id, timeout=None):
        op = f"wait {name_or_id}"

        def go():
            # podman-py's wait() falls back to the 60 s client timeout when given None
            r = self._post(f"/containers/{_q(name_or_id)}/wait", params={"condition": ["stopped", "exited"]},
                           timeout=(common.CONNECT_TIMEOUT, timeout))
            return int(r.json())
        try:
            return self._call(op, go)
        except EngineUnreachable as err:
            if timeout is not None and "timed out" in err.message:
                raise self.error(op, f"still running after {timeout:g}s") from None
            raise

    # -- networks -----------------------------------------------------------------------
    def ensure_network(self, name, labels=None):
        """A bridge network with DNS, its bridge named by `bridge_name`."""
        if self._call(f"inspect network {name}", lambda: self.client.networks.exists(name)):
            return
        body = {"name": name, "driver": "bridge", "dns_enabled": True, "labels": dict(labels or {}),
                "network_interface": bridge_name(self.url, name)}
        try:
            _through_instance_race(lambda: self._call(f"create network {name}",
                                                   lambda: self._post("/networks/create", data=json.dumps(body))))
        except EngineError as err:
            if "already exists" not in err.message and "already used" not in err.message:
                raise                                # (else: another thread won the race)

    def remove_network(self, name):
        # never force: libpod's force removes the containers attached to the network
        self._call(f"remove network {name}", lambda: self._delete(f"/networks/{_q(name)}"), missing_ok=True)

    def list_networks(self, labels):
        params = {"filters": _filters(labels)} if labels else {}
        nets = self._call("list networks", lambda: self._get("/networks/json", params=params).json())
        return [n["name"] for n in nets or [] if common.has_labels(n.get("labels"), labels)]   # see list_volumes

    def connect(self, name_or_id, network, aliases=(), *, address=None, mac=None):
        body = {"container": name_or_id, "aliases": list(aliases)}
        if address:
            body["static_ips"] = [address]
        if mac:
            body["static_mac"] = mac
        self._call(f"connect {name_or_id} to {network}",
                   lambda: self._post(f"/networks/{_q(network)}/connect", data=json.dumps(body)))

    def rejoin(self, name_or_id, network, aliases):
        # Same address and MAC: netavark gives a new veth a random MAC, and a host that
        # probed the container before kept the old one in its ARP cache (measured: health
        # probes from the controller timed out for 10 s and more after a rejoin). No start
        # of this engine object (where a container gets its address) runs in between.
        a = self._call(f"inspect {name_or_id}", lambda: self._get(f"/containers/{_q(name_or_id)}/json").json())
        was = ((a.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
        def once():                                # the last container on a network tears its chain
            with self._addresses:                  # down, racing other podman instances (_CHAIN_RACE)
                # asked of the engine whatever inspect says: make test once saw connect answer
                # "already connected" on all three tries; disconnect() skips the call when
                # inspect does not list the network, so a stale inspect would repeat that
                self._disconnect(name_or_id, network)
                return self.connect(name_or_id, network, aliases, address=was.get("IPAddress") or None,
                                    mac=was.get("MacAddress") or None)

        def joined(err: EngineError) -> bool:
            # an earlier attempt's connect went through although it reported the race
            if "already connected" not in str(err):
                return False
            info = self.inspect(name_or_id)
            return info is not None and set(aliases) <= set(info.networks.get(network, ("", ()))[1])
        return _through_instance_race(once, done=joined, retry_also=lambda err: "already connected" in str(err))

    def disconnect(self, name_or_id, network):
        info = self.inspect(name_or_id)
        if info is None or network not in info.networks:
            return                                   # already drained
        self._disconnect(name_or_id, network)

    def _disconnect(self, name_or_id, network):
        body = {"container": name_or_id, "force": True}
        try:
            self._call(f"disconnect {name_or_id} from {network}",
                       lambda: self._post(f"/networks/{_q(network)}/disconnect", data=json.dumps(body)),
                       missing_ok=True)
        except EngineError as err:
            if "not connected" not in err.message:
                raise

    # -- volumes ---------------------------------------------------------------------------
    def ensure_volume(self, name, labels=None):
        if self._call(f"inspect volume {name}", lambda: self.client.volumes.exists(name)):
            return
        try:
            self._call(f"create volume {name}", lambda: self.client.volumes.create(name, labels=dict(labels or {})))
        except EngineError as err:
            if "already exists" not in err.message:
                raise

    def list_volumes(self, labels):
        params = {"filters": _filters(labels)} if labels else {}
        vols = self._call("list volumes", lambda: self._get("/volumes/json", params=params).json())
        # libpod 4.3's label filter is not exact (tidegate.cloud=demo matched demo-eu's volumes)
        # libpod 4.3 matches ANY of several label filters (it listed demo-eu's volumes for
        # tidegate.cloud=demo + tidegate.volume): what it returns is filtered exactly here
        return [v["Name"] for v in vols or [] if common.has_labels(v.get("Labels"), labels)]

    def volume_labels(self, name):
        a = self._call(f"inspect volume {name}", lambda: self._get(f"/volumes/{_q(name)}/json").json(),
                       missing_ok=True)
        return None if a is None else dict(a.get("Labels") or {})

    def remove_volume(self, name):
        # never force: libpod's force removes the containers using the volume
        self._call(f"remove volume {name}", lambda: self._delete(f"/volumes/{_q(name)}"), missing_ok=True)

    # -- images ------------------------------------------------------------------------------
    def image(self, ref):
        a = self._call(f"inspect image {ref}", lambda: self._get(f"/images/{_q(ref)}/json").json(),
                       missing_ok=True)
        if a is None:
            return None
        return ImageInfo(ref, a.get("Id", ""), a.get("Labels") or (a.get("Config") or {}).get("Labels") or {})

    def import_rootfs(self, tar_path, ref):
        op = f"import {ref}"
        try:
            f = open(tar_path, "rb")
        except OSError as err:
            raise self.error(op, f"cannot read {tar_path}: {err.strerror}") from None
        with f:
            self._call(op, lambda: self._post("/images/import", params={"reference": ref}, data=f,
                                              headers={"Content-Type": "application/x-tar"},
                                              timeout=(common.CONNECT_TIMEOUT, 600)))
        info = self.image(ref)
        if info is None:
            raise self.error(op, "import reported success but the image is missing")
        return info

    def build(self, context_dir, ref, *, containerfile="Containerfile", labels=None, log=None):
        op = f"build {ref}"
        params = {"t": ref, "dockerfile": containerfile, "rm": True, "forcerm": True, "layers": True,
                  "labels": json.dumps(dict(labels or {}))}

        def go():
            # podman-py's build() returns only after the build: stream the log ourselves
            tar = podman.api.create_tar(anchor=context_dir, exclude=podman.api.prepare_containerignore(context_dir))
            try:
                r = self._post("/build", params=params, data=tar, headers={"Content-Type": "application/x-tar"},
                               stream=True, timeout=(common.CONNECT_TIMEOUT, 3600))
                errors = _stream(r, log)
            finally:
                tar.close()
            if errors:
                raise self.error(op, errors[-1])
        self._call(op, go)
        info = self.image(ref)
        if info is None:
            raise self.error(op, "build finished but the image is missing")
        return info

    def tag(self, ref, new_ref):
        repo, tag = common.split_ref(new_ref)
        self._call(f"tag {ref} as {new_ref}",
                   lambda: self._post(f"/images/{_q(ref)}/tag", params={"repo": repo, "tag": tag}))

    def pull(self, ref):
        op = f"pull {ref}"

        def go():
            # podman-py's pull() returns an empty Image when the pull failed
            r = self._post("/images/pull", params={"reference": ref, "policy": "always"}, stream=True,
                           timeout=(common.CONNECT_TIMEOUT, 3600))
            errors = _stream(r, None)
            if errors:
                raise self.error(op, errors[-1])
        self._call(op, go)
        info = self.image(ref)
        if info is None:
            raise self.error(op, "pull finished but the image is missing")
        return info

    def remove_image(self, ref):
        # never force: libpod's force removes the containers using the image
        self._call(f"remove image {ref}", lambda: self._delete(f"/images/{_q(ref)}"), missing_ok=True)


# -- reading libpod's answers ---------------------------------------------------------------
def _info(a: dict) -> ContainerInfo:
    """ContainerInfo from libpod's inspect format."""
    state = a.get("State") or {}
    settings = a.get("NetworkSettings") or {}
    nets = {name: (n.get("IPAddress") or "", tuple(n.get("Aliases") or ()))
            for name, n in (settings.get("Networks") or {}).items()}
    ports = {key: int(binds[0].get("HostPort") or 0)
             for key, binds in (settings.get("Ports") or {}).items() if binds}
    config = a.get("Config") or {}
    return ContainerInfo(id=a["Id"], name=a.get("Name", "").lstrip("/"),
                         image=a.get("ImageName") or config.get("Image", ""), image_id=a.get("Image", ""),
                         labels=config.get("Labels") or {}, state=common.normal_state(state.get("Status")),
                         exit_code=state.get("ExitCode"), started_at=common.started(state.get("StartedAt")),
                         restart_count=int(a.get("RestartCount") or 0),
                         networks=nets, ports=ports, volumes=common.named_volumes(a.get("Mounts")))


def _exec_result(code, output: str, timeout, seconds: float) -> ExecResult:
    code = int(code) if code is not None else -1
    if timeout is not None and code in (124, 137) and seconds >= timeout:
        output = f"{output.rstrip()}\n(timed out after {timeout:g}s)".lstrip()
    return ExecResult(code, output)


def _stream(response, log) -> list[str]:
    """Feed a build/pull JSON stream's text to `log` line by line; return its errors."""
    errors = []
    for raw in response.iter_lines():
        if not raw:
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            item = {"stream": raw.decode(errors="replace")}
        if item.get("error"):
            errors.append(common.one_line(item["error"]))
        text = item.get("stream") or item.get("status") or item.get("error") or ""
        if log is not None:
            for line in str(text).splitlines():
                if line.strip():
                    log(line)
    return errors


# netavark names a network's iptables chains after a hash of the network's NAME
# (NETAVARK-<hash>), and the host's iptables are shared by every podman instance on the
# machine. Two instances with a same-named network (two "hosts" of one cloud on one
# machine: the tests, the multihost example) that start containers at the same moment
# both find the chain missing and both create it; the loser fails its start with one of
# these. Measured: 20 of 30 simultaneous starts failed. The reverse also happens: one
# instance's teardown deletes the chain while another appends to it ("No chain/target/
# match by that name"; every instance's default network is named "podman"). A second try
# finds or re-creates the chain and succeeds: `start` retries, and the error is temporary.
_CHAIN_RACE = ("chain_user_add failed (file exists)", "chain already exists", "xtables lock",
               "no chain/target/match by that name", "chain_del failed (device or resource busy)")


def _through_instance_race(once, *, done=lambda err: False, retry_also=lambda err: False):
    """once() again after 0.5 s and 1 s when a race with another instance (_instance_race) failed it
    (or `retry_also` says so); an error after which `done` says the work went through
    anyway counts as success (None)."""
    for delay in (0.5, 1.0, None):
        try:
            return once()
        except EngineError as err:
            if done(err):
                return None
            if delay is None or not (_instance_race(str(err)) or retry_also(err)):
                raise
            time.sleep(delay)


# A network create without a subnet makes podman read the host's addresses and then its
# interfaces (Go's net.InterfaceAddrs) to find a free one. An interface that another
# instance removed in between (a container stopped) leaves an address whose interface
# is unknown, and the create fails with this. CI met it once in a `make test` with four
# podman instances busy. A second try reads both tables again.
_INTERFACE_RACE = "route ip+net: no such network interface"


def _instance_race(text: str) -> bool:
    """netavark's chain race (_CHAIN_RACE) or the interface race (_INTERFACE_RACE): races
    with other engine instances on the same machine, worth a second try."""
    text = text.lower()
    return _INTERFACE_RACE in text or ("netavark" in text and any(m in text for m in _CHAIN_RACE))


def _looks_temporary(text: str) -> bool:
    lowered = text.lower()
    return "timeout" in lowered or "timed out" in lowered or "temporarily" in lowered or _instance_race(text)


def _message(err) -> str:
    return common.one_line(getattr(err, "explanation", None) or str(err))
