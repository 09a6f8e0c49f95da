"""`tidegate plan|apply|status|down|contract|run` refuse bad input before touching anything,
in one line with the README's exit codes: an invalid cloud name creates no lock or state
file anywhere; no answering engine is an environment error (2), not a failed change (1)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.validators.helpers import GitRepo, files, service

ROOT = Path(__file__).resolve().parents[2]
NO_ENGINE = ["--engine-url", "podman=unix:///nonexistent/podman.sock",
             "--engine-url", "docker=unix:///nonexistent/docker.sock"]


def tidegate(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def repo(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(files({"keystone": service()}))
    return repo


def everything_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("command", [["plan"], ["apply"], ["down"], ["contract", "--service", "keystone"],
                                     ["status"], ["run", "--poll", "1"]])
@pytest.mark.parametrize("cloud", ["../x", "../../tmp/x", "C", "c/../c", ""])
def test_an_invalid_cloud_name_is_refused_before_anything_is_created(repo, tmp_path, command, cloud):
    before = everything_under(tmp_path)
    state = tmp_path / "deep" / "state"
    args = [*command, "--cloud", cloud, "--state-dir", str(state)]
    if command[0] != "status":
        args += ["--repo", str(repo.path), *NO_ENGINE]
    proc = tidegate(*args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"tidegate: invalid cloud name {cloud!r}: a cloud name is "
                                                "lowercase letters, digits and '-', a letter first (at most 40)"]
    assert everything_under(tmp_path) == before


@pytest.mark.parametrize("command, first_words", [("plan", "tidegate: no engine answered: "),
                                                   ("apply", "tidegate: cloud c not converged: ")])
def test_no_engine_answering_exits_two_in_one_line(repo, tmp_path, command, first_words):
    proc = tidegate(command, "--repo", str(repo.path), "--cloud", "c", "--state-dir", str(tmp_path / "state"),
                    *NO_ENGINE)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(first_words), lines
    assert "unix:///nonexistent/" in lines[0] and "does not answer" in lines[0]
    if command == "plan":       # both hosts named
        assert "podman.sock" in lines[0] and "docker.sock" in lines[0]
    else:                       # the details stay in the status
        assert "`tidegate status --cloud c`" in lines[0]


def test_contract_with_no_engine_answering_exits_two(repo, tmp_path):
    """A contract phase that is owed, but no engine to run it on: an environment error (2),
    not a refusal (1), which would say the request itself was wrong."""
    from controller.reconcile import Controller
    from controller.source import Source
    from controller.status import Status
    state = tmp_path / "state"
    head = repo.git("rev-parse", "HEAD")
    desired = Controller(Source(repo.path), "c", state_dir=state).target(head).desired
    status = Status("c", last_applied_revision=head,
                    pending_contract={"keystone": desired.services["keystone"].hash})
    status.save(state)
    proc = tidegate("contract", "--repo", str(repo.path), "--cloud", "c", "--service", "keystone",
                    "--state-dir", str(state), *NO_ENGINE)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("tidegate: keystone: not run: host h1 (podman): ")
    assert "unix:///nonexistent/podman.sock" in line and "unix:///nonexistent/docker.sock" in line


def test_status_after_an_engine_did_not_answer_exits_two_naming_host_and_url(repo, tmp_path):
    state = str(tmp_path / "state")
    applied = tidegate("apply", "--repo", str(repo.path), "--cloud", "c", "--state-dir", state, *NO_ENGINE)
    assert applied.returncode == 2
    proc = tidegate("status", "--cloud", "c", "--state-dir", state)
    assert proc.returncode == 2 and "EngineUnavailable" in proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert "host h1 (podman)" in line and "unix:///nonexistent/podman.sock" in line
    assert "host h2 (docker)" in line and "unix:///nonexistent/docker.sock" in line
    assert tidegate("status", "--cloud", "c", "--state-dir", state, "--json").returncode == 2
