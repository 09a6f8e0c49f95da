"""One way to say which engine: `--engine KIND[=URL]` on every command that talks to
engines (the older `--engine-url KIND=URL` and `images build --url` still read), and
`tidegate engine` prints the variable hosts without a URL read."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from controller import engine_option
from controller.cli import build_parser
from controller.errors import CommandError

ROOT = Path(__file__).resolve().parents[2]
TALKS_TO_ENGINES = [["plan", "--cloud", "c"], ["apply", "--cloud", "c"], ["down", "--cloud", "c"],
                    ["contract", "--cloud", "c", "--service", "s"], ["run", "--cloud", "c"],
                    ["gate", "--cloud", "c", "--base", "HEAD~1"], ["images", "build", "--cloud", "c"]]


@pytest.mark.parametrize("command", TALKS_TO_ENGINES, ids=lambda c: c[0])
def test_every_command_that_talks_to_engines_takes_engine_kind_eq_url(command):
    args = build_parser().parse_args([*command, "--engine", "docker=unix:///x/docker.sock"])
    assert args.engine == ["docker=unix:///x/docker.sock"]
    assert engine_option.urls(args.engine) == {"docker": "unix:///x/docker.sock"}


@pytest.mark.parametrize("command", TALKS_TO_ENGINES[:5], ids=lambda c: c[0])
def test_the_older_spelling_still_reads_and_is_hidden(command):
    parser = build_parser()
    args = parser.parse_args([*command, "--engine-url", "podman=unix:///p.sock", "--engine", "docker=tcp://d:2376"])
    assert engine_option.urls(args.engine) == {"podman": "unix:///p.sock", "docker": "tcp://d:2376"}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command[0]]
    assert "--engine-url" not in sub.format_help() and "--engine KIND[=URL]" in sub.format_help()


@pytest.mark.parametrize("spec", ["lxc=unix:///x", "podman=", "", "Podman"])
def test_a_bad_engine_is_a_usage_error_naming_it(spec):
    with pytest.raises(CommandError) as err:
        engine_option.urls([spec])
    assert err.value.code == 2 and repr(spec) in str(err.value)


def test_one_engine_commands_take_one_kind_and_find_its_url_as_hosts_do(monkeypatch):
    monkeypatch.setenv("TIDEGATE_DOCKER_URL", "unix:///from/env.sock")
    assert engine_option.one(["docker"]) == ("docker", "unix:///from/env.sock")
    assert engine_option.one(["docker=tcp://h:1"]) == ("docker", "tcp://h:1")
    monkeypatch.setenv("TIDEGATE_PODMAN_URL", "unix:///p.sock")
    assert engine_option.one([]) == ("podman", "unix:///p.sock")
    with pytest.raises(CommandError, match="one engine"):
        engine_option.one(["podman", "docker"])


def test_engine_status_prints_the_variable_hosts_without_a_url_read(tmp_path, capsys):
    """An engine's report carries TIDEGATE_<KIND>_URL first (what a host without a url reads
    before anything else); with none running here, `status` says so (exit 1), no variable."""
    from controller.commands.engine import _report
    proc = subprocess.run([sys.executable, "-m", "controller.cli", "engine", "status", "--kind", "docker",
                           "--dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "not running" in proc.stdout and "TIDEGATE_" not in proc.stdout
    _report(argparse.Namespace(json=False), {"kind": "podman", "url": "unix:///e/podman.sock", "pid": 7,
                                             "note": "running", "env": {"CONTAINER_HOST": "unix:///e/podman.sock"}})
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["  export TIDEGATE_PODMAN_URL=unix:///e/podman.sock",
                         "  export CONTAINER_HOST=unix:///e/podman.sock"]
