"""The gate decrypts the cloud's secrets with the CI key; without a recipient's key it
cannot run — exit 2 (infrastructure), not 1 (the change) — and it starts nothing."""
from __future__ import annotations

import subprocess
from pathlib import Path

from controller import secrets
from gate.run import Gate

ROOT = Path(__file__).resolve().parents[2]


def demo_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["cp", "-r", str(ROOT / "clouds"), str(repo)], check=True)
    for cmd in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "demo"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    return repo


def test_a_gate_without_a_recipients_key_exits_2_before_any_engine(tmp_path):
    repo = demo_repo(tmp_path)
    other, _ = secrets.generate()
    (tmp_path / "ci.key").write_text(other + "\n")
    gate = Gate(str(repo), "demo", "HEAD", "HEAD", kind="podman", url="unix:///nonexistent/podman.sock",
                work_dir=str(tmp_path / "work"), out=lambda line: None,
                identities=secrets.load_identities(tmp_path / "ci.key"))
    report = gate.run()
    assert report.exit_code == 2, report.as_dict()
    assert "cannot decrypt" in report.error and "clouds/demo/secrets/" in report.error
    assert "not one of its recipients" in report.error
    assert gate.engine is None                      # nothing was started


def test_the_demo_key_decrypts_what_the_gate_needs(tmp_path):
    repo = demo_repo(tmp_path)
    gate = Gate(str(repo), "demo", "HEAD", "HEAD", kind="podman", url="unix:///nonexistent/podman.sock",
                work_dir=str(tmp_path / "work"), out=lambda line: None,
                identities=secrets.load_identities(ROOT / "clouds/demo/keys/demo.agekey"))
    report = gate.run()
    assert report.exit_code == 2 and "cannot decrypt" not in (report.error or "")   # no engine: that is all
    assert isinstance(gate.config.env["OS_PASSWORD"], str) and gate.config.env["OS_PASSWORD"]
