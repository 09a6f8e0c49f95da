"""One judge of a change, never skipped: `tidegate check`, the controller and `tidegate
rollback` give one commit one verdict; the base a change is judged from is never silently
lost (a torn status, a deleted state dir, a commit force-pushed away); signed mode only
moves forward. Real git repositories; the one engine of the label test is an in-memory
fake of the engine interface's `list_containers` (all the base's rebuild reads)."""
from __future__ import annotations

import time

import pytest
import yaml

from controller.cli import main
from controller.desired import (LABEL_CLOUD, LABEL_COMMIT, LABEL_HASH, LABEL_MANAGED, LABEL_RELEASE,
                                LABEL_REPLICA, LABEL_ROLE, LABEL_SERVICE)
from controller.engines.base import ContainerInfo
from controller.reconcile import BaseUnknown, Controller
from controller.signing import Verifier
from controller.source import Source
from controller.status import Status, StatusUnreadable

from .gitrepo import Repo, allowed_signers, files, ks, service, ssh_key, ssh_signing

CLOUD = files({"keystone": service()})


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


def controller(repo, tmp_path, **kw) -> Controller:
    return Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines=kw.pop("engines", {}), **kw)


def rules(findings) -> set[str]:
    return {f.rule if hasattr(f, "rule") else f["rule"] for f in findings
            if (f.severity if hasattr(f, "severity") else f["severity"]) == "error"}


# -- one judge ------------------------------------------------------------------------------
def test_check_controller_and_rollback_judge_one_commit_alike(repo, tmp_path, capsys):
    """A head with a semantic error AND a skip-level jump: the controller used to skip the
    transition rules on any error, so it reported one finding where check reported two."""
    base = repo.commit(CLOUD, "keystone 2025.1")
    head = repo.commit({"clouds/c/services/keystone.yaml": ks("2026.2", depends_on=["nowhere"])},
                       "keystone 2026.2, depending on a service that does not exist")
    from controller.report import check
    by_check = rules(check(str(repo.path), rev=head, base=base, cloud="c")["findings"])
    by_controller = rules(controller(repo, tmp_path).target(head, base=base).findings)
    assert "transition.upgrade-path" in by_check
    assert by_controller == by_check


def test_renaming_a_service_file_does_not_hide_a_forbidden_jump(repo, tmp_path):
    base = repo.commit(CLOUD, "keystone 2025.1")
    head = repo.commit({"clouds/c/services/keystone.yaml": None,
                        "clouds/c/services/keystone-api.yaml": ks("2026.2")},
                       "rename keystone to keystone-api and jump to 2026.2")
    from controller.report import check
    report = check(str(repo.path), rev=head, base=base, cloud="c")
    jumps = [f for f in report["findings"] if f["rule"] == "transition.upgrade-path"]
    assert [f["file"] for f in jumps] == ["clouds/c/services/keystone-api.yaml"]
    assert "transition.upgrade-path" in rules(controller(repo, tmp_path).target(head, base=base).findings)


def test_a_rename_is_paired_by_renamed_from_then_by_shared_volumes():
    from tests.validators.helpers import transition_findings
    db = [{"name": "db", "path": "/var/lib/db"}]
    base = {"api": service(volumes=db), "other": service()}
    # two keystone services go, one comes: the one sharing its volume is its predecessor
    new = {"api-v2": service(release="2026.2", image="tidegate/keystone:2026.2", volumes=db)}
    found = [f for f in transition_findings(base, new) if f.rule == "transition.upgrade-path"]
    assert [(f.file, "(renamed" in f.message or "api-v2" in f.message) for f in found] == \
        [("clouds/c/services/api-v2.yaml", True)]
    # an explicit renamed_from wins over guessing
    named = {"api-v2": service(release="2025.2", image="tidegate/keystone:2025.2", renamed_from="other")}
    assert not [f for f in transition_findings(base, named) if f.rule == "transition.upgrade-path"]
    downgrade = {"api-v2": service(release="2024.2", image="tidegate/keystone:2024.2", renamed_from="api")}
    assert [f.rule for f in transition_findings(base, downgrade) if f.severity == "error"] == ["transition.downgrade"]


def test_a_base_that_does_not_load_is_an_error_not_a_skipped_transition(repo, tmp_path):
    base = repo.commit({**CLOUD, "clouds/c/services/keystone.yaml": "release: [\n"}, "broken main")
    head = repo.commit({"clouds/c/services/keystone.yaml": ks("2026.2")}, "jump from a broken base")
    from controller.report import check
    assert "transition.base-invalid" in rules(check(str(repo.path), rev=head, base=base, cloud="c")["findings"])
    assert not controller(repo, tmp_path).target(head, base=base).valid


# -- the base is never silently lost ----------------------------------------------------------
@pytest.mark.parametrize("content", [b'{"cloud": "c", "last_applied_revision": "ab', b"",
                                     b'["not", "a", "status"]',
                                     b'{"cloud": "c", "pending_contract": ["keystone"]}',
                                     b'{"cloud": "elsewhere"}'])
def test_a_torn_or_foreign_status_file_is_an_error_never_a_fresh_start(repo, tmp_path, capsys, content):
    repo.commit(CLOUD, "keystone 2025.1")
    state = tmp_path / "state"
    (state / "c").mkdir(parents=True)
    (state / "c" / "status.json").write_bytes(content)
    with pytest.raises(StatusUnreadable, match="move it aside"):
        Status.load(state, "c")
    code = main(["apply", "--repo", str(repo.path), "--cloud", "c", "--state-dir", str(state),
                 "--engine-url", "podman=unix:///nonexistent/podman.sock"])
    err = capsys.readouterr().err
    assert code == 2 and "status.json" in err and len(err.strip().splitlines()) == 1
    assert (state / "c" / "status.json").read_bytes() == content        # the evidence is kept


def test_status_is_written_atomically_and_readable_only_by_its_owner(tmp_path):
    status = Status("c", last_applied_revision="a" * 40)
    status.save(tmp_path)
    folder = tmp_path / "c"
    assert [p.name for p in folder.iterdir()] == ["status.json"]           # no temporary file left
    assert folder.joinpath("status.json").stat().st_mode & 0o077 == 0
    assert Status.load(tmp_path, "c").last_applied_revision == "a" * 40


class LabelledEngine:
    """What an engine's list_containers answers: replicas of cloud c at given commits."""

    def __init__(self, commits: list[str]):
        self.containers = [ContainerInfo(f"id{i}", f"c-keystone-{i}", "img", "img", {
            LABEL_MANAGED: "tidegate", LABEL_CLOUD: "c", LABEL_SERVICE: "keystone", LABEL_REPLICA: str(i),
            LABEL_HASH: "h", LABEL_RELEASE: "2025.1", LABEL_COMMIT: commit, LABEL_ROLE: "replica"}, "running")
            for i, commit in enumerate(commits)]

    def list_containers(self, labels):
        return [c for c in self.containers if all(c.labels.get(k) == v for k, v in labels.items())]


def test_a_lost_state_dir_is_rebuilt_from_the_commit_labels_of_what_runs(repo, tmp_path):
    old = repo.commit(CLOUD, "keystone 2025.1")
    applied = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2")
    jump = repo.commit({"clouds/c/services/keystone.yaml": ks("2026.2")}, "keystone 2026.2: a skip")
    hosts = yaml.safe_load(CLOUD["clouds/c/cloud.yaml"])["hosts"]
    # replicas run the applied commit (one still at an older one: a rollout never finished)
    engines = {h: LabelledEngine([applied, old] if i == 0 else []) for i, h in enumerate(hosts)}
    ctl = controller(repo, tmp_path, engines=engines)
    status = Status("c")                                     # no status file: a deleted state dir
    assert ctl.bases(status, jump) == (applied,)
    assert "transition.upgrade-path" in rules(ctl.target(jump, base=ctl.bases(status, jump)).findings)
    # nothing runs and nothing was applied: a new cloud, judged on its own
    assert controller(repo, tmp_path, engines={h: LabelledEngine([]) for h in hosts}).bases(status, jump) == ()


def test_a_last_applied_commit_that_is_gone_and_cannot_be_rebuilt_refuses_with_the_override(repo, tmp_path):
    repo.commit(CLOUD, "keystone 2025.1")
    head = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2")
    hosts = yaml.safe_load(CLOUD["clouds/c/cloud.yaml"])["hosts"]
    gone = "f" * 40                                          # force-pushed away and garbage-collected
    status = Status("c", last_applied_revision=gone)
    with pytest.raises(BaseUnknown, match="--assume-base"):
        controller(repo, tmp_path, engines={h: LabelledEngine([]) for h in hosts}).bases(status, head)
    with pytest.raises(BaseUnknown, match="not in the repository"):
        controller(repo, tmp_path, engines={h: LabelledEngine([gone]) for h in hosts}).bases(status, head)
    # the reconcile stalls and says why; nothing is applied
    status.save(tmp_path / "state")
    result = controller(repo, tmp_path, engines={h: LabelledEngine([]) for h in hosts}).reconcile(head)
    assert (result.condition(), result.reason) == ("Stalled", "BaseUnknown")
    assert result.last_applied_revision == gone and "--assume-base" in result.message
    # the operator's explicit override names the base
    named = controller(repo, tmp_path, engines={}, assume_base="HEAD~1")
    assert named.bases(status, head) == (repo.git("rev-parse", "HEAD~1"),)


def test_a_commit_that_adds_a_host_gets_its_engine_without_a_restart(repo, tmp_path):
    one = repo.commit(CLOUD, "one host")
    cloud = yaml.safe_load(CLOUD["clouds/c/cloud.yaml"])
    cloud["hosts"]["h3"] = {"engine": "podman", "url": "unix:///nonexistent/h3.sock"}
    two = repo.commit({"clouds/c/cloud.yaml": yaml.safe_dump(cloud)}, "a third host")
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state",
                     engine_urls={"podman": "unix:///nonexistent/p.sock", "docker": "unix:///nonexistent/d.sock"})
    first = ctl.engines(ctl.target(one).desired)
    second = ctl.engines(ctl.target(two).desired)
    assert sorted(first) == ["h1", "h2"] and sorted(second) == ["h1", "h2", "h3"]
    assert second["h1"] is first["h1"]                       # an unchanged host keeps its connection


# -- signed mode moves forward -----------------------------------------------------------------
def test_signed_mode_refuses_a_tip_that_does_not_descend_from_the_last_applied_commit(repo, tmp_path):
    key = ssh_key(tmp_path / "keys")
    signers = allowed_signers(tmp_path / "allowed_signers", [("op@example.net", key)])
    old = repo.commit(CLOUD, "keystone 2025.1", sign=ssh_signing(key))
    applied = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "2025.2", sign=ssh_signing(key))
    ctl = controller(repo, tmp_path, verify_commit=Verifier(allowed_signers=str(signers)))
    back = ctl.target(old, base=applied)                     # an older signed commit force-pushed as main
    assert [f.rule for f in back.findings] == ["source.not-descendant"] and not back.valid
    repo.git("checkout", "-q", "-b", "side", old)
    side = repo.commit({"README": "unmerged\n"}, "an unmerged signed branch", sign=ssh_signing(key))
    assert [f.rule for f in ctl.target(side, base=applied).findings] == ["source.not-descendant"]
    repo.git("checkout", "-q", "main")
    revert = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.1")}, "Revert", sign=ssh_signing(key))
    assert not rules(ctl.target(revert, base=applied).findings) - {"transition.downgrade"}


def test_a_key_past_its_valid_before_no_longer_signs_whatever_date_the_commit_claims(repo, tmp_path):
    key = ssh_key(tmp_path / "keys")
    yesterday = time.strftime("%Y%m%d", time.gmtime(time.time() - 86400))
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'op@example.net valid-before="{yesterday}" {(tmp_path / "keys" / "key.pub").read_text()}')
    backdated = {"GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z", "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z"}
    sha = repo.commit(CLOUD, "signed after the key expired, dated before", sign=ssh_signing(key), env=backdated)
    reason = Verifier(allowed_signers=str(signers))(Source(repo.path).commit(sha))
    assert reason is not None and sha[:12] in reason


def test_a_git_note_that_cannot_be_written_is_kept_in_status_and_shown(repo, tmp_path):
    """Before: the error went into status.message, which the next line overwrote with
    "running …": nobody saw that the record of the applied commit was missing."""
    sha = repo.commit(CLOUD, "keystone 2025.1")
    ctl = controller(repo, tmp_path)
    desired = ctl.target(sha).desired
    lock = repo.path / ".git" / "refs" / "notes" / "tidegate.lock"      # another writer holds the ref
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    status = Status("c", last_applied_revision=sha, last_applied_at="2026-12-02T06:00:00Z")
    ctl._note(status, desired, None)
    assert status.note_error.startswith(f"could not write the git note on {sha[:12]}")
    assert status.note_error in status.render()
    lock.unlink()
    ctl._note(status, desired, None)
    assert status.note_error is None and Source(repo.path).record(sha, "c")["result"] == "applied"
