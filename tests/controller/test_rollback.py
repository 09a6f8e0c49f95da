"""`tidegate rollback`: one service back to its state before its last change, as a new
commit — on real repositories (checked out or bare), validated like any pull request."""
from __future__ import annotations

import json

import pygit2
import pytest
import yaml

from controller import rollback as rb
from controller.cli import main
from controller.report import check
from controller.signing import verify_commit
from controller.source import Source
from controller.status import Status
from validators.load import RepoError

from .gitrepo import BareRepo, Repo, allowed_signers, files, ks, service, ssh_key

KEYSTONE = "clouds/c/services/keystone.yaml"
GLANCE = "clouds/c/services/glance.yaml"


@pytest.fixture(autouse=True)
def no_user_git_config(monkeypatch):
    # the command runs git with the caller's environment: keep the tester's ~/.gitconfig out
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def glance(**fields) -> str:
    return yaml.safe_dump(service(project="glance", image="tidegate/glance:2025.1", **fields))


def history(repo) -> tuple[str, str]:
    """keystone 2025.1 → 2025.2 (`up`), then an unrelated glance change on top."""
    commit = repo.commit if isinstance(repo, Repo) else repo.push
    base = commit({**files({"keystone": service()}), GLANCE: glance()}, "initial: keystone 2025.1")
    up = commit({KEYSTONE: ks("2025.2")}, "keystone 2025.2")
    commit({GLANCE: glance(replicas=2)}, "glance: two replicas")
    return base, up


@pytest.fixture
def repo(tmp_path):
    r = Repo(tmp_path / "repo")
    r.base, r.up = history(r)
    return r


def rollback(repo_path, *extra, state_dir=None, capsys=None):
    argv = ["rollback", "--repo", str(repo_path), "--cloud", "c", "--service", "keystone",
            "--state-dir", str(state_dir or repo_path.parent / "no-state"), *extra]
    code = main(argv)
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def show(repo, rev, path) -> str:
    return repo.git("show", f"{rev}:{path}")


def test_rollback_restores_the_service_file_and_touches_nothing_else(repo, capsys):
    head = repo.head()
    code, out, err = rollback(repo.path, "--yes", capsys=capsys)
    assert code == 0, err
    new = repo.head()
    assert repo.head("HEAD~1") == head
    assert repo.git("diff", "--name-only", head, new) == KEYSTONE
    assert show(repo, new, KEYSTONE) == show(repo, repo.base, KEYSTONE)
    subject, *body = repo.git("log", "-1", "--format=%B").splitlines()
    assert subject == f"Roll back keystone to 2025.1 (reverts {repo.up[:12]})"
    assert f"Tidegate-Rollback-Of: {repo.up}" in body
    assert f"committed {new[:12]} on main" in out
    # the checked-out branch: index and working tree follow, nothing left dirty
    assert (repo.path / KEYSTONE).read_text() == show(repo, repo.base, KEYSTONE) + "\n"
    assert repo.git("status", "--porcelain") == ""
    # and it is exactly what the validators accept as a rollback
    report = check(str(repo.path), rev=new, base=head, cloud="c")
    assert report["summary"]["error"] == 0, report["findings"]


def test_rollback_in_a_bare_repository(tmp_path, capsys):
    bare = BareRepo(tmp_path / "cloud.git")
    base, up = history(bare)
    head = bare.head()
    code, out, err = rollback(bare.path, "--yes", capsys=capsys)
    assert code == 0, err
    assert bare.head("main~1") == head
    assert bare.git("show", f"main:{KEYSTONE}") == bare.git("show", f"{base}:{KEYSTONE}")
    assert bare.git("reflog", "show", "-1", "--format=%gs", "main").startswith("tidegate rollback: Roll back keystone")


def test_a_branch_that_is_not_checked_out_is_updated_without_touching_the_working_tree(repo, capsys):
    repo.git("branch", "prod")
    repo.commit({"README.md": "work in progress on main\n"}, "docs")
    main_before, prod_before = repo.head("main"), repo.head("prod")
    code, _, err = rollback(repo.path, "--branch", "prod", "--yes", capsys=capsys)
    assert code == 0, err
    assert repo.head("main") == main_before and repo.head("prod~1") == prod_before
    assert (repo.path / KEYSTONE).read_text() == ks("2025.2")     # main's files, untouched
    assert repo.git("status", "--porcelain") == ""


def test_a_dirty_working_tree_is_refused(repo, capsys):
    head = repo.head()
    (repo.path / GLANCE).write_text(glance(replicas=5))
    code, _, err = rollback(repo.path, "--yes", capsys=capsys)
    assert code == 2 and "uncommitted changes" in err and len(err.strip().splitlines()) == 1
    assert repo.head() == head


def test_rollback_after_the_contract_phase_ran_is_refused(repo, capsys):
    head = repo.head()
    note = json.dumps({"clouds": {"c": {"result": "applied", "contract": ["keystone"]}}})
    repo.git("notes", "--ref", "tidegate", "add", "-m", note, repo.up)
    code, out, err = rollback(repo.path, "--yes", capsys=capsys)
    assert code == 1
    assert "[transition.downgrade]" in out and "contract phase" in out
    assert err.startswith("tidegate: refusing to roll back keystone:") and "contract phase" in err
    assert repo.head() == head


def test_a_contract_recorded_only_in_the_controllers_status_also_refuses(repo, tmp_path, capsys):
    # a remote's notes live in the controller's mirror, not in the operator's clone
    state = tmp_path / "state"
    Status("c", contracted={"keystone": {"hash": "x", "revision": repo.head(), "at": "2026-01-01T00:00:00Z"}}).save(state)
    head = repo.head()
    code, out, _ = rollback(repo.path, "--yes", state_dir=state, capsys=capsys)
    assert code == 1 and "per the controller's status of cloud c" in out
    assert repo.head() == head
    Status("c", contracted={"keystone": {"hash": "x", "revision": repo.base}}).save(state)   # an older upgrade's contract
    assert rollback(repo.path, "--dry-run", state_dir=state, capsys=capsys)[0] == 0


def test_rolling_back_a_rollback_is_refused(repo, capsys):
    assert rollback(repo.path, "--yes", capsys=capsys)[0] == 0
    head = repo.head()
    code, out, _ = rollback(repo.path, "--yes", capsys=capsys)
    assert code == 1 and "[rollback.of-rollback]" in out and repo.head() == head


def test_rolling_back_a_git_revert_would_upgrade_and_is_refused(repo, capsys):
    repo.git("revert", "--no-edit", repo.up)
    code, out, _ = rollback(repo.path, "--dry-run", capsys=capsys)
    assert code == 1 and "[rollback.would-upgrade]" in out


def test_unknown_service_or_branch_is_a_one_line_error(repo, capsys):
    code = main(["rollback", "--repo", str(repo.path), "--cloud", "c", "--service", "nova", "--yes"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "tidegate: clouds/c/services/nova.yaml: no change to roll back on main (the service never existed there)"
    code, _, err = rollback(repo.path, "--branch", "nope", "--yes", capsys=capsys)
    assert code == 2 and "no branch 'nope'" in err


def test_without_yes_and_without_a_terminal_nothing_is_committed(repo, capsys):
    head = repo.head()
    code, out, err = rollback(repo.path, capsys=capsys)
    assert code == 2 and "re-run with --yes" in err and repo.head() == head
    assert "-release: '2025.2'" in out and "+release: '2025.1'" in out      # the diff was shown


def test_dry_run_with_json_is_a_stable_document(repo, capsys):
    head = repo.head()
    code, out, _ = rollback(repo.path, "--dry-run", "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == 0 and repo.head() == head
    assert doc["version"] == 1 and doc["allowed"] and doc["commit"] is None
    assert (doc["head"], doc["reverts"], doc["release_from"], doc["release_to"]) == (head, repo.up, "2025.2", "2025.1")


def test_other_files_of_the_reverted_commit_are_named(repo, capsys):
    conf = "clouds/c/config/keystone/keystone.conf"
    repo.commit({conf: "[DEFAULT]\n"}, "keystone config")
    up = repo.commit({KEYSTONE: ks("2025.2", replicas=2), conf: "[DEFAULT]\ndebug = true\n"}, "keystone: 2 replicas, debug")
    code, out, _ = rollback(repo.path, "--dry-run", capsys=capsys)
    assert code == 0 and f"note: {up[:12]} also changed {conf}, which stays as it is" in out


def test_rolling_back_a_new_service_removes_it(repo, capsys):
    repo.commit({"clouds/c/services/nova.yaml": yaml.safe_dump(service(project="nova", image="tidegate/nova:2025.1"))}, "add nova")
    code = main(["rollback", "--repo", str(repo.path), "--cloud", "c", "--service", "nova", "--yes",
                 "--state-dir", str(repo.path.parent / "none")])
    out = capsys.readouterr().out
    assert code == 0 and "[transition.service-removed]" in out
    assert not (repo.path / "clouds/c/services/nova.yaml").exists()
    assert repo.git("log", "-1", "--format=%s").startswith("Roll back nova: remove it (reverts ")


def test_a_branch_that_moves_meanwhile_is_not_overwritten(tmp_path):
    bare = BareRepo(tmp_path / "cloud.git")
    history(bare)
    source = Source(bare.path)
    plan = rb.prepare(source, "c", "keystone", "main")
    moved = bare.push({GLANCE: glance(replicas=3)}, "someone else merged")
    with pytest.raises(RepoError, match="moved while rolling back"):
        rb.commit(source, plan)
    assert bare.head() == moved


def test_the_rollback_is_signed_when_the_repository_signs_commits(repo, tmp_path, capsys):
    key = ssh_key(tmp_path / "keys")
    signers = allowed_signers(tmp_path / "allowed_signers", [("op@example.net", key)])
    repo.git("config", "gpg.format", "ssh")
    repo.git("config", "user.signingkey", str(key))
    repo.git("config", "commit.gpgsign", "true")
    code, _, err = rollback(repo.path, "--yes", capsys=capsys)
    assert code == 0, err
    commit = pygit2.Repository(str(repo.path)).get(repo.head())
    assert verify_commit(commit, allowed_signers=str(signers)) is None
