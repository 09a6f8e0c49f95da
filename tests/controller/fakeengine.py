"""An in-memory Engine for the executor's pure tests: containers are records, every call
is logged in order, and a test can make any operation raise (`fail`).

Not a model of podman or docker: just enough to show what the executor asks, in which
order, and what it does when an answer is an exception."""
from __future__ import annotations

import itertools
from dataclasses import replace

from controller.engines.base import ContainerInfo, ContainerSpec, Engine, ExecResult, ImageInfo

_ids = itertools.count(1)


class FakeEngine(Engine):
    kind = "fake"

    def __init__(self, host: str = "local", images=()):
        super().__init__(host, "fake://")
        self.containers: dict[str, ContainerInfo] = {}
        self.images = set(images)
        self.networks: set[str] = set()
        self.calls: list[tuple] = []          # (operation, container name, detail)
        self.fail: dict[str, BaseException] = {}   # operation -> raised when it is called
        self.job_results: dict[str, ExecResult] = {}   # job phase (precheck…) -> what its jobs return
        self.exec_results: dict[tuple, ExecResult] = {}   # command -> what an exec of it returns

    def _log(self, op: str, name: str = "", detail=None) -> None:
        self.calls.append((op, name, detail))
        if op in self.fail:
            raise self.fail[op]

    def _get(self, name_or_id: str) -> ContainerInfo | None:
        return self.containers.get(name_or_id) or next(
            (c for c in self.containers.values() if c.id == name_or_id), None)

    def _set(self, info: ContainerInfo) -> None:
        self.containers[info.name] = info

    def ops(self, op: str) -> list[str]:
        return [name for o, name, _ in self.calls if o == op]

    def running(self) -> set[str]:
        return {name for name, c in self.containers.items() if c.running}

    # -- engine
    def ping(self):
        return "fake"

    def list_containers(self, labels, *, all=True):
        return [c for c in self.containers.values()
                if all_labels(c.labels, labels) and (all or c.running)]

    def inspect(self, name_or_id):
        return self._get(name_or_id)

    def create(self, spec: ContainerSpec):
        self._log("create", spec.name, spec)
        nets = {spec.network: (f"10.0.0.{next(_ids)}", tuple(spec.aliases))} if spec.network else {}
        info = ContainerInfo(f"id-{spec.name}", spec.name, spec.image, "sha256:x", dict(spec.labels), "created",
                             networks=nets)
        self._set(info)
        return info

    def start(self, name_or_id):
        self._log("start", name_or_id)
        self._set(replace(self._get(name_or_id), state="running", started_at="now"))

    def stop(self, name_or_id, grace=None):
        self._log("stop", name_or_id, grace)
        if self._get(name_or_id) is not None:
            self._set(replace(self._get(name_or_id), state="exited", exit_code=0))

    def remove(self, name_or_id):
        self._log("remove", name_or_id)
        info = self._get(name_or_id)
        if info is not None:
            del self.containers[info.name]

    def logs(self, name_or_id, tail=50):
        return ""

    def exec(self, name_or_id, command, *, environment=None, timeout=None):
        self._log("exec", name_or_id, tuple(command))
        return self.exec_results.get(tuple(command), ExecResult(0, ""))

    def wait(self, name_or_id, timeout=None):
        return 0

    def run_job(self, spec, timeout=None):
        self._log("job", spec.name, spec)
        return self.job_results.get(spec.labels.get("tidegate.phase", ""), ExecResult(0, ""))

    # -- networks
    def ensure_network(self, name, labels=None):
        self.networks.add(name)

    def remove_network(self, name):
        self.networks.discard(name)

    def list_networks(self, labels):
        return sorted(self.networks)

    def rejoin(self, name_or_id, network, aliases):
        address = self._get(name_or_id).networks[network][0]
        self.disconnect(name_or_id, network)
        self.connect(name_or_id, network, aliases, address)

    def connect(self, name_or_id, network, aliases=(), address=None):
        self._log("connect", name_or_id, tuple(aliases))
        info = self._get(name_or_id)
        ip = address or f"10.0.0.{next(_ids)}"
        self._set(replace(info, networks={**info.networks, network: (ip, tuple(aliases))}))

    def disconnect(self, name_or_id, network):
        self._log("disconnect", name_or_id, network)
        info = self._get(name_or_id)
        if info is not None:
            self._set(replace(info, networks={n: v for n, v in info.networks.items() if n != network}))

    # -- volumes and images: not what these tests are about
    def ensure_volume(self, name, labels=None):
        pass

    def list_volumes(self, labels):
        return []

    def volume_labels(self, name):
        return None                              # no volume exists: create makes it

    def remove_volume(self, name):
        pass

    def image(self, ref):
        return ImageInfo(ref, "sha256:x") if ref in self.images else None

    def import_rootfs(self, tar_path, ref):
        raise NotImplementedError

    def build(self, context_dir, ref, *, containerfile="Containerfile", labels=None, log=None):
        raise NotImplementedError

    def tag(self, ref, new_ref):
        raise NotImplementedError

    def pull(self, ref):
        raise NotImplementedError

    def remove_image(self, ref):
        raise NotImplementedError


def all_labels(have, want) -> bool:
    return all(k in have and (not v or have[k] == v) for k, v in want.items())
