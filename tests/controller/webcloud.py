"""A throw-away cloud repository for controller tests on real engines: two replicas of a
small HTTP API (tests/clouds/web) behind HAProxy, committed to a git repo, converged by
the real Controller (planner + executor) on a real engine."""
from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controller.desired import LABEL_CLOUD, LABEL_MANAGED
from controller.reconcile import Controller
from controller.source import Source
from tests.validators.helpers import GitRepo

TEMPLATE = Path(__file__).resolve().parents[1] / "clouds/web"


@dataclass
class WebCloud:
    name: str
    repo: GitRepo
    engine: object
    port: int
    state_dir: Path

    @property
    def folder(self) -> Path:
        return self.repo.path / "clouds" / self.name

    def controller(self, **kw) -> Controller:
        return Controller(Source(self.repo.path), self.name, state_dir=self.state_dir,
                          engines={"local": self.engine}, **kw)

    def reconcile(self, rev="HEAD", **kw):
        return self.controller().reconcile(rev, **kw)

    def service(self, name: str) -> dict:
        return yaml.safe_load((self.folder / f"services/{name}.yaml").read_text())

    def commit_service(self, name: str, data: dict, message: str) -> str:
        return self.repo.commit({f"clouds/{self.name}/services/{name}.yaml": yaml.safe_dump(data, sort_keys=False)},
                                message)

    def upgrade_web(self, release: str, **env) -> str:
        data = self.service("web")
        data["release"] = release
        data["image"] = f"localhost/tidegate/web:{release}"
        data["environment"] = {**data["environment"], "RELEASE": release, **env}
        return self.commit_service("web", data, f"web {release}")

    def containers(self, service: str | None = None) -> dict[str, str]:
        labels = {LABEL_MANAGED: "tidegate", LABEL_CLOUD: self.name}
        if service:
            labels["tidegate.service"] = service
        return {c.name: c.id for c in self.engine.list_containers(labels)}

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str = "/", timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def put(self, path: str, body: str) -> int:
        req = urllib.request.Request(self.url(path), data=body.encode(), method="PUT")
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status

    def wait_serving(self, release: str | None = None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                code, body = self.get("/", timeout=2)
                last = (code, body)
                if code == 200 and (release is None or json.loads(body)["release"] == release):
                    return
            except (OSError, ValueError) as err:
                last = err
            time.sleep(0.2)
        raise AssertionError(f"{self.url()} not serving {release or ''}: {last}")

    def front_logs(self, tail: int = 60) -> str:
        """The balancer's last log lines (HAProxy logs server state changes and failed
        requests): the explanation of a 503 in an assertion message."""
        return "\n".join(self.engine.logs(cid, tail=tail) for cid in self.containers("lb").values())

    def teardown(self) -> None:
        for cid in self.containers().values():
            self.engine.remove(cid)
        self.engine.remove_network(f"tidegate-{self.name}")
        for vol in self.engine.list_volumes({LABEL_CLOUD: self.name}):
            self.engine.remove_volume(vol)


def make_web_cloud(tmp_path: Path, engine, name: str, port: int, *, images: dict) -> WebCloud:
    repo = GitRepo(tmp_path / "repo")
    dest = repo.path / "clouds" / name
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("images"))
    for path in dest.rglob("*.yaml"):
        text = path.read_text().replace("@NAME@", name).replace("@ENGINE@", engine.kind).replace("@PORT@", str(port))
        path.write_text(text)
    # The web images of each release are the python base under release tags.
    for release in ("2025.1", "2025.2", "2026.1"):
        engine.tag(images["python"], f"localhost/tidegate/web:{release}")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "web cloud 2025.1")
    return WebCloud(name, repo, engine, port, tmp_path / "state")


@dataclass
class LoadGenerator:
    """Requests through the balancer, as fast as one client goes, until stopped."""
    url: str
    ok: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)
    releases: dict = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    body = json.loads(r.read())
                    if r.status == 200:
                        self.ok += 1
                        self.releases[body["release"]] = self.releases.get(body["release"], 0) + 1
                        continue
                    self.failed += 1
                    self.errors.append(f"HTTP {r.status}")
            except Exception as err:  # noqa: BLE001 — every failure counts, whatever its kind
                self.failed += 1
                self.errors.append(repr(err))

    def start(self) -> "LoadGenerator":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self, minimum: int = 0, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.ok + self.failed < minimum and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(15)

    @property
    def total(self) -> int:
        return self.ok + self.failed
