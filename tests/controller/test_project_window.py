"""The rollback window belongs to the project: services of one project share a database,
so a contract of any of them closes the window for all; and a service whose only job is
a contract job owes it after its rollout. Real git repositories, the controller on an
in-memory engine (tests/controller/fakeengine.py)."""
from __future__ import annotations

import json

import pytest
import yaml

from controller import rollback as rb
from controller.reconcile import Controller, ContractRefused
from controller.source import Source
from controller.status import Status

from .fakeengine import FakeEngine
from .gitrepo import Repo

CLOUD = {"name": "c", "hosts": {"local": {"engine": "podman"}}}
API = "clouds/c/services/cinder-api.yaml"
SCHED = "clouds/c/services/cinder-scheduler.yaml"
RELEASES = ("2025.1", "2025.2")


def cinder(name: str, release: str, contract: bool) -> str:
    data = {"project": "cinder", "release": release, "image": f"img/{name}:{release}", "replicas": 1}
    if contract:
        data["upgrade"] = {"jobs": {"contract": [{"command": ["cinder-manage", "db", "online_data_migrations"]}]}}
    return yaml.safe_dump(data)


def state(release: str) -> dict:
    """cinder-api (no job) and cinder-scheduler (a contract job only) at `release`."""
    return {API: cinder("cinder-api", release, False), SCHED: cinder("cinder-scheduler", release, True)}


@pytest.fixture
def cloud(tmp_path):
    """A manual-contract cloud applied at 2025.1, then both cinder services upgraded to 2025.2
    in one commit and applied: (repo, controller, upgrade commit)."""
    repo = Repo(tmp_path / "repo")
    policy = {**CLOUD, "policy": {"contract": "manual"}}
    repo.commit({"clouds/c/cloud.yaml": yaml.safe_dump(policy), **state("2025.1")}, "cinder 2025.1")
    engine = FakeEngine(images=[f"img/{n}:{r}" for n in ("cinder-api", "cinder-scheduler") for r in RELEASES])
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines={"local": engine})
    assert ctl.reconcile().condition() == "Ready"
    up = repo.commit(state("2025.2"), "cinder 2025.2")
    assert ctl.reconcile().condition() == "Ready"
    return repo, ctl, up, engine


def test_a_service_whose_only_job_is_contract_owes_it_after_its_rollout(cloud):
    repo, ctl, up, engine = cloud
    status = Status.load(ctl.state_dir, "c")
    assert set(status.pending_contract) == {"cinder-scheduler"}
    assert "rollback window open (contract not run): cinder-scheduler" in status.render()
    assert not [name for name in engine.ops("job") if "contract" in name]    # manual: not yet
    with pytest.raises(ContractRefused, match="cinder-api: no contract phase is owed"):
        ctl.contract("cinder-api")
    done = ctl.contract("cinder-scheduler")
    assert done.pending_contract == {} and done.contracted["cinder-scheduler"]["revision"] == up
    assert len([name for name in engine.ops("job") if "contract" in name]) == 1
    note = json.loads(repo.git("notes", "--ref", "tidegate", "show", up))
    assert note["clouds"]["c"]["contract"] == ["cinder-scheduler"]


def test_after_rollout_a_contract_only_service_contracts_in_the_rollout(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.commit({"clouds/c/cloud.yaml": yaml.safe_dump(CLOUD), **state("2025.1")}, "cinder 2025.1")
    engine = FakeEngine(images=[f"img/{n}:{r}" for n in ("cinder-api", "cinder-scheduler") for r in RELEASES])
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines={"local": engine})
    ctl.reconcile()
    repo.commit(state("2025.2"), "cinder 2025.2")
    status = ctl.reconcile()
    assert status.condition() == "Ready" and status.pending_contract == {}
    assert set(status.contracted) == {"cinder-scheduler"}


def test_a_contract_of_one_service_closes_the_rollback_window_of_its_project(cloud, capsys):
    repo, ctl, up, _ = cloud
    source = Source(repo.path)
    before = rb.prepare(source, "c", "cinder-api")
    assert before.allowed, before.findings                          # window open: rollback allowed
    ctl.contract("cinder-scheduler")
    prior = source.prior_states("c", "HEAD", ["cinder-api"])["cinder-api"]
    assert prior.contract_ran and prior.contract_by == "cinder-scheduler"
    after = rb.prepare(source, "c", "cinder-api")
    assert not after.allowed
    [finding] = [f for f in after.findings if f.severity == "error"]
    assert finding.rule == "transition.downgrade" and "contract phase of cinder-scheduler" in finding.message


def test_the_controllers_status_alone_closes_the_window_of_the_project(cloud, tmp_path):
    """An operator's clone without the notes: the status file of the controller knows."""
    repo, ctl, up, _ = cloud
    ctl.contract("cinder-scheduler")
    repo.git("update-ref", "-d", "refs/notes/tidegate")
    source = Source(repo.path)
    assert rb.prepare(source, "c", "cinder-api").allowed                       # no note, no status
    status = Status.load(ctl.state_dir, "c")
    refused = rb.prepare(source, "c", "cinder-api", status=status)
    assert not refused.allowed and "per the controller's status" in refused.findings[0].message
    assert "contract phase of cinder-scheduler" in refused.findings[0].message


def test_the_controller_refuses_a_revert_of_the_project_after_a_contract(cloud):
    repo, ctl, up, _ = cloud
    ctl.contract("cinder-scheduler")
    repo.git("revert", "--no-edit", up)
    status = ctl.reconcile()
    assert status.reason == "ValidationFailed"
    assert {f["rule"] for f in status.findings} == {"transition.downgrade"}
    assert {f["file"] for f in status.findings} == {API, SCHED}


def test_a_service_of_another_project_keeps_its_window(tmp_path):
    repo = Repo(tmp_path / "repo")
    glance = yaml.safe_dump({"project": "glance", "release": "2025.1", "image": "img/glance:2025.1"})
    repo.commit({"clouds/c/cloud.yaml": yaml.safe_dump(CLOUD), **state("2025.1"),
                 "clouds/c/services/glance.yaml": glance}, "base")
    up = repo.commit({"clouds/c/services/glance.yaml": glance.replace("2025.1", "2025.2")}, "glance 2025.2")
    repo.git("notes", "--ref", "tidegate", "add", "-m",
             json.dumps({"clouds": {"c": {"contract": ["cinder-scheduler"]}}}), up)
    prior = Source(repo.path).prior_states("c", "HEAD", ["glance"])["glance"]
    assert prior.commit == up and not prior.contract_ran


def test_a_half_finished_contract_holds_every_service_of_the_project(cloud):
    """A contract that started and did not finish (status.contract_started): a revert of
    the project is refused for both services, not only for the one whose job began."""
    repo, ctl, up, _ = cloud
    status = Status.load(ctl.state_dir, "c")
    status.contract_started["cinder-scheduler"] = {"hash": status.pending_contract["cinder-scheduler"],
                                                   "release": "2025.2", "revision": up, "at": "now"}
    status.save(ctl.state_dir)
    repo.git("revert", "--no-edit", up)
    status = ctl.reconcile()
    assert status.reason == "ValidationFailed"
    files = {f["file"] for f in status.findings if f["rule"] == "transition.downgrade"}
    assert files == {API, SCHED}
