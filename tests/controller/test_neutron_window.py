"""Neutron's expand/contract, as its upgrade guide says: `neutron-db-manage upgrade --expand`
before the first new neutron-server, `--contract` only once every server runs the new
release — and the contract ends the rollback window exactly as Keystone's does: a revert
past it is refused by `tidegate check`, by the controller and by `tidegate rollback`.
Real git repositories, the controller on an in-memory engine (tests/controller/fakeengine.py)."""
from __future__ import annotations

import yaml

from controller import rollback as rb
from controller.reconcile import Controller
from controller.report import check
from controller.source import Source
from controller.status import Status

from .fakeengine import FakeEngine
from .gitrepo import Repo

SERVER = "clouds/c/services/neutron-server.yaml"
DHCP = "clouds/c/services/neutron-dhcp-agent.yaml"
EXPAND = ["neutron-db-manage", "upgrade", "--expand"]
CONTRACT = ["neutron-db-manage", "upgrade", "--contract"]


def server(release: str) -> str:
    return yaml.safe_dump({
        "project": "neutron", "release": release, "image": f"img/neutron-server:{release}",
        "command": ["neutron-server", "--config-file", "/etc/neutron/neutron.conf"], "replicas": 2,
        "health": {"type": "exec", "command": ["true"], "interval": 0.01},
        "upgrade": {"min_ready": 0, "jobs": {"expand": [{"command": EXPAND}], "contract": [{"command": CONTRACT}]}}})


def dhcp(release: str) -> str:
    return yaml.safe_dump({"project": "neutron", "role": "agent", "release": release,
                           "image": f"img/neutron-dhcp-agent:{release}", "command": ["neutron-dhcp-agent"],
                           "health": {"type": "exec", "command": ["true"], "interval": 0.01}})


def make(tmp_path, contract: str):
    """neutron 2025.1 applied, then neutron-server 2026.1 applied: (repo, controller, engine, upgrade)."""
    repo = Repo(tmp_path / "repo")
    cloud = {"name": "c", "hosts": {"local": {"engine": "podman"}}, "policy": {"contract": contract}}
    repo.commit({"clouds/c/cloud.yaml": yaml.safe_dump(cloud), SERVER: server("2025.1"), DHCP: dhcp("2025.1")},
                "neutron 2025.1")
    engine = FakeEngine(images=[f"img/neutron-{n}:{r}" for n in ("server", "dhcp-agent") for r in ("2025.1", "2026.1")])
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines={"local": engine})
    assert ctl.reconcile().condition() == "Ready"
    engine.calls.clear()
    up = repo.commit({SERVER: server("2026.1")}, "neutron-server 2026.1")
    status = ctl.reconcile()
    assert status.condition() == "Ready", status.render()
    return repo, ctl, engine, up


def commands(engine: FakeEngine) -> list:
    """The rollout as the engine saw it: job commands and container creations/removals, in order."""
    out = []
    for op, name, detail in engine.calls:
        if op == "job":
            out.append(list(detail.command))
        elif op in ("create", "remove"):
            out.append((op, name.split("-")[2]))            # c-neutron-server-… → "server"
    return out


def refused_revert(repo, up) -> list[dict]:
    revert = repo.git("revert", "--no-edit", up) and repo.git("rev-parse", "HEAD")
    report = check(str(repo.path), rev=revert, base=up, cloud="c")
    return [f for f in report["findings"] if f["severity"] == "error"]


def test_expand_before_the_first_new_server_and_contract_after_the_last_old_one(tmp_path):
    repo, ctl, engine, up = make(tmp_path, "after-rollout")
    seen = commands(engine)
    expand, contract = seen.index(EXPAND), seen.index(CONTRACT)
    creates = [i for i, s in enumerate(seen) if s == ("create", "server")]
    removes = [i for i, s in enumerate(seen) if s == ("remove", "server")]
    assert len(creates) == 2 and len(removes) == 2
    assert expand < creates[0] and contract > removes[-1]
    assert Status.load(ctl.state_dir, "c").contracted["neutron-server"]["revision"] == up


def test_a_revert_past_neutrons_contract_is_refused_by_check_controller_and_rollback(tmp_path):
    repo, ctl, engine, up = make(tmp_path, "after-rollout")
    assert not rb.prepare(Source(repo.path), "c", "neutron-server").allowed
    errors = refused_revert(repo, up)
    assert [(f["rule"], f["file"]) for f in errors] == [("transition.downgrade", SERVER)]
    assert "after the contract phase ran" in errors[0]["message"]
    engine.calls.clear()
    status = ctl.reconcile()
    assert status.reason == "ValidationFailed" and status.last_applied_revision == up
    assert not [op for op, _name, _d in engine.calls if op in ("create", "stop", "job")]   # nothing went back


def test_before_the_contract_the_revert_is_allowed_and_after_it_it_is_not(tmp_path):
    repo, ctl, engine, up = make(tmp_path, "manual")
    assert CONTRACT not in commands(engine)                   # manual: the window stays open
    assert set(Status.load(ctl.state_dir, "c").pending_contract) == {"neutron-server"}
    assert rb.prepare(Source(repo.path), "c", "neutron-server").allowed
    branch = repo.git("rev-parse", "HEAD")
    assert refused_revert(repo, up) == []                     # allowed while contract has not run
    repo.git("reset", "-q", "--hard", branch)
    ctl.contract("neutron-server")
    assert commands(engine)[-1] == CONTRACT
    errors = refused_revert(repo, up)
    assert [(f["rule"], f["file"]) for f in errors] == [("transition.downgrade", SERVER)]


def test_the_agent_of_the_project_may_still_be_reverted_on_its_own(tmp_path):
    """The server's contract closed the server's window; an agent upgraded afterwards (its
    own change, after that contract) goes back and forth with the server at 2026.1."""
    repo, ctl, engine, up = make(tmp_path, "after-rollout")
    agent_up = repo.commit({DHCP: dhcp("2026.1")}, "neutron-dhcp-agent 2026.1")
    assert ctl.reconcile().condition() == "Ready"
    revert = repo.git("revert", "--no-edit", agent_up) and repo.git("rev-parse", "HEAD")
    report = check(str(repo.path), rev=revert, base=agent_up, cloud="c")
    assert [f for f in report["findings"] if f["severity"] == "error"] == []
    assert ctl.reconcile().condition() == "Ready"


def test_an_agent_never_leads_neutron_server(tmp_path):
    repo, ctl, engine, up = make(tmp_path, "after-rollout")
    lead = repo.commit({DHCP: dhcp("2026.1"), SERVER: server("2025.1")}, "agent ahead of the server")
    report = check(str(repo.path), rev=lead, base=up, cloud="c")
    rules = {f["rule"] for f in report["findings"] if f["severity"] == "error"}
    assert "compat.agent-leads-control" in rules and "transition.downgrade" in rules
