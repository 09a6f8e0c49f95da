"""contrib/tidegate@.service: systemd accepts it, and its command line is one `tidegate run` parses."""
from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import build_parser

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "tidegate@.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_exec_start_is_a_valid_tidegate_run_command_line():
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert argv[0].endswith("/tidegate")
    env = {"%i": "demo", "${TIDEGATE_REPO}": "/srv/cloud.git", "${TIDEGATE_BRANCH}": "main"}
    words = [env.get(w, w) for w in argv[1:] if w != "$TIDEGATE_ARGS"]
    args = build_parser().parse_args(words + ["--metrics-port", "9420"])
    assert (args.cloud, args.repo, args.branch, args.state_dir, args.metrics_port) == (
        "demo", "/srv/cloud.git", "main", "/var/lib/tidegate", 9420)
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["RestartPreventExitStatus"] == "2"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path):
    # point ExecStart at this venv's tidegate: verify checks that the binary exists
    text = UNIT.read_text().replace("/usr/local/bin/tidegate", str(Path(sys.executable).parent / "tidegate"))
    copy = tmp_path / "tidegate@demo.service"
    copy.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
