"""The controller after a failed analysis, end to end without an engine: real git, the
real Controller, planner and executor on an in-memory engine whose containers publish
their ports on loopback HTTP servers the test runs — one stands for every web replica
(asked directly by the deep checks), one for the front (asked by the analysis). A change
the replicas answer well but that breaks every request through the front is converged
back (RolledBack), not applied again by the next reconcile, retried only on purpose, and
a newer commit is applied normally."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from controller.desired import LABEL_SERVICE
from controller.reconcile import Controller
from controller.source import Source
from controller.status import Status

from .fakeengine import FakeEngine
from .gitrepo import Repo

ROOT = Path(__file__).resolve().parents[2]
CLOUD = {"name": "c", "hosts": {"local": {"engine": "podman"}}}


class Answering(ThreadingHTTPServer):
    """A loopback HTTP server answering GET with `answer()` -> (status, body)."""
    daemon_threads = True

    def __init__(self, answer):
        self.answer, self.asked = answer, 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):
                self.asked += 1
                status, body = self.answer()
                data = body.encode()
                handler.send_response(status)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)

            def log_message(handler, *args):
                pass
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class LoopbackEngine(FakeEngine):
    """Containers without a network address (checks go to their published port on
    127.0.0.1); web replicas publish 8080 on the replica server; what each was created
    with is kept, so the front can answer as the running replicas would."""

    def __init__(self, replica_port: int, images=()):
        super().__init__(images=images)
        self.replica_port, self.environment = replica_port, {}

    def create(self, spec):
        info = super().create(spec)
        ports = {f"{p.container}/tcp": p.host for p in spec.ports if p.host}
        if spec.labels.get(LABEL_SERVICE) == "web":
            ports["8080/tcp"] = self.replica_port
        self.environment[spec.name] = dict(spec.environment)
        info = replace(info, ports=ports, networks={n: ("", a) for n, (_, a) in info.networks.items()})
        self._set(info)
        return info

    def serving(self, service: str) -> list[dict]:
        return [self.environment[name] for name, c in self.containers.items()
                if c.running and c.labels.get(LABEL_SERVICE) == service]


def web(release="2025.1", max_failures=0, **env):
    return yaml.safe_dump({
        "project": "web", "release": release, "image": f"web:{release}", "replicas": 2, "expose": [8080],
        "environment": {"RELEASE": release, **env}, "health": {"type": "exec", "command": ["true"]},
        "checks": [{"name": "api", "type": "http", "port": 8080, "path": "/", "status": [200], "body": "release"}],
        "analysis": {"window": 0.6, "interval": 0.2, "max_failures": max_failures}, "upgrade": {"min_ready": 0}})


def lb(port: int):
    return yaml.safe_dump({"project": "haproxy", "release": "2025.1", "image": "lb", "depends_on": ["web"],
                           "ports": [f"{port}:8080"], "health": {"type": "exec", "command": ["true"]}})


@pytest.fixture
def cloud(tmp_path):
    replica = Answering(lambda: (200, '{"release": "any"}'))
    engine = LoopbackEngine(replica.port, images={"web:2025.1", "web:2025.2", "lb"})

    flaky = {"left": 0}                    # answers the front fails, whatever runs

    def through_the_front():
        if flaky["left"] > 0:
            flaky["left"] -= 1
            return 503, '{"error": "a blip"}'
        # a replica created with PROXY_HEADERS=strict refuses what the front forwards
        if any(env.get("PROXY_HEADERS") == "strict" for env in engine.serving("web")):
            return 500, '{"error": "untrusted proxy"}'
        return 200, '{"release": "2025.x"}'
    front = Answering(through_the_front)
    repo = Repo(tmp_path / "repo")
    base = repo.commit({"clouds/c/cloud.yaml": yaml.safe_dump(CLOUD), "clouds/c/services/web.yaml": web(),
                        "clouds/c/services/lb.yaml": lb(front.port)}, "web 2025.1 behind lb")
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines={"local": engine})
    status = ctl.reconcile()
    assert (status.condition(), status.last_applied_revision) == ("Ready", base), status.render()
    yield repo, ctl, engine, front, base, flaky
    replica.shutdown()
    front.shutdown()


def test_a_change_that_breaks_only_through_the_front_is_converged_back_and_not_applied_again(cloud, tmp_path):
    repo, ctl, engine, front, base, _ = cloud
    bad = repo.commit({"clouds/c/services/web.yaml": web(PROXY_HEADERS="strict")}, "web: strict proxy headers")
    status = ctl.reconcile()
    assert (status.condition(), status.reason) == ("Stalled", "RolledBack"), status.render()
    assert (status.failed_revision, status.last_applied_revision) == (bad, base)
    assert status.analysis["check"] == "api" and status.analysis["revision"] == bad
    assert "answered 500 (expected 200): {\"error\": \"untrusted proxy\"}" in status.analysis["answer"]
    assert f"lb:8080 (127.0.0.1:{front.port})" in status.analysis["front"]
    assert [env.get("PROXY_HEADERS") for env in engine.serving("web")] == [None, None]   # back on base
    assert Status.load(ctl.state_dir, "c").failed_revision == bad                       # on disk

    created = len(engine.ops("create"))
    again = ctl.reconcile()                                         # the next reconcile: not re-applied
    assert len(engine.ops("create")) == created and again.reason == "RolledBack"
    drift = ctl.reconcile(drift_check=True)
    assert len(engine.ops("create")) == created and drift.failed_revision == bad

    shown = subprocess.run([sys.executable, "-m", "controller.cli", "status", "--cloud", "c", "--state-dir",
                            str(ctl.state_dir)], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert shown.returncode == 0, shown.stderr
    assert "Stalled (RolledBack)" in shown.stdout and f"failed revision: {bad[:12]}" in shown.stdout
    assert "analysis of web at" in shown.stdout and "--retry-failed" in shown.stdout

    retried = ctl.reconcile(retry_failed=True)                     # on purpose: applied (and analysed) again
    assert len(engine.ops("create")) > created
    assert retried.reason == "RolledBack" and [h["result"] for h in retried.history[:3]] == \
        ["restored", "failed", "retried"]

    newer = repo.commit({"clouds/c/services/web.yaml": web("2025.2")}, "web 2025.2")
    asked = front.asked
    status = ctl.reconcile()
    assert (status.condition(), status.reason, status.last_applied_revision) == ("Ready", "Applied", newer)
    assert status.failed_revision is None and status.analysis == {}
    assert front.asked >= asked + 3                                 # analysed through the front, and passed
    data = json.loads(Status.path(ctl.state_dir, "c").read_text())
    assert data["failed_revision"] is None


def test_failures_up_to_the_threshold_pass_and_one_more_converges_back(cloud):
    repo, ctl, engine, front, base, flaky = cloud
    tolerant = repo.commit({"clouds/c/services/web.yaml": web("2025.2", max_failures=2)}, "web 2025.2")
    flaky["left"] = 2
    status = ctl.reconcile()
    assert (status.reason, status.last_applied_revision) == ("Applied", tolerant), status.render()
    assert flaky["left"] == 0
    repo.commit({"clouds/c/services/web.yaml": web("2025.2", max_failures=2, CHANGE="1")}, "web: a change")
    flaky["left"] = 3
    status = ctl.reconcile()
    assert status.reason == "RolledBack" and status.last_applied_revision == tolerant, status.render()
    assert (status.analysis["failures"], status.analysis["max_failures"]) == (3, 2)
    assert '{"error": "a blip"}' in status.analysis["answer"]


def test_a_failed_analysis_of_a_project_without_a_downgrade_holds_the_new_release(cloud):
    # Nova's fact (validators/upgrade_order.yaml no_downgrade): converging back would start
    # older services that refuse to run beside the newer ones' records (ServiceTooOld)
    repo, ctl, engine, front, base, _ = cloud

    def nova(release, **env):
        data = yaml.safe_load(web(release, **env))
        data["project"] = "nova"
        return yaml.safe_dump(data)
    repo.commit({"clouds/c/services/web.yaml": nova("2025.1")}, "web is Nova's")
    at_2025 = ctl.reconcile()
    assert at_2025.reason == "Applied", at_2025.render()
    bad = repo.commit({"clouds/c/services/web.yaml": nova("2025.2", PROXY_HEADERS="strict")}, "nova 2025.2")
    status = ctl.reconcile()
    assert (status.condition(), status.reason) == ("Stalled", "AnalysisFailed"), status.render()
    assert "NOT converged back: nova has no rollback once its new release ran" in status.message
    assert status.analysis["held"] and status.failed_revision == bad
    assert [env.get("PROXY_HEADERS") for env in engine.serving("web")] == ["strict", "strict"]   # held, not undone
