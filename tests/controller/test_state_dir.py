"""The controller's default state directory does not depend on the current directory:
a controller (or `tidegate status`) started from elsewhere finds the same status, lock
and history."""
from __future__ import annotations

import os
import subprocess
import sys

from controller.commands.converge import default_state_dir
from tests.conftest import ROOT


def test_the_default_state_dir_is_the_systems_for_root_and_the_users_otherwise():
    assert default_state_dir({}, euid=0) == "/var/lib/tidegate"
    assert default_state_dir({}, euid=1000, home="/home/op") == "/home/op/.local/state/tidegate"
    assert default_state_dir({"XDG_STATE_HOME": "/srv/state"}, euid=1000) == "/srv/state/tidegate"
    assert default_state_dir({"TIDEGATE_STATE_DIR": "/etc/x", "XDG_STATE_HOME": "/y"}, euid=0) == "/etc/x"


def test_status_reads_the_same_state_dir_from_any_current_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TIDEGATE_STATE_DIR", "XDG_STATE_HOME")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    answers = set()
    for cwd in (tmp_path, ROOT):
        proc = subprocess.run([sys.executable, "-m", "controller.cli", "status", "--cloud", "no-such-cloud"],
                              capture_output=True, text=True, cwd=cwd, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr
        answers.add(proc.stderr.strip())
    [message] = answers
    expected = "/var/lib/tidegate" if os.geteuid() == 0 else f"{tmp_path}/home/.local/state/tidegate"
    assert f"in {expected} (never applied here?)" in message, message
