"""`tidegate secrets` on a working tree: keygen, add, list (names, never values), show
(the value only with --reveal), reencrypt to a changed recipient list."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def tidegate(*args, cwd, stdin=None):
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_operator_workflow_never_prints_a_value_unless_asked(tmp_path):
    ctl = tidegate("secrets", "keygen", "--out", str(tmp_path / "ctl.key"), cwd=tmp_path)
    ops = tidegate("secrets", "keygen", "--out", str(tmp_path / "ops.key"), cwd=tmp_path)
    assert ctl.returncode == 0 and ctl.stdout.startswith("age1") and (tmp_path / "ctl.key").stat().st_mode & 0o077 == 0
    c = tmp_path / "clouds/c"
    (c / "services").mkdir(parents=True)
    (c / "config").mkdir()
    (c / "cloud.yaml").write_text(yaml.safe_dump({"name": "c", "hosts": {"h": {"engine": "podman"}},
                                                  "secrets": {"recipients": {"controller": ctl.stdout.strip()}}}))
    (c / "config/app.conf").write_text("password = ${secret:app-db}\n")
    (c / "services/app.yaml").write_text(yaml.safe_dump({
        "project": "app", "release": "2025.1", "image": "x", "health": {"type": "tcp", "port": 1},
        "config": [{"source": "config/app.conf", "target": "/etc/app.conf", "template": True}]}))
    added = tidegate("secrets", "add", "app-db", "--cloud", "c", cwd=tmp_path, stdin="tops3cret\n")
    assert added.returncode == 0, added.stderr
    assert "tops3cret" not in (c / "secrets/app-db.age").read_text()
    listed = tidegate("secrets", "list", "--cloud", "c", cwd=tmp_path)
    assert "app-db" in listed.stdout and "app: config/app.conf" in listed.stdout and "tops3cret" not in listed.stdout
    shown = tidegate("secrets", "show", "app-db", "--cloud", "c", "--age-key", str(tmp_path / "ctl.key"), cwd=tmp_path)
    assert shown.returncode == 0 and "tops3cret" not in shown.stdout and "--reveal" in shown.stdout
    denied = tidegate("secrets", "show", "app-db", "--cloud", "c", "--age-key", str(tmp_path / "ops.key"), cwd=tmp_path)
    assert denied.returncode == 2 and "not one of its recipients" in denied.stderr and "\n" == denied.stderr[-1:]
    data = yaml.safe_load((c / "cloud.yaml").read_text())
    data["secrets"]["recipients"]["alice"] = ops.stdout.strip()
    (c / "cloud.yaml").write_text(yaml.safe_dump(data))
    again = tidegate("secrets", "reencrypt", "--cloud", "c", "--age-key", str(tmp_path / "ctl.key"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    revealed = tidegate("secrets", "show", "app-db", "--cloud", "c", "--age-key", str(tmp_path / "ops.key"),
                        "--reveal", cwd=tmp_path)
    assert revealed.stdout == "tops3cret\n"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    check = tidegate("check", "--worktree", "--repo", str(tmp_path), cwd=tmp_path)
    assert check.returncode == 0 and "secret" not in check.stdout, check.stdout
