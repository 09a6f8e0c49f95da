"""Podman driver (podman-py, libpod REST API).

Quirks handled here:
- podman 4.3 has no health-status updates without systemd: tidegate runs checks itself
  (engines/health.py), so no healthcheck is ever configured on the container.
- The libpod list and inspect formats differ (Names vs Name, State string vs object):
  both are parsed.
- Rootfs import has no podman-py call: the libpod `images/import` endpoint is used.
- podman-py mangles list values in dict filters; label filters use its list form.
- libpod 4.3 takes stop_signal as a number ("SIGTERM" fails to decode).
- A named volume must exist before create (libpod would create it anyway, but
  without our labels): ensure_volume first.
"""
from __future__ import annotations

import signal
import threading
from typing import Mapping, Sequence

import podman
import podman.errors
import requests

from .base import (ContainerInfo, ContainerSpec, Engine, EngineError, EngineUnreachable, ExecResult,
                   ImageInfo)

API_TIMEOUT = 60


def _label_filters(labels: Mapping[str, str]) -> list[str]:
    # podman-py turns a {"label": [...]} dict into the string "['k=v']": pass the list
    # form ["label=k=v", ...], which it splits on the first "=".
    return [f"label={k}={v}" if v else f"label={k}" for k, v in labels.items()]


class PodmanEngine(Engine):
    kind = "podman"

    def __init__(self, host: str, url: str):
        super().__init__(host, url)
        self._client = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------
    @property
    def client(self) -> podman.PodmanClient:
        with self._lock:
            if self._client is None:
                self._client = podman.PodmanClient(base_url=self.url, timeout=API_TIMEOUT)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _call(self, operation: str, fn, *, missing=None, missing_ok: bool = False):
        """Run fn(); map library errors to EngineError naming host and operation."""
        try:
            return fn()
        except (podman.errors.NotFound, podman.errors.ImageNotFound) as err:
            if missing_ok:
                return missing
            raise self.error(operation, _message(err)) from None
        except podman.errors.APIError as err:
            if _status(err) is None:
                # podman-py reports a refused or missing socket as an APIError
                # without a response ("GET operation failed")
                raise EngineUnreachable(self.host, self.kind, operation,
                                        f"engine at {self.url} does not answer") from None
            text = _message(err)
            if "no such" in text.lower() and missing_ok:
                return missing
            raise self.error(operation, text, temporary=_status(err) in (500, 503) and "timeout" in text.lower()) from None
        except podman.errors.BuildError as err:
            raise self.error(operation, _message(err)) from None
        except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as err:
            raise EngineUnreachable(self.host, self.kind, operation,
                                    f"engine at {self.url} does not answer ({type(err).__name__})") from None
        except requests.exceptions.Timeout:
            raise EngineUnreachable(self.host, self.kind, operation, f"engine at {self.url} timed out") from None
        except requests.exceptions.RequestException as err:
            raise EngineUnreachable(self.host, self.kind, operation, f"engine at {self.url}: {err}") from None
        except podman.errors.PodmanError as err:
            raise self.error(operation, _message(err)) from None

    # -- engine -------------------------------------------------------------------
    def ping(self) -> str:
        def go():
            if not self.client.ping():
                raise requests.exceptions.ConnectionError("ping failed")
            return self.client.version().get("Version", "?")
        return self._call("ping", go)

    # -- containers -----------------------------------------------------------------
    def list_containers(self, labels, *, all=True):
        items = self._call("list containers", lambda: self.client.containers.list(
            all=all, filters=_label_filters(labels)))
        return [self._info_from_list(c.attrs) for c in items]

    def _info_from_list(self, a: dict) -> ContainerInfo:
        names = a.get("Names") or [a.get("Name", "")]
        ports = {}
        for p in a.get("Ports") or []:
            ports[f"{p.get('container_port')}/{p.get('protocol', 'tcp')}"] = int(p.get("host_port") or 0)
        return ContainerInfo(id=a["Id"], name=names[0].lstrip("/"), image=a.get("Image", ""),
                             image_id=a.get("ImageID", ""), labels=a.get("Labels") or {},
                             state=str(a.get("State", "")).lower(), exit_code=a.get("ExitCode"),
                             started_at=str(a.get("StartedAt", "")),
                             networks={n: ("", ()) for n in a.get("Networks") or []}, ports=ports)

    def _info_from_inspect(self, a: dict) -> ContainerInfo:
        state = a.get("State") or {}
        nets = {}
        for name, n in ((a.get("NetworkSettings") or {}).get("Networks") or {}).items():
            nets[name] = (n.get("IPAddress", ""), tuple(n.get("Aliases") or ()))
        ports = {}
        for key, binds in ((a.get("NetworkSettings") or {}).get("Ports") or {}).items():
            if binds:
                ports[key] = int(binds[0].get("HostPort") or 0)
        return ContainerInfo(id=a["Id"], name=a.get("Name", "").lstrip("/"),
                             image=a.get("ImageName") or (a.get("Config") or {}).get("Image", ""),
                             image_id=a.get("Image", ""), labels=(a.get("Config") or {}).get("Labels") or {},
                             state=str(state.get("Status", "")).lower(), exit_code=state.get("ExitCode"),
                             started_at=state.get("StartedAt"), networks=nets, ports=ports)

    def inspect(self, name_or_id):
        c = self._call(f"inspect {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is None:
            return None
        return self._info_from_inspect(c.attrs)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.network:
            self.ensure_network(spec.network)
        for v in spec.volumes:
            self.ensure_volume(v.name)
        kwargs = dict(
            name=spec.name,
            environment=dict(spec.environment),
            labels=dict(spec.labels),
            # libpod 4.3 wants the signal as a number, not a name
            stop_signal=int(signal.Signals[spec.stop_signal]),
            stop_timeout=int(round(spec.stop_grace)),
            ulimits=[{"Name": n, "Soft": s, "Hard": h} for n, (s, h) in spec.ulimits.items()],
            volumes={v.name: {"bind": v.target, "mode": "ro" if v.read_only else "rw"} for v in spec.volumes},
            mounts=[{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
                    for m in spec.mounts],
            ports={f"{p.container}/{p.protocol}": ((p.host_ip, p.host) if p.host_ip else p.host)
                   for p in spec.ports},
        )
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
        return self._info_from_inspect(self._call(f"inspect {spec.name}", lambda: self.client.containers.get(c.id)).attrs)

    def _get(self, operation: str, name_or_id: str):
        return self._call(operation, lambda: self.client.containers.get(name_or_id))

    def start(self, name_or_id):
        c = self._get(f"start {name_or_id}", name_or_id)
        if c.status != "running":
            self._call(f"start {name_or_id}", c.start)

    def stop(self, name_or_id, grace=None):
        c = self._call(f"stop {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is None:
            return
        kwargs = {} if grace is None else {"timeout": int(round(grace))}
        # The HTTP call must outlive the grace period it asks the engine to wait.
        self._call(f"stop {name_or_id}", lambda: c.stop(**kwargs))

    def remove(self, name_or_id):
        c = self._call(f"remove {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is None:
            return
        # v=False: anonymous volumes only anyway; named volumes are never removed here.
        self._call(f"remove {name_or_id}", lambda: c.remove(force=True, v=False), missing_ok=True)

    def logs(self, name_or_id, tail=50):
        c = self._call(f"logs {name_or_id}", lambda: self.client.containers.get(name_or_id), missing_ok=True)
        if c is None:
            return ""
        out = self._call(f"logs {name_or_id}", lambda: c.logs(stdout=True, stderr=True, tail=tail, stream=False))
        if isinstance(out, (bytes, bytearray)):
            return out.decode(errors="replace")
        return b"".join(out).decode(errors="replace")

    def exec(self, name_or_id, command: Sequence[str], *, environment=None, timeout=None):
        c = self._get(f"exec in {name_or_id}", name_or_id)
        argv = list(command)
        if timeout is not None:
            # podman-py's exec has no timeout: coreutils `timeout` in the container bounds it
            argv = ["timeout", "-s", "KILL", str(max(1, int(timeout)))] + argv

        def run():
            # demux=False returns the raw multiplexed stream (frame headers included)
            code, output = c.exec_run(argv, environment=dict(environment or {}), demux=True)
            if isinstance(output, tuple):
                output = b"".join(x or b"" for x in output)
            return ExecResult(int(code if code is not None else -1), (output or b"").decode(errors="replace"))
        return self._call(f"exec in {name_or_id}", run)

    def wait(self, name_or_id, timeout=None):
        c = self._get(f"wait {name_or_id}", name_or_id)
        try:
            result = self._call(f"wait {name_or_id}", lambda: c.wait(condition=["stopped", "exited"], timeout=timeout))
        except EngineUnreachable as err:
            if "timed out" in err.message:
                raise self.error(f"wait {name_or_id}", f"still running after {timeout}s") from None
            raise
        if isinstance(result, dict):
            return int(result.get("StatusCode", -1))
        return int(result)

    # -- networks -----------------------------------------------------------------------
    def ensure_network(self, name, labels=None):
        exists = self._call(f"inspect network {name}", lambda: self.client.networks.exists(name))
        if exists:
            return
        try:
            self._call(f"create network {name}", lambda: self.client.networks.create(
                name, driver="bridge", dns_enabled=True, labels=dict(labels or {})))
        except EngineError as err:
            if "already exists" not in err.message:     # another thread won the race
                raise

    def remove_network(self, name):
        net = self._call(f"inspect network {name}", lambda: self.client.networks.get(name), missing_ok=True)
        if net is not None:
            self._call(f"remove network {name}", lambda: net.remove(force=True), missing_ok=True)

    def list_networks(self, labels):
        nets = self._call("list networks", lambda: self.client.networks.list(filters=_label_filters(labels)))
        return [n.name for n in nets]

    def connect(self, name_or_id, network, aliases=()):
        net = self._call(f"inspect network {network}", lambda: self.client.networks.get(network))
        self._call(f"connect {name_or_id} to {network}", lambda: net.connect(name_or_id, aliases=list(aliases)))

    def disconnect(self, name_or_id, network):
        info = self.inspect(name_or_id)
        if info is None or (info.networks and network not in info.networks):
            return                               # already drained
        net = self._call(f"inspect network {network}", lambda: self.client.networks.get(network), missing_ok=True)
        if net is None:
            return
        try:
            self._call(f"disconnect {name_or_id} from {network}", lambda: net.disconnect(name_or_id, force=True))
        except EngineError as err:
            if "not connected" not in err.message and "no such" not in err.message.lower():
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
        vols = self._call("list volumes", lambda: self.client.volumes.list(filters=_label_filters(labels)))
        return [v.name for v in vols]

    def remove_volume(self, name):
        self._call(f"remove volume {name}", lambda: self.client.volumes.remove(name, force=True), missing_ok=True)

    # -- images ------------------------------------------------------------------------------
    def image(self, ref):
        img = self._call(f"inspect image {ref}", lambda: self.client.images.get(ref), missing_ok=True)
        if img is None:
            return None
        return ImageInfo(ref, img.id, (img.attrs.get("Labels") or (img.attrs.get("Config") or {}).get("Labels") or {}))

    def import_rootfs(self, tar_path, ref):
        def go():
            with open(tar_path, "rb") as f:
                r = self.client.api.post("/images/import", params={"reference": ref}, data=f,
                                         headers={"Content-Type": "application/x-tar"}, timeout=600)
            r.raise_for_status()
        self._call(f"import {ref}", go)
        info = self.image(ref)
        if info is None:
            raise self.error(f"import {ref}", "import reported success but the image is missing")
        return info

    def build(self, context_dir, ref, *, containerfile="Containerfile", labels=None, log=None):
        def go():
            image, lines = self.client.images.build(path=context_dir, tag=ref, dockerfile=containerfile,
                                                    labels=dict(labels or {}), rm=True, timeout=3600)
            for chunk in lines:
                if log is not None:
                    text = chunk.decode(errors="replace") if isinstance(chunk, (bytes, bytearray)) else str(chunk)
                    for line in text.splitlines():
                        log(line)
            return image
        self._call(f"build {ref}", go)
        info = self.image(ref)
        if info is None:
            raise self.error(f"build {ref}", "build finished but the image is missing")
        return info

    def tag(self, ref, new_ref):
        img = self._call(f"inspect image {ref}", lambda: self.client.images.get(ref))
        from .docker import _split
        repo, tag = _split(new_ref)
        self._call(f"tag {ref} as {new_ref}", lambda: img.tag(repo, tag))

    def pull(self, ref):
        self._call(f"pull {ref}", lambda: self.client.images.pull(ref))
        info = self.image(ref)
        if info is None:
            raise self.error(f"pull {ref}", "pull finished but the image is missing")
        return info

    def remove_image(self, ref):
        self._call(f"remove image {ref}", lambda: self.client.images.remove(ref, force=True), missing_ok=True)


def _message(err) -> str:
    text = getattr(err, "explanation", None) or str(err)
    return " ".join(str(text).split())[:400]


def _status(err) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)
