"""The compute cloud (clouds/compute) for tests and benches: as committed in this
repository, under a unique name, its front on free host ports, its three hosts (ctl,
cmp1, cmp2) on one engine — the hosts keep their names, because a Nova compute's
identity is its host's name (`${host}` in config/nova/nova.conf).

The upgrade commits are the documented ones (README, the compute cloud): Nova's four
services, then Neutron's server, 2025.1 → 2026.1, release, image and recipe."""
from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

from controller import images
from controller.reconcile import Controller
from controller.secrets import Vault, load_identities
from controller.source import Source
from gate.gitwork import GitWork
from gate.probes import Probe, Token
from gate.run import free_port
from validators.load import load_cloud
from validators.tree import MemoryTree

from .osclient import Client
from .timings import Timings

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "clouds/compute"
KEY = CLOUD / "keys/demo.agekey"             # the demo's key, public on purpose
HOSTS = ("ctl", "cmp1", "cmp2")
FRONT = {"keystone": 25000, "placement": 28778, "glance": 29292, "neutron": 29696, "nova": 28774}
NOVA = ("nova-api", "nova-conductor", "nova-scheduler", "nova-compute")


def project_files() -> dict[str, tuple[bytes, int]]:
    """clouds/compute/ as committed (path -> (content, git mode))."""
    listed = subprocess.run(["git", "ls-files", "-s", "clouds/compute"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    out = {}
    for line in listed:
        meta, path = line.split("\t", 1)
        out[path] = ((ROOT / path).read_bytes(), int(meta.split()[0], 8))
    return out


def rename(files: dict, name: str, kind: str, url: str, ports: dict[str, int]) -> dict:
    """clouds/compute → clouds/<name>: every host on the one engine (names kept), the
    front's host ports (and the catalog's public URLs naming them) moved to `ports`."""
    out = {}
    for path, (data, mode) in files.items():
        rel = path[len("clouds/compute/"):]
        if not rel.endswith(".age"):
            for api, port in FRONT.items():
                data = re.sub(rb"(127\.0\.0\.1:)%d(?![0-9])" % port, rb"\g<1>%d" % ports[api], data)
                data = re.sub(rb'"%d:([0-9]+)"' % port,
                              rb"{container: \1, host: %d, host_ip: 127.0.0.1}" % ports[api], data)
        if rel == "cloud.yaml":
            data = re.sub(rb"(?m)^name: compute$", b"name: " + name.encode(), data)
            for host in HOSTS:
                data = re.sub(rb"(?m)^  %s: \{engine: podman\}" % host.encode(),
                              b"  %s: {engine: %s, url: \"%s\"}" % (host.encode(), kind.encode(), url.encode()), data)
        out[f"clouds/{name}/{rel}"] = (data, mode)
    return out


def upgrade(files: dict, cloud: str, services, to: str = "2026.1") -> dict:
    """The one-project change: each service's release, image and recipe 2025.1 → `to`."""
    out = dict(files)
    for service in services:
        path = f"clouds/{cloud}/services/{service}.yaml"
        text, mode = files[path]
        new = re.sub(rb"(?m)^((?:release|image|build):.*)2025\.1", lambda m: m.group(1) + to.encode(), text)
        assert new != text, f"{path} has no 2025.1 release line"
        out[path] = (new, mode)
    return out


def gate_repo(path: Path) -> GitWork:
    """A git repository holding clouds/compute as committed (`base`), the Nova upgrade on
    top of it (`nova`, branch main) and the Neutron upgrade on top of it (`neutron`, its
    own branch): the two pull requests `tidegate gate` judges (the gate makes its own test
    cloud of each: name, ports, one engine)."""
    repo = GitWork(path)
    files = project_files()
    repo.base = repo.commit(files, "compute cloud 2025.1")
    repo.nova = repo.commit(upgrade(files, "compute", NOVA), "nova: 2025.1 → 2026.1")
    repo.git("checkout", "-q", "-b", "upgrade-neutron", repo.base)
    repo.files = dict(files)
    repo.neutron = repo.commit(upgrade(files, "compute", ("neutron-server",)), "neutron: 2025.1 → 2026.1")
    repo.git("checkout", "-q", "main")
    return repo


class ComputeCloud:
    """The cloud on one engine (every host maps to it); see computehosts.py for the
    cloud over test hosts that are separate machines."""

    def __init__(self, tmp: Path, engine):
        name = f"cmp{uuid.uuid4().hex[:6]}"
        ports = {api: free_port() for api in FRONT}
        self.engine = engine
        self.start(tmp, name, rename(project_files(), name, engine.kind, engine.url, ports),
                   {h: engine for h in HOSTS}, ports)

    def start(self, tmp: Path, name: str, files: dict, engines: dict, ports: dict[str, int],
              front: str = "127.0.0.1") -> None:
        """Commit `files` (cloud `name`) as the base; `engines`: host -> Engine; the
        front's `ports` per API, on address `front`."""
        self.name, self.files, self.engines, self.ports = name, files, engines, ports
        self.repo = GitWork(tmp / "repo")
        self.state_dir = tmp / "state"
        self.base = self.repo.commit(self.files, "compute cloud 2025.1")
        self.identities = load_identities(KEY)
        vault = Vault.of(self.tree(), f"clouds/{self.name}", self.identities)
        self.client = Client(self.ports, vault.text("keystone-admin"), address=front)
        self.timings = Timings()

    def tree(self, files=None) -> MemoryTree:
        return MemoryTree({k: v for k, (v, _) in (files or self.files).items()})

    def build_images(self, log=lambda line: None) -> dict[str, bool]:
        """Every recipe of the base and both upgrades, on this engine (cached by hash)."""
        states = [self.files, upgrade(self.files, self.name, NOVA + ("neutron-server",))]
        names = set()
        for files in states:
            loaded = load_cloud(self.tree(files), self.name)
            names |= {s.build for s in loaded.cloud.services.values() if s.build}
        return {name: images.build(self.engine, images.load_recipe(CLOUD / "images", name), log=log)[1]
                for name in sorted(names)}

    def controller(self, **kw) -> Controller:
        kw.setdefault("progress", self.timings)
        return Controller(Source(str(self.repo.path)), self.name, state_dir=self.state_dir,
                          engines=dict(self.engines), identities=self.identities, **kw)

    def reconcile(self, rev: str = "HEAD", **kw):
        return self.controller(**kw).reconcile(rev)

    def contract(self, service: str):
        return self.controller().contract(service)

    def commit_upgrade(self, services, message: str) -> str:
        self.files = upgrade(self.files, self.name, services)
        return self.repo.commit(self.files, message)

    def revert(self, rev: str) -> str:
        self.repo.git("revert", "--no-edit", rev)
        self.files = {k: ((self.repo.path / k).read_bytes(), m) for k, (_, m) in self.files.items()}
        return self.repo.git("rev-parse", "HEAD")

    def containers(self, service: str) -> list[tuple]:
        """(engine, container) of each running replica of `service`, on every host."""
        out, seen = [], set()
        for engine in self.engines.values():
            if id(engine) in seen:          # one engine may serve several hosts
                continue
            seen.add(id(engine))
            out += [(engine, c) for c in engine.list_containers({
                "tidegate.cloud": self.name, "tidegate.service": service, "tidegate.role": "replica"}) if c.running]
        return out

    def version(self, service: str) -> set[str]:
        """The Nova (or Neutron) package version each running replica of `service` runs."""
        package = "neutron" if service.startswith("neutron") else "nova"
        found = set()
        for engine, c in self.containers(service):
            out = engine.exec(c.id, ["python3", "-c", "import importlib.metadata as m; "
                                                      f"print(m.version({package!r}))"])
            found.add(out.output.strip().splitlines()[-1])
        return found

    def logs(self, service: str, lines: int = 40) -> str:
        return "\n".join(f"== {c.name} on {engine.host}\n{engine.logs(c.id, tail=lines)}"
                         for engine, c in self.containers(service))

    def wait_computes_up(self, timeout: float = 240) -> dict[str, str]:
        """Both computes up in Nova (and mapped to cell1 by the scheduler's discovery)."""
        seen = {}

        def up():
            seen.clear()
            seen.update(self.client.computes())
            return seen == {"cmp1": "up", "cmp2": "up"}
        self.client.wait(up, timeout, "computes cmp1 and cmp2 up", interval=2)

        def in_placement():     # a compute reports its node's inventory after it is "up"
            for host in ("cmp1", "cmp2"):
                found = self.client.get("placement", f"/resource_providers?name={host}")["resource_providers"]
                if not found:
                    return False
                inventory = self.client.get("placement", f"/resource_providers/{found[0]['uuid']}/inventories")
                if "VCPU" not in inventory["inventories"]:
                    return False
            return True
        self.client.wait(in_placement, timeout, "cmp1 and cmp2 with inventory in Placement", interval=2)
        return seen

    def load(self, api: str = "nova", path: str = "/servers") -> "Load":
        return Load(self, api, path)

    def teardown(self) -> None:
        from controller.teardown import remove_cloud
        remove_cloud(self.engine, self.name, volumes=True, graceful=False)


class Load:
    """A bounded load client: lists servers (or networks: `api`, `path`) through the front
    (one client, a short pause, a fresh token after a 401) while its `with` block runs,
    and counts what it saw."""

    def __init__(self, cloud: ComputeCloud, api: str, path: str):
        env = {"OS_USERNAME": cloud.client.user, "OS_PASSWORD": cloud.client.password,
               "OS_PROJECT_NAME": cloud.client.project}
        token = Token(cloud.client.url("keystone"), env)
        self.probe = Probe(api, cloud.client.url(api, path), (200,), pause=0.05, token=token)

    def __enter__(self) -> Probe:
        self.probe.start()
        deadline = time.monotonic() + 60
        while self.probe.total < 5 and time.monotonic() < deadline:     # it flows before the change
            time.sleep(0.1)
        return self.probe

    def __exit__(self, *exc) -> None:
        self.probe.stop()
