"""`tidegate check` and `tidegate schema` as an operator runs them: real git repos,
one-line errors, documented exit codes, never a traceback."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .helpers import files, service

REPO_ROOT = Path(__file__).resolve().parents[2]


def tidegate(*args, cwd=None, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ks(release):
    return yaml.safe_dump(service(release=release, image=f"tidegate/keystone:{release}"))


@pytest.fixture
def upgraded(repo):
    base = repo.commit(files({"keystone": service()}), "keystone 2025.1")
    return repo, base


def test_clean_repo_exits_zero(upgraded):
    repo, _ = upgraded
    proc = tidegate("check", "--repo", str(repo.path))
    assert proc.returncode == 0 and "ok: c at" in proc.stdout


def test_forbidden_upgrade_exits_one_with_file_and_line(upgraded):
    repo, base = upgraded
    repo.commit({"clouds/c/services/keystone.yaml": ks("2026.2")}, "keystone 2026.2")
    proc = tidegate("check", "--repo", str(repo.path), "--base", base)
    assert proc.returncode == 1
    assert "clouds/c/services/keystone.yaml:6:10: error:" in proc.stdout
    assert "[transition.upgrade-path]" in proc.stdout and "hint:" in proc.stdout


def test_slurp_upgrade_passes_and_json_is_stable(upgraded):
    repo, base = upgraded
    head = repo.commit({"clouds/c/services/keystone.yaml": ks("2026.1")}, "keystone 2026.1")
    proc = tidegate("check", "--repo", str(repo.path), "--base", base, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert report["version"] == 1 and report["rev"] == head and report["base"] == base
    assert report["summary"] == {"error": 0, "warning": 0, "info": 0} and report["findings"] == []


def test_json_findings_carry_every_field(upgraded):
    repo, base = upgraded
    repo.commit({"clouds/c/services/keystone.yaml": ks("2026.2")})
    report = json.loads(tidegate("check", "--repo", str(repo.path), "--base", base, "--json").stdout)
    f = report["findings"][0]
    assert set(f) == {"cloud", "file", "line", "column", "severity", "rule", "message", "hint"}


def test_git_revert_of_an_upgrade_passes(upgraded):
    repo, base = upgraded
    up = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2")
    repo.git("revert", "--no-edit", up)
    proc = tidegate("check", "--repo", str(repo.path), "--base", up)
    assert proc.returncode == 0, proc.stdout


def test_revert_after_contract_ran_is_refused(upgraded):
    repo, base = upgraded
    up = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2")
    note = json.dumps({"clouds": {"c": {"result": "applied", "contract": ["keystone"]}}})
    repo.git("notes", "--ref", "tidegate", "add", "-m", note, up)
    repo.git("revert", "--no-edit", up)
    proc = tidegate("check", "--repo", str(repo.path), "--base", up)
    assert proc.returncode == 1 and "contract phase" in proc.stdout


def test_hand_made_downgrade_is_refused(upgraded):
    repo, base = upgraded
    up = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")})
    repo.commit({"clouds/c/services/keystone.yaml": ks("2025.1").replace("replicas", "x") + "replicas: 2\n"})
    proc = tidegate("check", "--repo", str(repo.path), "--base", up)
    assert proc.returncode == 1 and "transition.downgrade" in proc.stdout


def test_worktree_sees_uncommitted_changes(upgraded):
    repo, _ = upgraded
    repo.write({"clouds/c/services/keystone.yaml": "project: keystone\nrelease: 2025.1\n"})
    assert tidegate("check", "--repo", str(repo.path)).returncode == 0
    assert tidegate("check", "--repo", str(repo.path), "--worktree").returncode == 1


def test_bare_repository_is_read_without_checkout(upgraded, tmp_path):
    repo, _ = upgraded
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    assert tidegate("check", "--repo", str(bare)).returncode == 0
    proc = tidegate("check", "--repo", str(bare), "--worktree")
    assert proc.returncode == 2 and "bare repository" in proc.stderr


# -- bad input: one line, the right exit code ----------------------------------

def one_line_error(proc, code, *needles):
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_cloud(upgraded):
    repo, _ = upgraded
    one_line_error(tidegate("check", "--repo", str(repo.path), "--cloud", "nope"), 2, "no cloud 'nope'", "clouds here: c")


def test_unknown_revision(upgraded):
    repo, _ = upgraded
    one_line_error(tidegate("check", "--repo", str(repo.path), "--rev", "deadbeef"), 2, "unknown revision 'deadbeef'")
    one_line_error(tidegate("check", "--repo", str(repo.path), "--base", "v9"), 2, "unknown revision 'v9'")


def test_not_a_git_repository(tmp_path):
    one_line_error(tidegate("check", "--repo", str(tmp_path)), 2, "not a git repository")
    one_line_error(tidegate("check", "--repo", str(tmp_path / "missing")), 2, "no such directory")


def test_empty_repository(repo):
    one_line_error(tidegate("check", "--repo", str(repo.path)), 2, "no commits yet")


def test_repo_without_clouds(repo):
    repo.commit({"README": "x"})
    one_line_error(tidegate("check", "--repo", str(repo.path)), 2, "no clouds/")


def test_usage_error_exits_two():
    proc = tidegate("check", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr


@pytest.mark.parametrize("content, rule", [
    ("project: [unclosed\n", "yaml.syntax"),
    ("a: !!python/object/apply:os.system [echo hi]\n", "yaml.tag"),
    ("\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] +
               [f"a{i}: &a{i} [{', '.join([f'*a{i-1}'] * 10)}]" for i in range(1, 9)]) + "\n", "yaml.alias-bomb"),
    ("project: keystone\nproject: nova\nrelease: '2025.1'\nimage: x\n", "yaml.duplicate-key"),
])
def test_bad_yaml_is_a_finding_not_a_crash(repo, content, rule):
    repo.commit(files({"keystone": content}))
    start = time.monotonic()
    proc = tidegate("check", "--repo", str(repo.path), timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == 1 and f"[{rule}]" in proc.stdout
    assert "clouds/c/services/keystone.yaml" in proc.stdout


def test_fifty_megabyte_file_is_refused_quickly(repo):
    repo.commit(files({"keystone": "# " + "x" * (50 << 20) + "\n"}))
    start = time.monotonic()
    proc = tidegate("check", "--repo", str(repo.path), timeout=60)
    assert proc.returncode == 1 and "[yaml.too-large]" in proc.stdout
    assert time.monotonic() - start < 10


def test_schema_command_prints_json_schema():
    for kind in ("cloud", "service", "rules"):
        proc = tidegate("schema", kind)
        doc = json.loads(proc.stdout)
        assert proc.returncode == 0 and doc["$schema"].endswith("2020-12/schema")


def test_list_rules_names_every_rule():
    rules = json.loads(tidegate("check", "--list-rules", "--json").stdout)
    ids = {r["id"] for r in rules}
    assert {"transition.upgrade-path", "semantic.dependency-cycle", "compat.agent-lag"} <= ids


def test_a_pull_request_cannot_switch_off_the_rule_that_blocks_it(repo):
    base = repo.commit(files({"keystone": service(release="2025.2", image="tidegate/keystone:2025.2")}))
    repo.commit({"clouds/c/services/keystone.yaml": ks("2026.2"),
                 "clouds/c/rules.yaml": "severity:\n  transition.upgrade-path: 'off'\n"}, "skip two series, rule off")
    proc = tidegate("check", "--repo", str(repo.path), "--base", base)
    assert proc.returncode == 1 and "error:" in proc.stdout and "[transition.upgrade-path]" in proc.stdout
    assert "clouds/c/rules.yaml:2:3: info:" in proc.stdout and "[transition.rules-loosened]" in proc.stdout
    assert tidegate("check", "--repo", str(repo.path)).returncode == 0      # head alone, by its own rules


def test_a_bad_rule_pattern_is_reported_not_a_hang(repo):
    rules = "rules:\n  - id: custom.user-form\n    message: x\n    field: user\n    must_match: '(a|aa)+$'\n"
    repo.commit(files({"keystone": service(user="a" * 50 + "!")}, extra={"clouds/c/rules.yaml": rules}))
    start = time.monotonic()
    proc = tidegate("check", "--repo", str(repo.path), timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == 1 and "clouds/c/rules.yaml:5:17: error: custom.user-form:" in proc.stdout
    assert "[custom.bad-rule]" in proc.stdout
