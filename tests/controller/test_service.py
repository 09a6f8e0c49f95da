"""`tidegate run`: the service loop, driven by real git repositories (commits made with the
git CLI, pushes, packed refs, worktrees, file:// remotes) and a recording controller
instead of engines."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from controller import service as service_mod
from controller.service import (AlreadyRunning, ControllerLock, LocalBranch, RemoteBranch, Service,
                                is_url, pending_commits)
from controller.status import Status

from .gitrepo import BareRepo, Repo, files, git, ks, service

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOUD = files({"keystone": service()})
LATENCY_LIMIT = 2.0


class Recorder:
    """Stands in for Controller: records each reconcile (when, which revision, drift check)."""

    def __init__(self, answer=None):
        self.cancel = threading.Event()
        self.calls: list[tuple[float, str, bool]] = []
        self._cond = threading.Condition()
        self.answer = answer or (lambda rev, drift: Status("c", ready=True, reason="Applied",
                                                          last_applied_revision=rev, last_attempted_revision=rev))

    def reconcile(self, rev="HEAD", *, drift_check=False) -> Status:
        with self._cond:
            self.calls.append((time.monotonic(), rev, drift_check))
            self._cond.notify_all()
        return self.answer(rev, drift_check)

    def record_retry(self, status, at) -> None:
        status.retry_at = at

    def revisions(self, drift=False) -> list[str]:
        return [rev for _, rev, d in self.calls if d == drift]

    def wait(self, predicate, timeout=5.0):
        """Wait until predicate(calls) holds; return the last call."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.calls):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls so far: {self.calls}")
                self._cond.wait(left)
            return self.calls[-1]

    def wait_for(self, rev: str, timeout=5.0, drift=False) -> float:
        """Wait for reconcile(rev); return when it was called."""
        self.wait(lambda calls: any(r == rev and d == drift for _, r, d in calls), timeout)
        return next(t for t, r, d in self.calls if r == rev and d == drift)


@contextmanager
def running(svc: Service):
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    try:
        yield svc
    finally:
        svc.stop()
        thread.join(10)
        assert not thread.is_alive(), "the service did not stop"


def follow(branch, recorder=None, **options) -> tuple[Service, Recorder]:
    recorder = recorder or Recorder()
    options.setdefault("poll", 30.0)
    options.setdefault("drift_interval", 0)
    return Service(recorder, branch, cloud="c", **options), recorder


def latency_of(recorder: Recorder, make_commit) -> float:
    """Seconds from the moment the commit exists (git returned) to its reconcile call."""
    sha = make_commit()
    committed = time.monotonic()
    return recorder.wait_for(sha) - committed


# -- local repositories: watchdog ---------------------------------------------------------
def test_new_commit_in_a_local_repository_is_reconciled_within_two_seconds(tmp_path):
    repo = Repo(tmp_path / "repo")
    first = repo.commit(CLOUD, "keystone 2025.1")
    svc, rec = follow(LocalBranch(repo.path, "main"))
    with running(svc):
        rec.wait_for(first)                           # start-up: converge to the tip at once
        latencies = [latency_of(rec, lambda i=i: repo.commit({"clouds/c/services/keystone.yaml": ks("2025.1", replicas=i + 2)}))
                     for i in range(3)]
    assert max(latencies) < LATENCY_LIMIT, latencies
    revisions = rec.revisions()
    assert revisions[0] == first and len(revisions) == len(set(revisions)) == 4


def test_push_to_a_bare_repository_is_seen(tmp_path):
    bare = BareRepo(tmp_path / "cloud.git")
    first = bare.push(CLOUD, "initial")
    svc, rec = follow(LocalBranch(bare.path, "main"))
    with running(svc):
        rec.wait_for(first)
        latency = latency_of(rec, lambda: bare.push({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2"))
    assert latency < LATENCY_LIMIT


def test_branch_moved_only_in_packed_refs_is_seen(tmp_path):
    # Some tools (JGit, Gerrit) update packed-refs instead of writing a loose ref.
    bare = BareRepo(tmp_path / "cloud.git")
    first = bare.push(CLOUD, "initial")
    second = bare.push({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2", branch="next")
    bare.git("update-ref", "refs/heads/main", first)
    bare.git("pack-refs", "--all", "--prune")
    assert not (bare.path / "refs/heads/main").exists()
    svc, rec = follow(LocalBranch(bare.path, "main"))
    with running(svc):
        rec.wait_for(first)

        def rewrite_packed_refs():
            packed = bare.path / "packed-refs"
            text = packed.read_text().replace(f"{first} refs/heads/main", f"{second} refs/heads/main")
            tmp = bare.path / "packed-refs.lock"
            tmp.write_text(text)
            os.replace(tmp, packed)
            return second
        assert latency_of(rec, rewrite_packed_refs) < LATENCY_LIMIT


def test_a_branch_with_a_slash_in_its_name_is_watched(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.git("checkout", "-q", "-b", "release/prod")
    first = repo.commit(CLOUD, "initial")
    svc, rec = follow(LocalBranch(repo.path, "release/prod"))
    with running(svc):
        rec.wait_for(first)
        assert latency_of(rec, lambda: repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")})) < LATENCY_LIMIT


def test_a_commit_made_in_a_linked_worktree_is_seen(tmp_path):
    repo = Repo(tmp_path / "repo")
    first = repo.commit(CLOUD, "initial")
    repo.git("checkout", "-q", "--detach")
    repo.git("worktree", "add", "-q", str(tmp_path / "wt"), "main")
    worktree = Repo.__new__(Repo)
    worktree.path = tmp_path / "wt"
    svc, rec = follow(LocalBranch(worktree.path, "main"))       # opened through the worktree
    with running(svc):
        rec.wait_for(first)
        assert latency_of(rec, lambda: worktree.commit({"clouds/c/services/keystone.yaml": ks("2025.2")})) < LATENCY_LIMIT


def test_commits_on_other_branches_are_ignored(tmp_path):
    repo = Repo(tmp_path / "repo")
    first = repo.commit(CLOUD, "initial")
    svc, rec = follow(LocalBranch(repo.path, "main"))
    with running(svc):
        rec.wait_for(first)
        repo.git("checkout", "-q", "-b", "feature")
        repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "not merged yet")
        time.sleep(0.8)
    assert rec.revisions() == [first]


# -- remote repositories: mirror and poll ----------------------------------------------------
def test_a_remote_url_is_mirrored_bare_under_the_state_dir_and_polled(tmp_path):
    upstream = Repo(tmp_path / "upstream")
    first = upstream.commit(CLOUD, "initial")
    mirror = tmp_path / "state" / "c" / "source.git"
    branch = RemoteBranch(f"file://{upstream.path}", "main", mirror)
    svc, rec = follow(branch, poll=0.3)
    with running(svc):
        rec.wait_for(first)
        latency = latency_of(rec, lambda: upstream.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}))
    assert latency < LATENCY_LIMIT
    assert git(mirror, "rev-parse", "--is-bare-repository") == "true"
    assert git(mirror, "rev-parse", "main") == upstream.head()
    assert branch.last_fetch is not None and "tidegate_source_last_fetch_timestamp_seconds" in svc.metrics()


def test_an_unreachable_remote_is_retried_and_the_service_keeps_running(tmp_path, caplog):
    upstream = Repo(tmp_path / "upstream")
    first = upstream.commit(CLOUD, "initial")
    branch = RemoteBranch(f"file://{upstream.path}", "main", tmp_path / "state/c/source.git")
    svc, rec = follow(branch, poll=0.2)
    with running(svc):
        rec.wait_for(first)
        os.rename(upstream.path, tmp_path / "gone")
        deadline = time.monotonic() + 5
        while branch.fetch_errors < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.rename(tmp_path / "gone", upstream.path)
        second = upstream.commit({"clouds/c/services/keystone.yaml": ks("2025.2")})
        rec.wait_for(second)
    assert branch.fetch_errors >= 2 and svc.metrics()["tidegate_source_fetch_errors_total"][2] >= 2
    assert "fetching main from file://" in caplog.text


def test_a_reused_mirror_follows_a_new_url(tmp_path):
    a, b = Repo(tmp_path / "a"), Repo(tmp_path / "b")
    a.commit(CLOUD, "a")
    tip_b = b.commit(CLOUD, "b")
    mirror = tmp_path / "state/c/source.git"
    RemoteBranch(f"file://{a.path}", "main", mirror).sync()
    moved = RemoteBranch(f"file://{b.path}", "main", mirror)
    moved.sync()
    assert moved.tip() == tip_b


def test_urls_and_paths_are_told_apart():
    assert is_url("https://git.example.net/cloud.git") and is_url("file:///srv/cloud.git")
    assert is_url("git@git.example.net:ops/cloud.git")
    assert not is_url("/srv/cloud.git") and not is_url("cloud") and not is_url("./a:b")


# -- which commits, in which order -------------------------------------------------------------
@pytest.fixture
def history(tmp_path):
    repo = Repo(tmp_path / "repo")
    base = repo.commit(CLOUD, "keystone 2025.1")
    a = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2")
    readme = repo.commit({"README.md": "docs\n"}, "docs only")
    b = repo.commit({"clouds/c/services/keystone.yaml": ks("2026.1")}, "keystone 2026.1")
    other = repo.commit({"clouds/other/cloud.yaml": "name: other\n"}, "another cloud")
    return repo, base, a, readme, b, other


def test_a_backlog_is_applied_one_commit_at_a_time_oldest_first(history):
    repo, base, a, readme, b, other = history
    import pygit2
    raw = pygit2.Repository(str(repo.path))
    # commits that do not touch clouds/c/ are skipped, except the tip (the revision that runs)
    assert pending_commits(raw, "c", base, other) == [a, b, other]
    assert pending_commits(raw, "c", a, b) == [b]
    assert pending_commits(raw, "c", None, other) == [other]           # first start: no replay
    assert pending_commits(raw, "c", other, other) == [other]          # restart: re-observe the tip
    assert pending_commits(raw, "c", "f" * 40, other) == [other]       # unknown revision


def test_the_service_resumes_from_the_last_attempted_revision(history):
    repo, base, a, readme, b, other = history
    svc, rec = follow(LocalBranch(repo.path, "main"), current=base)
    with running(svc):
        rec.wait_for(other)
    assert rec.revisions() == [a, b, other]


def test_a_force_push_goes_straight_to_the_new_tip(history):
    repo, base, a, readme, b, other = history
    svc, rec = follow(LocalBranch(repo.path, "main"), current=other)
    with running(svc):
        rec.wait_for(other)
        # history rewritten elsewhere, then main moved onto it in one step (as a force push does)
        repo.git("checkout", "-q", "-b", "rewrite", base)
        rewritten = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2", replicas=2)}, "rewritten")
        repo.git("branch", "-f", "main", "rewrite")
        rec.wait_for(rewritten)
    assert rec.revisions() == [other, rewritten]


# -- drift, retries, errors ----------------------------------------------------------------------
def test_drift_is_checked_at_the_interval_on_the_revision_last_attempted(tmp_path):
    repo = Repo(tmp_path / "repo")
    good = repo.commit(CLOUD, "good")
    bad = repo.commit({"clouds/c/services/keystone.yaml": "release: nonsense\n"}, "invalid")

    def answer(rev, drift):   # the invalid tip is rejected: the controller keeps `good` running
        return Status("c", stalled=True, reason="ValidationFailed", last_applied_revision=good,
                      last_attempted_revision=rev)
    svc, rec = follow(LocalBranch(repo.path, "main"), Recorder(answer), drift_interval=0.2)
    with running(svc):
        rec.wait(lambda calls: sum(1 for c in calls if c[2]) >= 2)
    assert rec.revisions() == [bad]
    # the tip, not `good`: reconcile(good) would record `good` as attempted and hide why `bad` is not running
    assert set(rec.revisions(drift=True)) == {bad}


def test_an_unavailable_engine_is_retried_with_backoff(tmp_path, monkeypatch):
    monkeypatch.setattr(service_mod, "RETRY_MIN", 0.1)
    repo = Repo(tmp_path / "repo")
    tip = repo.commit(CLOUD)
    answers = iter(["EngineUnavailable", "EngineUnavailable", "Applied"])

    def answer(rev, drift):
        return Status("c", ready=True, reason=next(answers, "Applied"), last_attempted_revision=rev)
    svc, rec = follow(LocalBranch(repo.path, "main"), Recorder(answer))
    with running(svc):
        rec.wait(lambda calls: len(calls) >= 3)
        time.sleep(0.5)
    t = [when for when, _, _ in rec.calls]
    assert len(rec.calls) == 3 and rec.revisions() == [tip] * 3     # then it stops retrying
    assert t[1] - t[0] >= 0.09 and t[2] - t[1] >= 0.19               # the delay doubles


def test_an_exception_in_one_reconcile_does_not_end_the_service(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(service_mod, "RETRY_MIN", 0.1)
    repo = Repo(tmp_path / "repo")
    tip = repo.commit(CLOUD)
    failures = iter([RuntimeError("engine exploded")])

    def answer(rev, drift):
        err = next(failures, None)
        if err:
            raise err
        return Status("c", ready=True, reason="Applied", last_attempted_revision=rev)
    svc, rec = follow(LocalBranch(repo.path, "main"), Recorder(answer))
    with running(svc):
        rec.wait(lambda calls: len(calls) >= 2)
    assert rec.revisions()[:2] == [tip, tip] and svc.exceptions == 1
    assert "engine exploded" in caplog.text


def test_stop_lets_the_current_step_finish_then_ends_the_loop(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.commit(CLOUD)
    finished = threading.Event()
    rec = Recorder()

    def answer(rev, drift):       # a rollout step that ends when cancelled, as the executor does
        rec.cancel.wait(10)
        finished.set()
        return Status("c", reconciling=True, reason="Interrupted", last_attempted_revision=rev)
    rec.answer = answer
    svc, _ = follow(LocalBranch(repo.path, "main"), rec)
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    rec.wait(lambda calls: len(calls) == 1)
    stopped = time.monotonic()
    svc.stop()
    thread.join(5)
    assert not thread.is_alive() and finished.is_set() and time.monotonic() - stopped < 2
    assert len(rec.calls) == 1


# -- one controller per cloud ---------------------------------------------------------------------
def test_a_second_controller_for_the_same_cloud_is_refused(tmp_path):
    with ControllerLock(tmp_path, "prod"):
        with pytest.raises(AlreadyRunning, match=rf"another controller \(pid {os.getpid()}\) already manages cloud prod"):
            ControllerLock(tmp_path, "prod").acquire()
        ControllerLock(tmp_path, "staging").acquire().release()        # other clouds are independent
    ControllerLock(tmp_path, "prod").acquire().release()               # released: free again


# -- the command, end to end (no engine is touched: every commit is unsigned) ----------------------
def tidegate(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "controller.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, **kw)


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def attempted(state: Path) -> str | None:
    try:
        return json.loads((state / "c" / "status.json").read_text()).get("last_attempted_revision")
    except (FileNotFoundError, ValueError):
        return None


def test_tidegate_run_refuses_unsigned_commits_serves_metrics_and_stops_on_sigterm(tmp_path):
    from tests.conftest import free_port
    from .gitrepo import allowed_signers, ssh_key

    repo = Repo(tmp_path / "repo")
    first = repo.commit(CLOUD, "unsigned")
    signers = allowed_signers(tmp_path / "allowed_signers", [("op@example.net", ssh_key(tmp_path / "keys"))])
    state, port = tmp_path / "state", free_port()
    args = ["run", "--repo", str(repo.path), "--cloud", "c", "--state-dir", str(state),
            "--allowed-signers", str(signers), "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
            "--drift-interval", "0", "--engine-url", "podman=unix:///nonexistent/podman.sock"]
    proc = tidegate(*args)
    try:
        wait_until(lambda: attempted(state) == first, what="the first commit to be attempted")
        second = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "unsigned too")
        committed = time.monotonic()
        wait_until(lambda: attempted(state) == second, what="the new commit to be attempted")
        assert time.monotonic() - committed < LATENCY_LIMIT

        status = json.loads((state / "c" / "status.json").read_text())
        assert status["stalled"] and status["reason"] == "ValidationFailed"
        assert status["findings"][0]["rule"] == "source.unsigned"
        assert status["findings"][0]["message"] == f"commit {second[:12]} is not signed"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'tidegate_stalled{cloud="c"} 1' in metrics and 'tidegate_ready{cloud="c"} 0' in metrics

        other = tidegate(*args)
        out, err = other.communicate(timeout=30)
        assert other.returncode == 2
        assert err.strip() == f"tidegate: another controller (pid {proc.pid}) already manages cloud c"

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_tidegate_run_reports_start_up_errors_in_one_line(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.commit(CLOUD)
    cases = [(["--repo", str(tmp_path / "missing"), "--cloud", "c"], "no such directory"),
             (["--repo", str(repo.path), "--cloud", "nope"], "no clouds/nope/cloud.yaml on main"),
             (["--repo", str(repo.path), "--cloud", "c", "--branch", "prod"], "no branch 'prod'"),
             (["--repo", str(repo.path), "--cloud", "c", "--require-signed"], "need --allowed-signers")]
    for extra, message in cases:
        proc = tidegate("run", "--state-dir", str(tmp_path / "state"), *extra)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err
