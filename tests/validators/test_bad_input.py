"""Bad input in a cloud's files is a finding at file:line, never a traceback later on:
whole-number floats where the schema says integer, NUL bytes, config targets that name no
file, stop signals that are none, subnets that are none, the engines' own network names,
service files whose name is no service name."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import GitRepo, files, findings_of, service
from .test_cli_check import tidegate

ROOT = Path(__file__).resolve().parents[2]
HEAD = "project: keystone\nrelease: '2025.1'\nimage: a\nhealth: {type: tcp, port: 5000}\n"

# (fragment appended after HEAD's four lines, line of the value, field path in the message)
WHOLE_FLOATS = [
    ("replicas: 1.0\n", 5, "replicas"),
    ("ulimits: {nofile: 1024.0}\n", 5, "ulimits.nofile"),
    ("ulimits:\n  nofile: [1024, 2048.0]\n", 6, "ulimits.nofile[1]"),
    ("ports: [{container: 5000.0, host: 5000}]\n", 5, "ports[0].container"),
    ("expose: [5000.0]\n", 5, "expose[0]"),
    ("max_per_host: 2.0\n", 5, "max_per_host"),
    ("upgrade: {max_unavailable: 1.0}\n", 5, "upgrade.max_unavailable"),
    ("bootstrap: []\nupgrade:\n  max_unavailable: 1.\n", 7, "upgrade.max_unavailable"),
]


def loading(found):
    return [f for f in found if f.rule.startswith(("yaml.", "schema."))]


@pytest.mark.parametrize("fragment, line, field", WHOLE_FLOATS)
def test_a_whole_number_with_a_decimal_point_is_refused_at_its_line(fragment, line, field):
    found = loading(findings_of({"ks": HEAD + fragment}))
    assert [(f.rule, f.line) for f in found] == [("schema.type", line)], found
    assert found[0].message.startswith(f"{field}: ")
    assert "expected a whole number without a decimal point" in found[0].message


def test_a_health_port_with_a_decimal_point_is_refused():
    text = "project: keystone\nrelease: '2025.1'\nimage: a\nhealth: {type: tcp, port: 5000.0}\n"
    found = loading(findings_of({"ks": text}))
    assert [(f.rule, f.line) for f in found] == [("schema.type", 4)]
    assert found[0].message.startswith("health.port: 5000.0") and "(write 5000)" in found[0].message


def test_whole_numbers_in_cloud_yaml_are_refused_too():
    cloud = ("name: c\nhosts: {h1: {engine: podman, max_containers: 2.0}}\n"
             "defaults:\n  health: {retries: 3.0}\n")
    found = loading(findings_of({}, extra={"clouds/c/cloud.yaml": cloud}))
    assert [(f.rule, f.line) for f in found] == [("schema.type", 2), ("schema.type", 4)]


@pytest.mark.parametrize("fragment", ["replicas: 1\n", "stop_grace: 30.0\n", "upgrade: {min_ready: 2.0}\n",
                                      "environment: {RATIO: 1.0}\n", "ulimits: {nofile: [1024, 2048]}\n"])
def test_integers_and_decimal_seconds_pass(fragment):
    assert loading(findings_of({"ks": HEAD + fragment})) == []


def test_check_reports_whole_floats_instead_of_crashing(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(files({"ks": HEAD + "replicas: 2.0\nulimits: {nofile: 1024.0}\n"}))
    proc = tidegate("check", "--repo", str(repo.path))
    assert proc.returncode == 1, proc.stderr
    assert "clouds/c/services/ks.yaml:5:11: error: replicas: 2.0" in proc.stdout
    assert "clouds/c/services/ks.yaml:6:" in proc.stdout and "[schema.type]" in proc.stdout


@pytest.mark.parametrize("text, line, field", [
    (HEAD + 'environment: {A: "x\\0y"}\n', 5, "environment.A"),
    (HEAD + 'command: [run, "a\\0"]\n', 5, "command[1]"),
    (HEAD + 'user: "\\0"\n', 5, "user"),
])
def test_a_nul_byte_in_a_text_value_is_refused(text, line, field):
    found = loading(findings_of({"ks": text}))
    assert [(f.rule, f.line) for f in found] == [("schema.nul-byte", line)]
    assert found[0].message.startswith(f"{field}: ") and "NUL" in found[0].message


def test_a_nul_byte_in_cloud_defaults_is_refused():
    cloud = 'name: c\nhosts: {h1: {engine: podman}}\ndefaults:\n  environment: {A: "\\0"}\n'
    found = loading(findings_of({}, extra={"clouds/c/cloud.yaml": cloud}))
    assert [(f.rule, f.file, f.line) for f in found] == [("schema.nul-byte", "clouds/c/cloud.yaml", 4)]


def test_text_without_nul_passes():
    assert loading(findings_of({"ks": service(environment={"A": "x\ty", "B": "ü"})})) == []


# -- config targets ---------------------------------------------------------------------

CONF = {"clouds/c/config/ks/ks.conf": "[DEFAULT]\n", "clouds/c/config/ks/policy.d/p.yaml": "{}\n"}


@pytest.mark.parametrize("target", ["/", "//", "/etc/keystone/", "/etc/./ks.conf", "/etc/../ks.conf",
                                    "/etc//ks.conf", "/..", "etc/ks.conf"])
def test_a_config_target_that_names_no_file_is_refused(target):
    found = findings_of({"ks": service(config=[{"source": "config/ks/ks.conf", "target": target}])},
                        extra=CONF)
    assert [(f.rule, f.line) for f in loading(found)] == [("schema.pattern", 3)], found
    assert "config[0].target" in found[0].message and "not /" in found[0].hint


@pytest.mark.parametrize("target", ["/etc", "/usr", "/proc", "/var", "/tmp"])
def test_a_config_file_over_a_system_directory_is_refused(target):
    found = findings_of({"ks": service(config=[{"source": "config/ks/ks.conf", "target": target}])},
                        extra=CONF)
    assert [f.rule for f in found] == ["semantic.config-target"]
    assert target in found[0].message and "directory" in found[0].message


def test_config_files_and_folders_at_real_paths_pass():
    config = [{"source": "config/ks/ks.conf", "target": "/etc/keystone/keystone.conf"},
              {"source": "config/ks/policy.d", "target": "/etc/keystone/policy.d"},
              {"source": "config/ks/policy.d", "target": "/etc"}]   # a folder's files go into /etc
    assert findings_of({"ks": service(config=config)}, extra=CONF) == []


# -- stop signals, subnets, network names -----------------------------------------------

@pytest.mark.parametrize("signal", ["SIGFOO", "SIGTERMINATE", "SIG1"])
def test_a_stop_signal_that_is_no_signal_is_refused(signal):
    found = findings_of({"ks": service(stop_signal=signal)})
    assert [f.rule for f in found] == ["semantic.stop-signal"] and repr(signal) in found[0].message


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGWINCH", "SIGRTMIN"])
def test_real_stop_signals_pass_and_every_engine_knows_them(signal):
    from controller.engines.common import signal_number
    assert findings_of({"ks": service(stop_signal=signal)}) == []
    assert signal_number(signal) is not None


def cloud_with_network(network):
    return {"name": "c", "hosts": {"h1": {"engine": "podman"}}, "network": network}


@pytest.mark.parametrize("subnet, why", [("999.1.1.0/24", "not an IPv4 network"),
                                         ("10.0.0.0/33", "not an IPv4 network"),
                                         ("10.0.0.1/24", "host bits set"),
                                         ("10.0.0.0/31", "no room")])
def test_a_subnet_that_is_none_is_refused(subnet, why):
    found = findings_of({"ks": service()}, cloud_with_network({"subnet": subnet}))
    assert [(f.rule, f.file) for f in found] == [("semantic.subnet", "clouds/c/cloud.yaml")]
    assert subnet in found[0].message and why in found[0].message


def test_a_real_subnet_passes():
    assert findings_of({"ks": service()}, cloud_with_network({"subnet": "10.89.10.0/24"})) == []


@pytest.mark.parametrize("name", ["host", "none", "bridge", "podman", "default"])
def test_the_engines_own_network_names_are_refused(name):
    found = findings_of({"ks": service()}, cloud_with_network({"name": name}))
    assert [f.rule for f in found] == ["schema.pattern"] and "network.name" in found[0].message
    assert "host, none, bridge" in found[0].hint


@pytest.mark.parametrize("name", ["hostnet", "tidegate-c", "my-bridge", "none2"])
def test_other_network_names_pass(name):
    assert findings_of({"ks": service()}, cloud_with_network({"name": name})) == []


# -- service file names -------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["Keystone", "key_stone", "-ks", "9ks", ".ks", "k" * 41, "ks.api"])
def test_a_service_file_name_that_is_no_service_name_is_refused(stem):
    found = findings_of({stem: service(), "ok": service(depends_on=[])})
    assert [(f.rule, f.file) for f in found] == [("semantic.service-file-name", f"clouds/c/services/{stem}.yaml")]
    assert "lowercase" in found[0].hint


def test_a_service_file_name_finding_cannot_be_switched_off():
    rules = "severity:\n  semantic.service-file-name: \"off\"\n"
    found = findings_of({"Ks": service()}, extra={"clouds/c/rules.yaml": rules})
    assert "semantic.service-file-name" in {f.rule for f in found}


# -- symlinks, submodules, config sizes ------------------------------------------------------

KS_CONF = {"source": "config/ks/ks.conf", "target": "/etc/keystone/keystone.conf"}


def committed_cloud(tmp_path, services=None, extra=None) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write(files(services or {"ks": service(config=[KS_CONF])}, extra={**CONF, **(extra or {})}))
    return repo


def check_json(repo, *args):
    proc = tidegate("check", "--repo", str(repo.path), "--json", *args)
    return proc.returncode, json.loads(proc.stdout)["findings"] if proc.stdout else proc.stderr


def test_a_committed_symlink_to_etc_shadow_is_refused_and_never_read(tmp_path):
    repo = committed_cloud(tmp_path, {"ks": service(config=[{"source": "config/shadow", "target": "/etc/shadow"}])})
    (repo.path / "clouds/c/config/shadow").symlink_to("/etc/shadow")
    repo.commit({})
    code, found = check_json(repo)
    assert code == 1
    assert [(f["rule"], f["file"]) for f in found] == [("semantic.symlink", "clouds/c/config/shadow")]
    assert "/etc/shadow" in found[0]["message"]


def test_a_symlink_anywhere_in_the_cloud_folder_is_refused_in_commits_and_worktrees(tmp_path):
    repo = committed_cloud(tmp_path)
    (repo.path / "clouds/c/services/ks2.yaml").symlink_to("ks.yaml")        # inside the repository
    (repo.path / "clouds/c/config/linked").symlink_to("ks")                  # a folder
    repo.commit({})
    expected = [("semantic.symlink", "clouds/c/config/linked"), ("semantic.symlink", "clouds/c/services/ks2.yaml")]
    for args in ((), ("--worktree",)):
        code, found = check_json(repo, *args)
        assert code == 1 and sorted((f["rule"], f["file"]) for f in found) == expected, args


def test_a_submodule_in_the_cloud_folder_is_refused(tmp_path):
    sub = GitRepo(tmp_path / "sub")
    sub.commit({"ks.conf": "[DEFAULT]\n"})
    repo = committed_cloud(tmp_path)
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "clouds/c/config/vendor")
    repo.commit({})
    for args in ((), ("--worktree",)):
        code, found = check_json(repo, *args)
        assert code == 1, args
        assert [(f["rule"], f["file"]) for f in found] == [("semantic.submodule", "clouds/c/config/vendor")], args


def test_a_symlinked_cloud_folder_is_a_one_line_error(tmp_path):
    repo = committed_cloud(tmp_path)
    (repo.path / "clouds/d").symlink_to("c")
    repo.commit({})
    for args in ((), ("--worktree",)):
        proc = tidegate("check", "--repo", str(repo.path), "--cloud", "d", *args)
        assert proc.returncode == 2 and proc.stdout == "", args
        assert proc.stderr.strip() == "tidegate: clouds/d is a symbolic link: tidegate never follows one; " \
                                      "commit the cloud's files themselves", args


class CountingTree:
    """A MemoryTree that records which files were read whole."""

    def __init__(self, mapping):
        from validators.tree import MemoryTree
        self._tree, self.read_paths = MemoryTree(mapping), []

    def __getattr__(self, name):
        return getattr(self._tree, name)

    def read(self, path):
        self.read_paths.append(path)
        return self._tree.read(path)


def test_a_config_file_over_the_limit_is_refused_without_reading_it():
    from validators.check import check_state
    from validators.load import MAX_CONFIG_BYTES, load_cloud
    config = [KS_CONF, {"source": "config/ks/policy.d", "target": "/etc/keystone/policy.d"}]
    tree = CountingTree(files({"ks": service(config=config)},
                              extra={**CONF, "clouds/c/config/ks/policy.d/big.json": b"{" * (MAX_CONFIG_BYTES + 1)}))
    found = check_state(load_cloud(tree, "c"))
    assert [(f.rule, f.line) for f in found] == [("semantic.config-too-large", 4)]
    assert "config/ks/policy.d/big.json" in found[0].message and "1,048,577 bytes" in found[0].message
    assert not [p for p in tree.read_paths if "config/" in p]


def test_config_files_over_the_cloud_total_are_refused():
    from validators.load import MAX_CONFIG_BYTES, MAX_CONFIG_TOTAL
    many = {f"clouds/c/config/ks/policy.d/{i}.json": b"x" * MAX_CONFIG_BYTES
            for i in range(MAX_CONFIG_TOTAL // MAX_CONFIG_BYTES + 1)}
    config = [{"source": "config/ks/policy.d", "target": "/etc/keystone/policy.d"}]
    found = findings_of({"ks": service(config=config)}, extra=many)
    assert [f.rule for f in found] == ["semantic.config-too-large"] and "in all" in found[0].message


def test_a_150_mb_config_file_is_refused_in_little_memory(tmp_path):
    repo = committed_cloud(tmp_path)
    with open(repo.path / "clouds/c/config/ks/ks.conf", "wb") as f:
        f.truncate(150 * 1000 * 1000)
    repo.commit({})
    # the check's own peak memory (git's, when it committed the file, is no concern here)
    # (VmHWM, not ru_maxrss: that one keeps the forking test worker's peak across exec)
    script = ("import re, sys\nfrom controller.cli import main\ncode = main(sys.argv[1:])\n"
              "status = open('/proc/self/status').read()\n"
              "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) * 1024, file=sys.stderr)\n"
              "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script, "check", "--repo", str(repo.path), "--json"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    found = json.loads(proc.stdout)["findings"]
    assert proc.returncode == 1 and [f["rule"] for f in found] == ["semantic.config-too-large"], proc.stderr
    peak = int(proc.stderr.strip().splitlines()[-1])
    assert peak < 100 * 1000 * 1000, f"check peaked at {peak:,} bytes"


# -- keys YAML does not read as text -------------------------------------------------------

@pytest.mark.parametrize("fragment, key", [("environment: {1: x, A: y}\n", "1"),
                                           ("environment: {ON: x, A: y}\n", "True"),
                                           ("ulimits: {null: 5}\n", "None"),
                                           ("requires: {2025.1: '>=2025.1'}\n", "2025.1")])
def test_a_key_that_yaml_reads_as_no_text_is_refused(fragment, key):
    found = loading(findings_of({"ks": HEAD + fragment}))
    assert [(f.rule, f.line) for f in found] == [("schema.type", 5)], found
    assert found[0].message.split(":")[1].strip() == f"key {key} is not text" and "quote" in found[0].hint


def test_host_names_that_yaml_reads_as_numbers_are_refused():
    cloud = "name: c\nhosts:\n  1: {engine: podman}\n"
    found = loading(findings_of({}, extra={"clouds/c/cloud.yaml": cloud}))
    assert [(f.rule, f.file) for f in found] == [("schema.type", "clouds/c/cloud.yaml")]


# -- ulimits ------------------------------------------------------------------------------------

def test_a_ulimit_no_engine_knows_is_refused_at_its_key():
    found = loading(findings_of({"ks": HEAD + "ulimits:\n  nofile: 1024\n  openfiles: 1024\n"}))
    assert [(f.rule, f.line) for f in found] == [("schema.name", 7)] and "'openfiles'" in found[0].message
    assert "nofile" in found[0].hint


def test_a_soft_ulimit_above_its_hard_limit_is_refused():
    found = findings_of({"ks": HEAD + "ulimits:\n  nofile: [4096, 1024]\n"})
    assert [(f.rule, f.line) for f in found] == [("semantic.ulimits", 6)]
    assert "soft limit 4096 is above the hard limit 1024" in found[0].message


def test_ulimits_engines_know_pass():
    assert findings_of({"ks": HEAD + "ulimits: {nofile: [1024, 4096], nproc: 512, core: 0}\n"}) == []
