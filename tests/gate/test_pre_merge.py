"""contrib/ci/pre-merge.sh, as a CI job runs it in a pull request's clone: a forbidden
upgrade blocks the merge (exit 1, JUnit written) before any engine is needed; a PR that
touches no cloud passes; an engine that is not there is exit 2 (infrastructure). The CI
examples are valid YAML calling the recipe."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests.validators.helpers import GitRepo

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "contrib/ci/pre-merge.sh"


def service(release):
    return yaml.safe_dump({"project": "keystone", "release": release, "image": f"k:{release}"})


def run(repo, tmp_path, engine="podman=unix:///nonexistent/engine.sock"):
    tidegate = tmp_path / "tidegate"
    tidegate.write_text(f"#!/bin/sh\nexec {sys.executable} -m controller.cli \"$@\"\n")
    tidegate.chmod(0o755)
    env = {**os.environ, "TIDEGATE": str(tidegate), "TIDEGATE_GATE_ARGS": f"--engine {engine}",
           "TIDEGATE_REPORTS": str(tmp_path), "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(SCRIPT), "main"], cwd=repo.path, env=env, capture_output=True, text=True, timeout=120)


def pr_repo(tmp_path, release):
    repo = GitRepo(tmp_path / "cloud-repo")
    repo.commit({"clouds/prod/cloud.yaml": "name: prod\nhosts: {h1: {engine: podman}}\n",
                 "clouds/prod/services/keystone.yaml": service("2025.1"), "README": "state\n"}, "prod")
    repo.git("checkout", "-q", "-b", "pr")
    if release:
        repo.commit({"clouds/prod/services/keystone.yaml": service(release)}, f"keystone {release}")
    else:
        repo.commit({"README": "docs only\n"}, "docs")
    return repo


def test_a_forbidden_upgrade_blocks_the_merge(tmp_path):
    proc = run(pr_repo(tmp_path, "2026.2"), tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "must not merge" in proc.stdout
    suite = ET.parse(tmp_path / "gate-prod.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"


def test_a_change_that_touches_no_cloud_passes(tmp_path):
    proc = run(pr_repo(tmp_path, None), tmp_path)
    assert proc.returncode == 0 and "no cloud changed" in proc.stdout, proc.stdout + proc.stderr


def test_no_engine_is_exit_2_not_a_verdict(tmp_path):
    proc = run(pr_repo(tmp_path, "2025.2"), tmp_path)     # allowed: the gate needs the engine, which is not there
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "could not run" in proc.stdout


def test_ci_examples_call_the_recipe():
    gh = yaml.safe_load((ROOT / "contrib/ci/github-actions.yml").read_text())
    steps = gh["jobs"]["gate"]["steps"]
    assert any("pre-merge.sh" in s.get("run", "") for s in steps)
    gl = yaml.safe_load((ROOT / "contrib/ci/gitlab-ci.yml").read_text())
    assert any("pre-merge.sh" in line for line in gl["tidegate-gate"]["script"])
