"""Docker driver: docker-py over the Docker Engine API.

Quirks handled here:
- docker-py wraps a read timeout on a unix socket in requests' ConnectionError: the
  cause chain tells a slow engine (or a wait that ran out of time) from an absent one.
- The API version is negotiated ("auto") on the first call, inside an operation, so an
  unreachable engine is reported by that operation: a pinned old version is refused by
  newer engines (Docker 29 requires 1.44), a pinned new one by Debian's 20.10 (1.41).
- A container joins its network with aliases at create time through the low-level
  API's networking_config (the high-level create takes no aliases).
- docker-py's ssh:// support needs paramiko even to shell out to ssh: tidegate forwards
  the remote socket with its own ssh tunnel instead (engines/common.py).
- tcp:// is spoken only over TLS with a client certificate (docker-py's TLSConfig,
  verify=True against the host's CA); plain tcp only for a host marked insecure
  (engines/remote.py decides). The session ignores the environment: requests would
  let $REQUESTS_CA_BUNDLE override the host's CA (psf/requests #3829).
- `docker stop -t` is the grace; docker-py stretches the HTTP timeout by it.
- `exec_run` has no timeout: coreutils `timeout` in the container bounds the command.
- list(sparse=False) inspects every container; ignore_removed skips one removed meanwhile.
- Force flags are never used on networks, volumes or images (explicit errors instead).
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

import docker
import docker.constants
import docker.errors
import docker.tls
import docker.types

from . import common, files, remote
from .base import ContainerInfo, ContainerSpec, Engine, EngineError, EngineUnreachable, ExecResult, ImageInfo


def _label_filters(labels) -> list[str]:
    return [f"{k}={v}" if v else k for k, v in labels.items()]


class DockerEngine(Engine):
    kind = "docker"

    def __init__(self, host: str, url: str, access=None):
        super().__init__(host, url, access)
        self._client: docker.DockerClient | None = None
        self._tunnel: common.SSHTunnel | None = None
        self._lock = threading.Lock()
        self._network_lock = threading.Lock()
        self._addresses = threading.Lock()          # start and rejoin: see rejoin

    # -- plumbing -----------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        """One API client per engine, created on the first call (inside its operation)."""
        with self._lock:
            if self._client is None:
                url, tls = self.url, None
                try:
                    how = remote.transport(self.kind, url, self.access)
                except remote.AccessRefused as err:
                    raise self.error("connect", str(err)) from None
                if how == "ssh":
                    self._tunnel = self._tunnel or common.SSHTunnel(url, "/var/run/docker.sock", access=self.access)
                    url = self._tunnel.local_url()
                elif how == "tls":
                    ca, cert, key = self.access.tls
                    tls = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
                if tls is None:
                    client = docker.DockerClient(base_url=url, version="auto", timeout=int(common.API_TIMEOUT))
                else:
                    # requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE replace the session's CA
                    # (psf/requests #3829): the host's CA would never be used. The session ignores
                    # the environment (no proxies either), and only then negotiates the version
                    # ("auto" would ask the engine inside the constructor, before that).
                    client = docker.DockerClient(base_url=url, version=docker.constants.MINIMUM_DOCKER_API_VERSION,
                                                 timeout=int(common.API_TIMEOUT), tls=tls)
                    client.api.trust_env = False
                    client.api._version = client.api._retrieve_server_version()
                self._client = client
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._tunnel is not None:
                self._tunnel.close()
                self._tunnel = None

    def _call(self, operation: str, fn, *, missing=None, missing_ok: bool = False):
        """Run fn(); turn every library or HTTP failure into an EngineError naming the host
        and the operation (EngineUnreachable when the engine did not answer)."""
        try:
            return fn()
        except EngineError:
            raise
        except docker.errors.NotFound as err:
            if missing_ok:
                return missing
            raise self.error(operation, _message(err)) from None
        except docker.errors.APIError as err:
            text = _message(err)
            raise self.error(operation, text, temporary=_looks_temporary(text)) from None
        except docker.errors.DockerException as err:
            # "Error while fetching server API version: ..." (version negotiation) and
            # friends: transport failures dressed as DockerException
            if common.is_transport_error(err) or "connection" in str(err).lower():
                raise self._unreachable(operation, err) from None
            raise self.error(operation, _message(err)) from None
        except ValueError as err:                   # docker-py's argument checks, garbled JSON
            raise self.error(operation, common.one_line(err)) from None
        except Exception as err:                    # requests/urllib3/socket/ssh
            if common.is_transport_error(err):
                raise self._unreachable(operation, err) from None
            raise

    def _unreachable(self, operation: str, err: BaseException) -> EngineUnreachable:
        if self._tunnel is not None:
            with self._lock:                        # next call re-checks (restarts) the tunnel
                self._client = None
        if common.is_timeout(err):
            return EngineUnreachable(self.host, self.kind, operation, f"engine at {self.url} timed out")
        return EngineUnreachable(self.host, self.kind, operation,
                                 f"engine at {self.url} does not answer ({common.transport_reason(err)})")

    # -- engine -------------------------------------------------------------------
    def ping(self) -> str:
        return self._call("ping", lambda: self.api.version().get("Version", "?"))

    # -- containers -----------------------------------------------------------------
    def list_containers(self, labels, *, all=True):
        items = self._call("list containers", lambda: self.client.containers.list(
            all=all, filters={"label": _label_filters(labels)} if labels else None,
            sparse=False, ignore_removed=True))
        return [_info(c.attrs) for c in items]

    def inspect(self, name_or_id):
        a = self._call(f"inspect {name_or_id}", lambda: self.api.inspect_container(name_or_id), missing_ok=True)
        return None if a is None else _info(a)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        if common.signal_number(spec.stop_signal) is None:
            raise self.error(f"create {spec.name}", f"unknown stop signal {spec.stop_signal!r}")
        if spec.network:
            self.ensure_network(spec.network)
        for v in spec.volumes:
            self.ensure_volume(v.name, v.labels)

        def go():
            api = self.api
            mounts = [docker.types.Mount(v.target, v.name, type="volume", read_only=v.read_only)
                      for v in spec.volumes]
            mounts += [docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only)
                       for m in spec.mounts]
            bindings: dict[str, list] = {}
            for p in spec.ports:
                # (ip, port) | (ip,) | port | None (any free port on every address)
                bindings.setdefault(f"{p.container}/{p.protocol}", []).append(
                    (p.host_ip, p.host) if p.host_ip and p.host else (p.host_ip,) if p.host_ip else p.host)
            restart = {"Name": spec.restart_policy} if spec.restart_policy and spec.restart_policy != "no" else None
            host_config = api.create_host_config(
                mounts=mounts, port_bindings=bindings or None, restart_policy=restart,
                ulimits=[docker.types.Ulimit(name=n, soft=s, hard=h) for n, (s, h) in spec.ulimits.items()] or None,
                network_mode=spec.network or None,
                extra_hosts=[f"{name}:{address}" for name, address in spec.extra_hosts] or None)
            networking = None
            if spec.network:
                networking = api.create_networking_config(
                    {spec.network: api.create_endpoint_config(aliases=list(spec.aliases) or None)})
            return api.create_container(
                image=spec.image, command=list(spec.command) if spec.command is not None else None,
                name=spec.name, environment=dict(spec.environment), labels=dict(spec.labels),
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                user=spec.user or None, working_dir=spec.workdir or None,
                ports=[(p.container, p.protocol) for p in spec.ports] or None,
                stop_signal=spec.stop_signal, stop_timeout=common.grace_seconds(spec.stop_grace),
                host_config=host_config, networking_config=networking)
        created = self._call(f"create {spec.name}", go)
        if spec.files:
            self._put_files(created["Id"], spec)
        info = self.inspect(created["Id"])
        if info is None:
            raise self.error(f"create {spec.name}", "created, then gone before it could be inspected")
        return info

    def _put_files(self, cid: str, spec: ContainerSpec) -> None:
        """Config and secret files into the created container, before it starts, with
        the owners the archive names (engines/files.py); a container that did not get
        them is removed (a later create makes it again)."""
        def read(path):
            try:
                chunks, _ = self.api.get_archive(cid, path)
            except docker.errors.NotFound:
                return None
            return files.first_member(b"".join(chunks))
        op = f"create {spec.name}"
        try:
            data = self._call(op, lambda: files.archive(spec.files, read, spec.user))
            self._call(op, lambda: self.api.put_archive(cid, "/", data))
        except files.OwnerError as err:
            self.remove(cid)
            raise self.error(op, f"file owner: {err}") from None
        except EngineError:
            self.remove(cid)
            raise

    def start(self, name_or_id):
        # 304 (already running) is not an error for docker-py
        with self._addresses:
            self._call(f"start {name_or_id}", lambda: self.api.start(name_or_id))

    def stop(self, name_or_id, grace=None):
        op = f"stop {name_or_id}"
        if grace is None:
            a = self._call(op, lambda: self.api.inspect_container(name_or_id), missing_ok=True)
            if a is None:
                return
            grace = common.recorded_grace(a.get("Config"))
        # docker-py adds the grace to the HTTP timeout itself
        self._call(op, lambda: self.api.stop(name_or_id, timeout=common.grace_seconds(grace)), missing_ok=True)

    def remove(self, name_or_id):
        # force: a running container is killed at once; v=False: volumes are never touched
        self._call(f"remove {name_or_id}", lambda: self.api.remove_container(name_or_id, force=True, v=False),
                   missing_ok=True)

    def logs(self, name_or_id, tail=50):
        data = self._call(f"logs {name_or_id}", lambda: self.api.logs(
            name_or_id, stdout=True, stderr=True, tail="all" if tail is None else tail), missing_ok=True)
        return "" if data is None else data.decode(errors="replace")

    def exec(self, name_or_id, command: Sequence[str], *, environment=None, timeout=None):
        op = f"exec in {name_or_id}"
        result = self._call(op, lambda: self._exec(name_or_id, common.exec_argv(command, timeout), environment,
                                                   timeout))
        if timeout is not None and common.wrapper_missing(result.exit_code, result.output):
            # no coreutils `timeout` in this image: run bare, bounded by the HTTP timeout only
            result = self._call(op, lambda: self._exec(name_or_id, list(command), environment, timeout))
        return result

    def _exec(self, name_or_id, argv, environment, timeout) -> ExecResult:
        api = self.api
        exec_id = api.exec_create(name_or_id, argv, environment=dict(environment or {}))["Id"]
        t0 = time.monotonic()
        out = self._exec_start(exec_id)                 # stdout and stderr, interleaved
        code = api.exec_inspect(exec_id).get("ExitCode")
        code = int(code) if code is not None else -1
        text = (out or b"").decode(errors="replace")
        if timeout is not None and code in (124, 137) and time.monotonic() - t0 >= timeout:
            text = f"{text.rstrip()}\n(timed out after {timeout:g}s)".lstrip()
        return ExecResult(code, text)

    def _exec_start(self, exec_id: str) -> bytes:
        """Start an exec and read its output (multiplexed frames: 8-byte header, payload).

        Not docker-py's exec_start: the daemon answers `101 UPGRADED` and writes the
        frames on the same connection; http.client parses the headers through a buffered
        reader, and docker-py then reads the raw socket beneath it, so frames that came in
        one recv() with the headers are lost (docker-py #2042, #3332: `echo` returns b''
        with exit code 0; here the 18-exec thread test failed about one run in ten). We read
        through that buffered reader instead."""
        api = self.api
        res = api._post_json(api._url("/exec/{0}/start", exec_id), data={"Tty": False, "Detach": False},
                             headers={"Connection": "Upgrade", "Upgrade": "tcp"}, stream=True)
        try:
            api._raise_for_status(res)
            reader = res.raw._fp.fp
            out = bytearray()
            while True:
                header = _read_exact(reader, 8)
                if len(header) < 8:
                    return bytes(out)
                out += _read_exact(reader, int.from_bytes(header[4:8], "big"))
        finally:
            res.close()

    def wait(self, name_or_id, timeout=None):
        op = f"wait {name_or_id}"
        try:
            result = self._call(op, lambda: self.api.wait(name_or_id, timeout=timeout))
        except EngineUnreachable as err:
            if timeout is not None and "timed out" in err.message:
                raise self.error(op, f"still running after {timeout:g}s") from None
            raise
        return int(result.get("StatusCode", -1))

    # -- networks -----------------------------------------------------------------
    def _network(self, name):
        nets = self._call(f"inspect network {name}", lambda: self.client.networks.list(names=[name]))
        return next((n for n in nets if n.name == name), None)      # the name filter matches substrings

    def ensure_network(self, name, labels=None):
        # Docker keys networks by id: two concurrent creates of one name make two networks
        # (CheckDuplicate is ignored by recent engines) and every later use of the name is
        # "ambiguous". One create at a time per engine object, and a duplicate made by
        # another process is removed again (the oldest network wins; it is empty so far).
        with self._network_lock:
            if self._network(name) is not None:
                return
            try:
                self._create_network(name, labels)
            except EngineError as err:
                if "already exists" not in err.message:
                    raise
            same = [n for n in self._call("list networks", lambda: self.client.networks.list(names=[name]))
                    if n.name == name]
            for extra in sorted(same, key=lambda n: n.attrs.get("Created", ""))[1:]:
                self._call(f"remove duplicate network {name}", extra.remove, missing_ok=True)

    def _create_network(self, name, labels) -> None:
        """A user-defined bridge network (docker's embedded DNS resolves names and aliases)
        whose subnet is its own: docker lets a container ask for its address only on a
        network whose subnet the user configured, and `rejoin` asks for the address it had.
        Docker picks a free subnet for a first network, which is made again at once with that
        subnet as its own (it is empty). If another network took the subnet meanwhile, it
        stays a network with docker's subnet."""
        create = lambda **kw: self._call(f"create network {name}", lambda: self.client.networks.create(  # noqa: E731
            name, driver="bridge", labels=dict(labels or {}), check_duplicate=True, **kw))
        first = create()
        first.reload()
        pools = (first.attrs.get("IPAM") or {}).get("Config") or []
        if not pools or not pools[0].get("Subnet"):
            return
        self._call(f"remove network {name}", first.remove, missing_ok=True)
        pool = docker.types.IPAMPool(subnet=pools[0]["Subnet"], gateway=pools[0].get("Gateway"))
        try:
            create(ipam=docker.types.IPAMConfig(pool_configs=[pool]))
        except EngineError as err:
            if "already exists" in err.message:
                raise
            create()

    def remove_network(self, name):
        net = self._network(name)
        if net is not None:
            self._call(f"remove network {name}", net.remove, missing_ok=True)

    def list_networks(self, labels):
        nets = self._call("list networks", lambda: self.client.networks.list(
            filters={"label": _label_filters(labels)} if labels else None))
        return [n.name for n in nets]

    def rejoin(self, name_or_id, network, aliases):
        # Docker takes a requested address only on a network whose subnet the user configured
        # ("user specified IP address is supported only when connecting to networks with user
        # configured subnets"): tidegate's networks are (_create_network), and the address is
        # asked for. Left to itself, docker hands out the lowest free address (and derives the
        # MAC from it, 20.10): a job container that ended meanwhile freed a lower one, and a
        # successor came back as .7, not .9 (a gate's base deploy). No start of this engine
        # object (where a container gets its address) runs between the two calls: measured
        # without that, two services of one wave on one host, one successor came back with
        # the other's new address. A network made by an older tidegate keeps the old way.
        a = self._call(f"inspect {name_or_id}", lambda: self.api.inspect_container(name_or_id))
        was = (((a.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}).get("IPAddress")
        with self._addresses:
            self.disconnect(name_or_id, network)
            if not was:
                return self.connect(name_or_id, network, aliases)
            try:
                self._call(f"connect {name_or_id} to {network} as {was}",
                           lambda: self.api.connect_container_to_network(name_or_id, network, aliases=list(aliases),
                                                                         ipv4_address=was))
            except EngineError as err:
                if "user configured subnets" not in err.message:
                    raise
                self.connect(name_or_id, network, aliases)      # a network made by an older tidegate

    def connect(self, name_or_id, network, aliases=()):
        self._call(f"connect {name_or_id} to {network}",
                   lambda: self.api.connect_container_to_network(name_or_id, network, aliases=list(aliases) or None))

    def disconnect(self, name_or_id, network):
        info = self.inspect(name_or_id)
        if info is None or network not in info.networks:
            return                                  # already drained
        self._call(f"disconnect {name_or_id} from {network}",
                   lambda: self.api.disconnect_container_from_network(name_or_id, network, force=True),
                   missing_ok=True)

    # -- volumes ------------------------------------------------------------------
    def ensure_volume(self, name, labels=None):
        existing = self._call(f"inspect volume {name}", lambda: self.api.inspect_volume(name), missing_ok=True)
        if existing is None:
            self._call(f"create volume {name}", lambda: self.api.create_volume(name, labels=dict(labels or {})))

    def list_volumes(self, labels):
        vols = self._call("list volumes", lambda: self.api.volumes(
            filters={"label": _label_filters(labels)} if labels else None))
        return [v["Name"] for v in (vols or {}).get("Volumes") or []]

    def volume_labels(self, name):
        a = self._call(f"inspect volume {name}", lambda: self.api.inspect_volume(name), missing_ok=True)
        return None if a is None else dict(a.get("Labels") or {})

    def remove_volume(self, name):
        self._call(f"remove volume {name}", lambda: self.api.remove_volume(name), missing_ok=True)

    # -- images ----------------------------------------------------------------------
    def image(self, ref):
        a = self._call(f"inspect image {ref}", lambda: self.api.inspect_image(ref), missing_ok=True)
        if a is None:
            return None
        return ImageInfo(ref, a.get("Id", ""), (a.get("Config") or {}).get("Labels") or {})

    def import_rootfs(self, tar_path, ref):
        op = f"import {ref}"
        repo, tag = common.split_ref(ref)
        try:
            f = open(tar_path, "rb")
        except OSError as err:
            raise self.error(op, f"cannot read {tar_path}: {err.strerror}") from None
        with f:
            out = self._call(op, lambda: self.api.import_image(src=f, repository=repo, tag=tag))
        if isinstance(out, (bytes, str)) and "error" in str(out).lower():
            raise self.error(op, common.one_line(out))
        info = self.image(ref)
        if info is None:
            raise self.error(op, "import reported success but the image is missing")
        return info

    def build(self, context_dir, ref, *, containerfile="Containerfile", labels=None, log=None):
        op = f"build {ref}"

        def go():
            for chunk in self.api.build(path=context_dir, tag=ref, dockerfile=containerfile,
                                        labels=dict(labels or {}), rm=True, forcerm=True, decode=True,
                                        timeout=3600):
                text = chunk.get("stream") or chunk.get("status") or chunk.get("error") or ""
                if log is not None:
                    for line in str(text).splitlines():
                        if line.strip():
                            log(line)
                if chunk.get("error"):
                    raise self.error(op, common.one_line(chunk["error"]))
        self._call(op, go)
        info = self.image(ref)
        if info is None:
            raise self.error(op, "build finished but the image is missing")
        return info

    def tag(self, ref, new_ref):
        repo, tag = common.split_ref(new_ref)
        self._call(f"tag {ref} as {new_ref}", lambda: self.api.tag(ref, repo, tag))

    def pull(self, ref):
        op = f"pull {ref}"
        repo, tag = common.split_ref(ref)

        def go():
            for chunk in self.api.pull(repo, tag=tag or None, stream=True, decode=True):
                if chunk.get("error"):
                    raise self.error(op, common.one_line(chunk["error"]))
        self._call(op, go)
        info = self.image(ref)
        if info is None:
            raise self.error(op, "pull finished but the image is missing")
        return info

    def remove_image(self, ref):
        self._call(f"remove image {ref}", lambda: self.api.remove_image(ref), missing_ok=True)


def _info(a: dict) -> ContainerInfo:
    """ContainerInfo from docker's inspect format."""
    state = a.get("State") or {}
    settings = a.get("NetworkSettings") or {}
    nets = {name: (n.get("IPAddress") or "", tuple(n.get("Aliases") or ()))
            for name, n in (settings.get("Networks") or {}).items()}
    ports = {key: int(binds[0].get("HostPort") or 0)
             for key, binds in (settings.get("Ports") or {}).items() if binds}
    config = a.get("Config") or {}
    return ContainerInfo(id=a["Id"], name=(a.get("Name") or "").lstrip("/"), image=config.get("Image", ""),
                         image_id=a.get("Image", ""), labels=config.get("Labels") or {},
                         state=common.normal_state(state.get("Status")), exit_code=state.get("ExitCode"),
                         started_at=common.started(state.get("StartedAt")),
                         restart_count=int(a.get("RestartCount") or 0), networks=nets, ports=ports,
                         volumes=common.named_volumes(a.get("Mounts")))


def _looks_temporary(text: str) -> bool:
    text = text.lower()
    return "timeout" in text or "timed out" in text or "temporarily" in text


def _message(err) -> str:
    return common.one_line(getattr(err, "explanation", None) or getattr(err, "msg", None) or str(err))


def _read_exact(reader, size: int) -> bytes:
    """`size` bytes from a file-like reader, fewer only at the end of the stream."""
    data = bytearray()
    while len(data) < size:
        chunk = reader.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
