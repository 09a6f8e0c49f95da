"""The demo cloud (clouds/demo) for tests and benches: as committed in this repository,
run under a unique name with free host ports (the gate's rewrite, gate.isolate), so the
podman and docker runs of a test never collide, nor with a `make demo` on the machine."""
from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

from controller import images
from controller.reconcile import Controller
from controller.secrets import Vault, load_identities
from controller.source import Source
from gate import config as gate_config
from gate import hooks
from gate.isolate import PortMap, host_names, isolate
from gate.run import GitWork, free_port
from validators.load import load_cloud
from validators.tree import MemoryTree

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "clouds/demo"
DEMO_KEY = DEMO / "keys/demo.agekey"        # public on purpose: the demo's controller and gate key


def project_files() -> dict[str, tuple[bytes, int]]:
    """clouds/demo/ as committed (path -> (content, git mode))."""
    listed = subprocess.run(["git", "ls-files", "-s", "clouds/demo"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    out = {}
    for line in listed:
        meta, path = line.split("\t", 1)
        mode = int(meta.split()[0], 8)
        out[path] = ((ROOT / path).read_bytes(), mode)
    return out


def upgrade_placement(files: dict, cloud: str, to: str = "2026.1") -> dict:
    """The documented one-service change (clouds/demo/UPGRADE.md): placement's release,
    image and recipe move from 2025.1 to `to`."""
    path = f"clouds/{cloud}/services/placement.yaml"
    text, mode = files[path]
    new = re.sub(rb"(?m)^((?:release|image|build):.*)2025\.1", lambda m: m.group(1) + to.encode(), text)
    assert new != text, "placement.yaml has no 2025.1 release line"
    return {**files, path: (new, mode)}


def demo_repo(path: Path) -> GitWork:
    """A git repository holding clouds/demo at 2025.1 (`base`) and the placement upgrade
    on top (`upgrade`), unchanged otherwise (bench/gate.py gates it)."""
    repo = GitWork(path)
    files = project_files()
    repo.base = repo.commit(files, "demo cloud 2025.1")
    repo.upgrade = repo.commit(upgrade_placement(files, "demo"), "placement 2026.1")
    return repo


class DemoCloud:
    def __init__(self, tmp: Path, engine):
        self.engine = engine
        self.name = f"demo{uuid.uuid4().hex[:6]}"
        self.ports = PortMap(free_port)
        self.files = isolate(project_files(), "demo", self.name, kind=engine.kind, url=engine.url, ports=self.ports)
        self.repo = GitWork(tmp / "repo")
        self.state_dir = tmp / "state"
        self.hook_state = tmp / "hooks"
        self.base = self.repo.commit(self.files, "demo cloud 2025.1")
        self.identities = load_identities(DEMO_KEY)
        vault = Vault.of(MemoryTree({k: v for k, (v, _) in self.files.items()}), f"clouds/{self.name}", self.identities)
        self.config = gate_config.resolve_env(
            gate_config.load(self.files.get(f"clouds/{self.name}/{gate_config.FILE}", (None, 0))[0], gate_config.FILE),
            vault.text)

    @property
    def folder(self) -> Path:
        return self.repo.path / "clouds" / self.name

    def build_images(self, log=lambda line: None) -> dict[str, bool]:
        """Every recipe the base and the upgrade need, on this engine (cached by hash)."""
        built = {}
        states = [self.files, upgrade_placement(self.files, self.name)]
        names = set()
        for files in states:
            loaded = load_cloud(MemoryTree({k: v for k, (v, _) in files.items()}), self.name)
            names |= {s.build for s in loaded.cloud.services.values() if s.build}
        for name in sorted(names):
            info, did = images.build(self.engine, images.load_recipe(DEMO / "images", name), log=log)
            built[name] = did
        return built

    def controller(self, **kw) -> Controller:
        return Controller(Source(str(self.repo.path)), self.name, state_dir=self.state_dir,
                          engines=dict.fromkeys(host_names(self.files, name=self.name), self.engine),
                          identities=self.identities, **kw)

    def reconcile(self, rev: str = "HEAD", **kw):
        return self.controller(**kw).reconcile(rev)

    def commit_upgrade(self) -> str:
        self.files = upgrade_placement(self.files, self.name)
        return self.repo.commit(self.files, "placement: 2025.1 → 2026.1")

    def rotate_secret(self, name: str) -> str:
        """`tidegate secrets rotate NAME` on the test cloud's files, committed."""
        from controller import keyrepo
        from controller.secrets import decrypt, encrypt
        path = f"clouds/{self.name}/secrets/{name}.age"
        tree = MemoryTree({k: v for k, (v, _) in self.files.items()})
        recipients = [key for _n, key in load_cloud(tree, self.name).cloud.recipients]
        keys = keyrepo.rotate(keyrepo.parse(decrypt(self.files[path][0], self.identities, path)))
        self.files = {**self.files, path: (encrypt(keyrepo.dump(keys), recipients), self.files[path][1])}
        return self.repo.commit(self.files, f"rotate {name}")

    def revert(self, rev: str) -> str:
        self.repo.git("revert", "--no-edit", rev)
        sha = self.repo.git("rev-parse", "HEAD")
        self.files = {k: ((self.repo.path / k).read_bytes(), m) for k, (_, m) in self.files.items()}
        return sha

    def url(self, endpoint: str) -> str:
        return hooks.endpoint_url(self.config, self.ports, endpoint)

    def hook(self, service: str, phase: str) -> hooks.HookResult:
        path = self.folder / "tests" / service / phase
        return hooks.run(path, service, phase, hooks.environment(self.config, self.ports, self.name),
                         self.hook_state, self.folder, self.config.hook_timeout)

    def hooks(self, phase: str) -> list[hooks.HookResult]:
        order = ["keystone", "placement"] if phase != "destroy" else ["placement", "keystone"]
        return [self.hook(s, phase) for s, _ in hooks.find(self.folder, phase, order)]

    def front_log(self) -> str:
        """What HAProxy logged that went wrong: requests that did not end with a 200 and
        the '----' termination state (retried ones that did are left out), server state changes."""
        fronts = self.engine.list_containers({"tidegate.cloud": self.name, "tidegate.service": "haproxy"})
        lines = [line for c in fronts for line in self.engine.logs(c.id, tail=None).splitlines()]
        return "\n".join(line for line in lines if not (" 200 " in line and " ---- " in line)
                         and "<BADREQ>" not in line)

    def teardown(self) -> None:
        from controller.teardown import remove_cloud
        remove_cloud(self.engine, self.name, volumes=True, graceful=False)
