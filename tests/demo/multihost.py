"""The demo's OpenStack services spread over test hosts that are separate machines
(tests/hosts): MariaDB, memcached and the HAProxy front on the first host, Keystone and
Placement replicas on the other two. The controller reaches the hosts only over ssh://;
services reach each other through ports published on their hosts' addresses and the
/etc/hosts lines tidegate derives (validators/topology.py)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from controller import images
from controller.engines import connect
from controller.engines.remote import Access
from controller.reconcile import Controller
from controller.secrets import Vault, load_identities
from controller.source import Source
from gate.gitwork import GitWork
from validators.tree import MemoryTree

from .democloud import DEMO, DEMO_KEY, project_files, upgrade_placement

FRONT_PORTS = {"keystone": 15000, "placement": 18778}

FRONT_CFG = """\
# The multi-host test cloud's front: backends by per-replica name, which tidegate writes
# into this container's /etc/hosts from where the replicas run (resolved at start).
global
  maxconn 4000
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option dontlog-normal
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout check 2s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  option http-server-close          # uwsgi closes after each answer: never reuse (see clouds/demo)
  # Servers are other machines: one failed connection (a stopping replica, or a blip
  # between hosts) is retried on the other server (redispatch), and only checks take a
  # server out. `observe layer4 error-limit 1` (the one-host demo's) turned one blip to
  # both hosts into "no server available" for a second: 750 requests answered 503.
  default-server init-addr libc,none check inter 500ms fall 2 rise 2
frontend keystone
  bind :5000
  default_backend keystone
frontend placement
  bind :8778
  default_backend placement
backend keystone
  option httpchk GET /v3
  http-check expect status 200
  server keystone-0 keystone-0:5000
  server keystone-1 keystone-1:5000
backend placement
  option httpchk GET /
  http-check expect status 200
  server placement-0 placement-0:8778
  server placement-1 placement-1:8778
"""


def spread(files: dict, name: str, hosts: dict) -> dict:
    """clouds/demo rewritten as cloud `name` over three machines (ctl1: data and front;
    ctl2, ctl3: Keystone and Placement); its secrets and their recipients unchanged."""
    ctl = list(hosts)
    out: dict = {}
    for path, (data, mode) in files.items():
        if not path.startswith("clouds/demo/") or "/tests/" in path:
            continue
        out[f"clouds/{name}/" + path.removeprefix("clouds/demo/")] = (data, mode)
    root = f"clouds/{name}"

    def edit(rel: str, change) -> None:
        data, mode = out[f"{root}/{rel}"]
        value = yaml.safe_load(data)
        change(value)
        out[f"{root}/{rel}"] = (yaml.safe_dump(value, sort_keys=False).encode(), mode)

    def cloud(v):
        v["name"] = name
        v["hosts"] = hosts
        v.pop("network", None)
    edit("cloud.yaml", cloud)
    for svc in ("mariadb", "memcached", "haproxy"):
        edit(f"services/{svc}.yaml", lambda v: v.update(hosts=[ctl[0]]))
    edit("services/placement.yaml", lambda v: v.update(hosts=ctl[1:], replicas=2))

    # Keystone's fernet and credential keys are the demo's secrets (a key repository each),
    # delivered to every replica on every host: a token one issued validates on the other.
    edit("services/keystone.yaml", lambda v: v.update(hosts=ctl[1:], replicas=2))
    assert "volumes" not in yaml.safe_load(out[f"{root}/services/keystone.yaml"][0])
    out[f"{root}/config/haproxy/haproxy.cfg"] = (FRONT_CFG.encode(), 0o100644)
    edit("services/haproxy.yaml", lambda v: v.update(
        ports=[f"{FRONT_PORTS['keystone']}:5000", f"{FRONT_PORTS['placement']}:8778"]))
    return out


class MultiHostCloud:
    """One test's cloud on a HostSet: its own name, repository and state directory."""

    def __init__(self, tmp: Path, hostset):
        self.hostset = hostset
        self.name = f"multi{uuid.uuid4().hex[:6]}"
        names = [h.name for h in hostset]
        self.hosts = {h.name: {"engine": h.kind, "url": h.ssh_url, "address": h.address,
                               "known_hosts": h.known_hosts} for h in hostset}
        self.front = hostset[0].address
        self.repo = GitWork(tmp / "repo")
        self.state_dir = tmp / "state"
        self.files = spread(project_files(), self.name, self.hosts)
        self.base = self.repo.commit(self.files, f"demo cloud 2025.1 over {', '.join(names)}")
        self.access = {h.name: Access(known_hosts=h.known_hosts, identity=h.key) for h in hostset}
        self.identities = load_identities(DEMO_KEY)
        self.vault = Vault.of(MemoryTree({k: v for k, (v, _) in self.files.items()}), f"clouds/{self.name}",
                              self.identities)
        self._engines: dict = {}
        self.steps: list[str] = []           # the executor's progress, with times (shown on failure)

    def engine(self, host: str):
        if host not in self._engines:
            h = next(x for x in self.hostset if x.name == host)
            self._engines[host] = connect(h.kind, h.ssh_url, h.name, self.access[host])
        return self._engines[host]

    def build_images(self) -> dict[str, float]:
        """Each host gets the images of the services placed on it, built through its own
        remote engine by tidegate's builder (rootfs cached by recipe hash)."""
        from validators.load import load_cloud
        from validators.tree import MemoryTree
        wanted: dict[str, set[str]] = {}
        for files in (self.files, upgrade_placement(self.files, self.name)):
            loaded = load_cloud(MemoryTree({k: v for k, (v, _) in files.items()}), self.name)
            assert loaded.cloud is not None, loaded.findings
            for svc in loaded.cloud.services.values():
                for host in svc.placement:
                    wanted.setdefault(host, set()).add(svc.build)

        def on(host):
            import time
            t0 = time.monotonic()
            for recipe in sorted(wanted[host]):
                images.build(self.engine(host), images.load_recipe(DEMO / "images", recipe))
            return host, time.monotonic() - t0
        with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            return dict(pool.map(on, sorted(wanted)))

    def progress(self, event, step, detail) -> None:
        import time
        self.steps.append(f"{time.strftime('%H:%M:%S')} {event} {step.action} {step.host} "
                          f"{step.container or step.service} {detail}".rstrip())

    def controller(self, state_dir: Path | None = None, **kw) -> Controller:
        engines = {h: self.engine(h) for h in self.hosts}
        kw.setdefault("progress", self.progress)
        return Controller(Source(str(self.repo.path)), self.name, state_dir=state_dir or self.state_dir,
                          engines=engines, identities=self.identities, **kw)

    def reconcile(self, rev: str = "HEAD", **kw):
        return self.controller(**kw).reconcile(rev)

    def commit_upgrade(self) -> str:
        self.files = upgrade_placement(self.files, self.name)
        return self.repo.commit(self.files, "placement: 2025.1 → 2026.1")

    def revert(self, rev: str) -> str:
        self.repo.git("revert", "--no-edit", rev)
        return self.repo.git("rev-parse", "HEAD")

    def url(self, service: str) -> str:
        return f"http://{self.front}:{FRONT_PORTS[service]}" + ("/v3" if service == "keystone" else "/")

    def replica_url(self, service: str, replica: int) -> str:
        host = self.hosts[list(self.hosts)[1 + replica]]["address"]
        port = {"keystone": 5000, "placement": 8778}[service]
        return f"http://{host}:{port}" + ("/v3" if service == "keystone" else "/")

    def containers(self, service: str) -> dict[str, list]:
        out = {}
        for host in self.hosts:
            out[host] = self.engine(host).list_containers({"tidegate.cloud": self.name,
                                                           "tidegate.service": service})
        return out

    def placement_versions(self) -> dict[str, set[str]]:
        out = {}
        for host, found in self.containers("placement").items():
            for c in found:
                text = self.engine(host).exec(c.id, ["python3", "-c", "import importlib.metadata as m; "
                                                    "print(m.version('openstack-placement'))"]).output
                out.setdefault(host, set()).add(text.strip())
        return out

    def token(self) -> str:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": self.vault.text("keystone-admin")}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        req = urllib.request.Request(self.url("keystone") + "/auth/tokens", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.headers["X-Subject-Token"]

    def validates(self, url: str, token: str) -> int:
        req = urllib.request.Request(url.rstrip("/") + "/auth/tokens",
                                     headers={"X-Auth-Token": token, "X-Subject-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    def front_log(self) -> str:
        lines = []
        for host, found in self.containers("haproxy").items():
            for c in found:
                lines += self.engine(host).logs(c.id, tail=None).splitlines()
        return "\n".join(line for line in lines if not (" 200 " in line and " ---- " in line))

    def teardown(self) -> None:
        from controller.teardown import remove_cloud
        for host in self.hosts:
            try:
                remove_cloud(self.engine(host), self.name, volumes=True, graceful=False)
            finally:
                self.engine(host).close()

