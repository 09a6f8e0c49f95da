"""The executor on an in-memory engine (tests/controller/fakeengine.py): what it asks of an
engine, in which order, and what stays serving when a step fails — however it fails."""
from __future__ import annotations

import errno
from dataclasses import replace

import pytest
import yaml

from controller.desired import desired_state
from controller.engines.base import ExecResult
from controller.execute import Executor
from controller.observe import observe
from controller.plan import plan
from validators.load import load_cloud
from validators.tree import MemoryTree

from .fakeengine import FakeEngine

CLOUD = {"name": "c", "hosts": {"local": {"engine": "podman"}}}


def web(release="2025.1", **kw):
    data = {"project": "web", "release": release, "image": f"img:{release}", "replicas": 2,
            "health": {"type": "exec", "command": ["true"], "interval": 0.01},
            "upgrade": {"min_ready": 0}}
    data.update(kw)
    return data


def desired(files: dict | None = None, commit="c0", **services):
    tree = {"clouds/c/cloud.yaml": yaml.safe_dump(CLOUD)}
    tree.update({f"clouds/c/services/{n}.yaml": yaml.safe_dump(d) for n, d in services.items()})
    tree.update({f"clouds/c/{path}": text for path, text in (files or {}).items()})
    loaded = load_cloud(MemoryTree(tree), "c")
    assert loaded.cloud is not None, loaded.findings
    return desired_state(loaded.cloud, loaded.tree, commit)


def converge(engine: FakeEngine, des, _unused=None, **kw):
    observed, errors = observe({"local": engine}, "c")
    assert not errors
    return Executor({"local": engine}, des, **kw).run(plan(des, observed))


@pytest.fixture
def engine():
    return FakeEngine(images=("img:2025.1", "img:2025.2"))


@pytest.fixture
def deployed(engine, tmp_path):
    outcome = converge(engine, desired(web=web()), tmp_path / "config")
    assert outcome.ok, outcome.summary()
    engine.calls.clear()
    return engine


def test_an_unexpected_error_fails_its_step_and_the_old_replicas_keep_serving(deployed, tmp_path):
    before = deployed.running()
    deployed.fail["create"] = TypeError("create() got an unexpected keyword argument 'mounts'")
    outcome = converge(deployed, desired(web=web("2025.2")), tmp_path / "config")
    assert not outcome.ok and not outcome.temporary and outcome.failed_step.action == "create"
    assert outcome.error == "TypeError: create() got an unexpected keyword argument 'mounts'"
    assert "\n" not in outcome.summary()
    assert deployed.running() == before and deployed.ops("stop") == []


def test_a_journal_that_cannot_be_written_stops_the_rollout_before_an_old_replica_goes(deployed, tmp_path):
    before = deployed.running()

    def journal(step):
        if step.action == "create":
            raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/tidegate/status.json")
    outcome = converge(deployed, desired(web=web("2025.2")), tmp_path / "config", journal=journal)
    assert not outcome.ok and not outcome.temporary
    assert outcome.error == "done, but not recorded: No space left on device: /var/lib/tidegate/status.json"
    assert deployed.running() == before and len(deployed.containers) == 2    # the successor was discarded


def lb(config="global\n", **kw):
    files = {"config/lb/haproxy.cfg": config}
    return files, web(replicas=1, upgrade={"strategy": "recreate", "min_ready": 0},
                      config=[{"source": "config/lb/haproxy.cfg", "target": "/etc/haproxy/haproxy.cfg"}], **kw)


def test_config_files_travel_in_the_create_spec_not_on_the_controllers_disk(engine, tmp_path, monkeypatch):
    """A remote host never sees the controller's filesystem: the bytes of each config file
    go to the engine with the container (put in before it starts), none under a path."""
    monkeypatch.chdir(tmp_path)
    files, spec = lb("global\n  maxconn 100\n")
    assert converge(engine, desired(files, lb=spec), tmp_path / "config").ok
    [created] = [spec for op, _, spec in engine.calls if op == "create"]
    assert [(f.target, f.content, f.mode) for f in created.files] == \
        [("/etc/haproxy/haproxy.cfg", b"global\n  maxconn 100\n", 0o644)]
    assert created.mounts == () and list(tmp_path.iterdir()) == []


def test_a_config_target_that_names_a_directory_fails_before_an_old_replica_stops(engine, tmp_path):
    files, spec = lb()
    assert converge(engine, desired(files, lb=spec), tmp_path / "config").ok
    before = engine.running()
    # `tidegate check` refuses such a target (schema.pattern); the executor does not rely on it
    des = desired(files, lb=spec)
    ds = des.services["lb"]
    bad = replace(ds, config=(replace(ds.config[0], target="/etc/haproxy/"),), hash=ds.hash[::-1])
    des = replace(des, services={**des.services, "lb": bad})
    outcome = converge(engine, des, tmp_path / "config")
    assert outcome.error == "config config/lb/haproxy.cfg: target /etc/haproxy/ names a directory, not a file"
    assert engine.running() == before and engine.ops("stop") == []


class CrashLoop(FakeEngine):
    """Successors (image img:2025.2) crash and are restarted by their restart policy
    between any two looks: always "running" when inspected, never answering a probe."""

    def inspect(self, name_or_id):
        info = super().inspect(name_or_id)
        if info is not None and info.image == "img:2025.2" and info.running:
            self._set(replace(info, restart_count=info.restart_count + 1, exit_code=1))
            return self._get(name_or_id)
        return info

    def exec(self, name_or_id, command, *, environment=None, timeout=None):
        if self._get(name_or_id).image == "img:2025.2":
            return ExecResult(1, "connection refused")
        return super().exec(name_or_id, command, environment=environment, timeout=timeout)


def test_a_successor_in_a_crash_loop_fails_its_gate_at_once_and_the_old_replicas_stay(tmp_path):
    engine = CrashLoop(images=("img:2025.1", "img:2025.2"))
    assert converge(engine, desired(web=web()), tmp_path / "config").ok
    before = engine.running()
    health = {"type": "exec", "command": ["true"], "interval": 0.01, "start_period": 2}
    outcome = converge(engine, desired(web=web("2025.2", health=health)), tmp_path / "config")
    assert outcome.failed_step.action == "wait-healthy" and not outcome.temporary
    assert "container exited and was restarted (1 restart(s) during its health gate)" in outcome.error, outcome.error
    assert engine.running() == before and engine.ops("stop") == [outcome.failed_step.container]


def test_a_successor_joins_its_service_alias_only_after_its_health_gate(deployed, tmp_path):
    outcome = converge(deployed, desired(web=web("2025.2")), tmp_path / "config")
    assert outcome.ok, outcome.summary()
    created = [spec for op, _, spec in deployed.calls if op == "create"]
    assert [spec.aliases for spec in created] == [(), ()]          # on the network by its own name only
    for n, spec in enumerate(created):
        order = [(op, detail) for op, name, detail in deployed.calls if name in (spec.name, f"id-{spec.name}")]
        assert order == [("create", spec), ("start", None), ("exec", ("true",)),          # its gate,
                         ("disconnect", "tidegate-c"), ("connect", ("web", f"web-{n}"))]  # then the alias
        info = deployed.inspect(spec.name)
        assert info.networks["tidegate-c"][1] == ("web", f"web-{n}")
    first_stop = next(i for i, (op, _, _) in enumerate(deployed.calls) if op == "stop")
    first_join = next(i for i, (op, _, _) in enumerate(deployed.calls) if op == "connect")
    assert first_join < first_stop


def test_a_successor_that_fails_its_gate_never_joins_its_alias(deployed, tmp_path):
    health = {"type": "exec", "command": ["false"], "interval": 0.01, "start_period": 0}
    deployed.exec = lambda name, command, **kw: ExecResult(1, "500 Internal Server Error")
    outcome = converge(deployed, desired(web=web("2025.2", health=health)), tmp_path / "config")
    assert outcome.failed_step.action == "wait-healthy" and "500 Internal Server Error" in outcome.error
    assert deployed.ops("connect") == [] and deployed.ops("stop") == [outcome.failed_step.container]


def test_a_successor_that_comes_back_with_another_address_fails_closed(deployed, tmp_path):
    """docker cannot ask for an address: if another container took the successor's while
    it re-joined, connections it opened during its gate would hang. Retried later."""
    join = deployed.connect
    deployed.connect = lambda name, network, aliases=(), address=None: join(name, network, aliases, "10.9.9.9")
    before = deployed.running()
    outcome = converge(deployed, desired(web=web("2025.2")), tmp_path / "config")
    assert outcome.temporary and "came back on tidegate-c as 10.9.9.9, not 10.0.0." in outcome.error
    assert deployed.running() == before
