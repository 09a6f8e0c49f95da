"""Docker driver (docker-py, Docker Engine API).

Quirks handled here:
- A container can join only one network at create time through docker-py's
  high-level API; aliases are set with `networking_config` instead.
- Rootfs import goes through `images.import_image` (`docker import`).
- `docker stop -t` is the grace period; the API call's own timeout must exceed it.
- `exec_run` has no timeout: coreutils `timeout` in the container bounds it.
"""
from __future__ import annotations

import threading
from typing import Mapping, Sequence

import docker
import docker.errors
import docker.types
import requests

from .base import (ContainerInfo, ContainerSpec, Engine, EngineError, EngineUnreachable, ExecResult,
                   ImageInfo)

API_TIMEOUT = 60


def _label_filters(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" if v else k for k, v in labels.items()]


class DockerEngine(Engine):
    kind = "docker"

    def __init__(self, host: str, url: str):
        super().__init__(host, url)
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.DockerClient(base_url=self.url, timeout=API_TIMEOUT, version="auto")
                except docker.errors.DockerException as err:
                    raise EngineUnreachable(self.host, self.kind, "connect",
                                            f"engine at {self.url} does not answer ({_message(err)})") from None
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _call(self, operation: str, fn, *, missing=None, missing_ok: bool = False):
        try:
            return fn()
        except docker.errors.NotFound as err:
            if missing_ok:
                return missing
            raise self.error(operation, _message(err)) from None
        except docker.errors.APIError as err:
            raise self.error(operation, _message(err)) from None
        except docker.errors.BuildError as err:
            raise self.error(operation, _message(err)) from None
        except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as err:
            raise EngineUnreachable(self.host, self.kind, operation,
                                    f"engine at {self.url} does not answer ({type(err).__name__})") from None
        except requests.exceptions.Timeout:
            raise EngineUnreachable(self.host, self.kind, operation, f"engine at {self.url} timed out") from None
        except requests.exceptions.RequestException as err:
            raise EngineUnreachable(self.host, self.kind, operation, f"engine at {self.url}: {err}") from None
        except docker.errors.DockerException as err:
            text = _message(err)
            if "connection" in text.lower() or "file not found" in text.lower():
                raise EngineUnreachable(self.host, self.kind, operation,
                                        f"engine at {self.url} does not answer ({text})") from None
            raise self.error(operation, text) from None

    def ping(self) -> str:
        def go():
            self.client.ping()
            return self.client.version().get("Version", "?")
        return self._call("ping", go)

    # -- containers -------------------------------------------------------------
    def _info(self, c) -> ContainerInfo:
        a = c.attrs
        state = a.get("State") or {}
        if isinstance(state, str):           # list format (sparse)
            state = {"Status": state}
        nets = {}
        for name, n in ((a.get("NetworkSettings") or {}).get("Networks") or {}).items():
            nets[name] = (n.get("IPAddress", "") or "", tuple(n.get("Aliases") or ()))
        ports = {}
        for key, binds in ((a.get("NetworkSettings") or {}).get("Ports") or {}).items():
            if binds:
                ports[key] = int(binds[0].get("HostPort") or 0)
        config = a.get("Config") or {}
        return ContainerInfo(id=a["Id"], name=(a.get("Name") or "").lstrip("/"), image=config.get("Image", ""),
                             image_id=a.get("Image", ""), labels=config.get("Labels") or {},
                             state=str(state.get("Status", "")).lower(), exit_code=state.get("ExitCode"),
                             started_at=state.get("StartedAt"), networks=nets, ports=ports)

    def list_containers(self, labels, *, all=True):
        items = self._call("list containers", lambda: self.client.containers.list(
            all=all, filters={"label": _label_filters(labels)}, sparse=False))
        return [self._info(c) for c in items]

    def inspect(self, name_or_id):
        c = self._call(f"inspect {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        return None if c is None else self._info(c)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.network:
            self.ensure_network(spec.network)
        for v in spec.volumes:
            self.ensure_volume(v.name)
        api = self.client.api
        mounts = [docker.types.Mount(v.target, v.name, type="volume", read_only=v.read_only) for v in spec.volumes]
        mounts += [docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts]
        port_bindings = {f"{p.container}/{p.protocol}": ((p.host_ip, p.host) if p.host_ip else p.host)
                         for p in spec.ports}
        restart = {"Name": spec.restart_policy} if spec.restart_policy and spec.restart_policy != "no" else None
        host_config = api.create_host_config(
            mounts=mounts, port_bindings=port_bindings or None, restart_policy=restart,
            ulimits=[docker.types.Ulimit(name=n, soft=s, hard=h) for n, (s, h) in spec.ulimits.items()] or None,
            network_mode=spec.network or None)
        networking = None
        if spec.network:
            networking = api.create_networking_config(
                {spec.network: api.create_endpoint_config(aliases=list(spec.aliases) or None)})

        def go():
            return api.create_container(
                image=spec.image, command=list(spec.command) if spec.command is not None else None,
                name=spec.name, environment=dict(spec.environment), labels=dict(spec.labels),
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                user=spec.user or None, working_dir=spec.workdir or None,
                ports=[(p.container, p.protocol) for p in spec.ports] or None,
                stop_signal=spec.stop_signal, stop_timeout=int(round(spec.stop_grace)),
                host_config=host_config, networking_config=networking)
        created = self._call(f"create {spec.name}", go)
        return self.inspect(created["Id"])

    def _get(self, operation, name_or_id):
        return self._call(operation, lambda: self.client.containers.get(name_or_id))

    def start(self, name_or_id):
        c = self._get(f"start {name_or_id}", name_or_id)
        if c.status != "running":
            self._call(f"start {name_or_id}", c.start)

    def stop(self, name_or_id, grace=None):
        c = self._call(f"stop {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is None:
            return
        if grace is None:
            grace = (c.attrs.get("Config") or {}).get("StopTimeout") or 10
        self._call(f"stop {name_or_id}", lambda: c.stop(timeout=int(round(grace))), missing_ok=True)

    def remove(self, name_or_id):
        c = self._call(f"remove {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is not None:
            self._call(f"remove {name_or_id}", lambda: c.remove(force=True, v=False), missing_ok=True)

    def logs(self, name_or_id, tail=50):
        c = self._call(f"logs {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is None:
            return ""
        return self._call(f"logs {name_or_id}", lambda: c.logs(stdout=True, stderr=True, tail=tail)).decode(errors="replace")

    def exec(self, name_or_id, command: Sequence[str], *, environment=None, timeout=None):
        c = self._get(f"exec in {name_or_id}", name_or_id)
        argv = list(command)
        if timeout is not None:
            argv = ["timeout", "-s", "KILL", str(max(1, int(timeout)))] + argv

        def run():
            code, output = c.exec_run(argv, environment=dict(environment or {}), demux=False)
            return ExecResult(int(code if code is not None else -1), (output or b"").decode(errors="replace"))
        return self._call(f"exec in {name_or_id}", run)

    def wait(self, name_or_id, timeout=None):
        c = self._get(f"wait {name_or_id}", name_or_id)
        try:
            result = self._call(f"wait {name_or_id}", lambda: c.wait(timeout=timeout))
        except EngineUnreachable as err:
            if "timed out" in err.message:
                raise self.error(f"wait {name_or_id}", f"still running after {timeout}s") from None
            raise
        return int(result.get("StatusCode", -1))

    # -- networks -----------------------------------------------------------------
    def _network(self, name):
        nets = self._call(f"inspect network {name}", lambda: self.client.networks.list(names=[name]))
        return next((n for n in nets if n.name == name), None)

    def ensure_network(self, name, labels=None):
        if self._network(name) is not None:
            return
        try:
            self._call(f"create network {name}", lambda: self.client.networks.create(
                name, driver="bridge", labels=dict(labels or {}), check_duplicate=True))
        except EngineError as err:
            if "already exists" not in err.message:
                raise

    def remove_network(self, name):
        net = self._network(name)
        if net is not None:
            self._call(f"remove network {name}", net.remove, missing_ok=True)

    def list_networks(self, labels):
        nets = self._call("list networks", lambda: self.client.networks.list(filters={"label": _label_filters(labels)}))
        return [n.name for n in nets]

    def connect(self, name_or_id, network, aliases=()):
        net = self._network(network)
        if net is None:
            raise self.error(f"connect {name_or_id}", f"no network {network}")
        self._call(f"connect {name_or_id} to {network}", lambda: net.connect(name_or_id, aliases=list(aliases) or None))

    def disconnect(self, name_or_id, network):
        info = self.inspect(name_or_id)
        if info is None or network not in info.networks:
            return                               # already drained
        net = self._network(network)
        if net is None:
            return
        self._call(f"disconnect {name_or_id} from {network}", lambda: net.disconnect(name_or_id, force=True),
                   missing_ok=True)

    # -- volumes ------------------------------------------------------------------
    def ensure_volume(self, name, labels=None):
        existing = self._call(f"inspect volume {name}", lambda: self.client.volumes.get(name), missing_ok=True)
        if existing is None:
            self._call(f"create volume {name}", lambda: self.client.volumes.create(name, labels=dict(labels or {})))

    def list_volumes(self, labels):
        vols = self._call("list volumes", lambda: self.client.volumes.list(filters={"label": _label_filters(labels)}))
        return [v.name for v in vols]

    def remove_volume(self, name):
        vol = self._call(f"inspect volume {name}", lambda: self.client.volumes.get(name), missing_ok=True)
        if vol is not None:
            self._call(f"remove volume {name}", lambda: vol.remove(force=True), missing_ok=True)

    # -- images ----------------------------------------------------------------------
    def image(self, ref):
        img = self._call(f"inspect image {ref}", lambda: self.client.images.get(ref), missing_ok=True)
        if img is None:
            return None
        return ImageInfo(ref, img.id, img.labels or {})

    def import_rootfs(self, tar_path, ref):
        repo, tag = _split(ref)
        def go():
            with open(tar_path, "rb") as f:
                self.client.api.import_image(src=f, repository=repo, tag=tag)
        self._call(f"import {ref}", go)
        info = self.image(ref)
        if info is None:
            raise self.error(f"import {ref}", "import reported success but the image is missing")
        return info

    def build(self, context_dir, ref, *, containerfile="Containerfile", labels=None, log=None):
        def go():
            for chunk in self.client.api.build(path=context_dir, tag=ref, dockerfile=containerfile,
                                               labels=dict(labels or {}), rm=True, forcerm=True, decode=True,
                                               timeout=3600):
                if "error" in chunk:
                    raise docker.errors.BuildError(chunk["error"].strip(), [])
                text = chunk.get("stream") or chunk.get("status") or ""
                if log is not None:
                    for line in text.splitlines():
                        if line.strip():
                            log(line)
        self._call(f"build {ref}", go)
        info = self.image(ref)
        if info is None:
            raise self.error(f"build {ref}", "build finished but the image is missing")
        return info

    def tag(self, ref, new_ref):
        img = self._call(f"inspect image {ref}", lambda: self.client.images.get(ref))
        repo, tag = _split(new_ref)
        self._call(f"tag {ref} as {new_ref}", lambda: img.tag(repo, tag))

    def pull(self, ref):
        repo, tag = _split(ref)
        self._call(f"pull {ref}", lambda: self.client.images.pull(repo, tag=tag))
        info = self.image(ref)
        if info is None:
            raise self.error(f"pull {ref}", "pull finished but the image is missing")
        return info

    def remove_image(self, ref):
        self._call(f"remove image {ref}", lambda: self.client.images.remove(ref, force=True), missing_ok=True)


def _split(ref: str) -> tuple[str, str]:
    name = ref.rsplit("/", 1)[-1]
    if ":" in name:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


def _message(err) -> str:
    text = getattr(err, "explanation", None) or getattr(err, "msg", None) or str(err)
    return " ".join(str(text).split())[:400]
