"""Tempest, as Grenade runs it: the tests `gate.yaml` names, run against the test cloud
after smoke+create, after the upgrade, after the rollback (and after the contract), each
run one JUnit case with Tempest's counts.

    tempest:
      regex: "^tempest\\.api\\.identity\\.v3"   # or tests: [full test ids…]
      version: "47.0.0"                          # from PyPI (default 47.0.0)
      concurrency: 2                             # default 1
      timeout: 1800                              # seconds per run (default 1800)
      config:                                    # tempest.conf beyond what the cloud tells
        identity-feature-enabled: {security_compliance: true}

Tempest comes from PyPI into the gate's own environment: a virtualenv per version under
the build cache (`$TIDEGATE_CACHE`, default /var/tmp/tidegate-cache), made once with
the gate's own Python and pip. tidegate writes `tempest.conf` from the cloud's `auth`
endpoint and the `env` credentials (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME), marks
the services Tempest knows but the cloud does not run as unavailable, then adds `config`.
"""
from __future__ import annotations

import configparser
import fcntl
import io
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_VERSION = "47.0.0"
# Tempest's [service_available] switches: off unless the cloud runs that project
SERVICES = {"cinder": "cinder", "glance": "glance", "neutron": "neutron", "nova": "nova", "swift": "swift"}
_TOTALS = {name: re.compile(rf"^\s*-\s*{label}:\s*(\d+)", re.MULTILINE)
           for name, label in (("passed", "Passed"), ("skipped", "Skipped"), ("failed", "Failed"))}


class TempestError(Exception):
    """Tempest could not be installed or configured (the gate could not run: exit 2)."""


@dataclass(frozen=True)
class Settings:
    regex: str = ""
    tests: tuple[str, ...] = ()
    version: str = DEFAULT_VERSION
    concurrency: int = 1
    timeout: float = 1800.0
    config: dict = field(default_factory=dict)

    @staticmethod
    def from_doc(doc: dict | None) -> "Settings | None":
        if not doc:
            return None
        return Settings(str(doc.get("regex", "")), tuple(str(t) for t in doc.get("tests") or ()),
                        str(doc.get("version", DEFAULT_VERSION)), int(doc.get("concurrency", 1)),
                        float(doc.get("timeout", 1800)),
                        {str(section): dict(options or {}) for section, options in (doc.get("config") or {}).items()})


@dataclass
class Result:
    ok: bool
    passed: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    output: str = ""

    def summary(self) -> str:
        return f"{self.passed} passed, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f}s"


def cache_dir() -> Path:
    return Path(os.environ.get("TIDEGATE_CACHE", "/var/tmp/tidegate-cache"))


def install(version: str, log=lambda line: None) -> Path:
    """The `tempest` program of a virtualenv holding Tempest `version` (made once, shared by
    gates: a lock file keeps two from building it at once)."""
    if not re.fullmatch(r"[0-9][0-9A-Za-z.]*", version):
        raise TempestError(f"tempest.version {version!r}: not a version number")
    home = cache_dir() / f"tempest-{version}"
    home.mkdir(parents=True, exist_ok=True)
    program, done = home / "venv" / "bin" / "tempest", home / "installed"
    with open(home / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and program.exists():
            return program
        log(f"installing Tempest {version} from PyPI into {home / 'venv'} …")
        for argv in ([sys.executable, "-m", "venv", "--clear", str(home / "venv")],
                     [str(home / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                      "--disable-pip-version-check", f"tempest=={version}"]):
            proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800)
            if proc.returncode != 0:
                tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
                raise TempestError(f"installing Tempest {version} failed: {tail}")
        done.write_text(version + "\n")
    return program


def conf(settings: Settings, auth_url: str, env: dict, projects: set[str], log_dir: Path) -> str:
    """tempest.conf for a cloud reached at `auth_url` (Keystone v3) with `env`'s credentials."""
    c = configparser.ConfigParser(interpolation=None)
    c["DEFAULT"] = {"log_dir": str(log_dir), "use_stderr": "false"}
    c["auth"] = {"admin_username": env.get("OS_USERNAME", ""), "admin_password": env.get("OS_PASSWORD", ""),
                 "admin_project_name": env.get("OS_PROJECT_NAME", ""),
                 "admin_domain_name": env.get("OS_USER_DOMAIN_NAME", "Default"),
                 "use_dynamic_credentials": "true"}
    c["identity"] = {"uri_v3": auth_url, "auth_version": "v3", "region": env.get("OS_REGION_NAME", "RegionOne")}
    c["service_available"] = {flag: str(project in projects).lower() for flag, project in SERVICES.items()}
    for section, options in settings.config.items():
        if not c.has_section(section) and section != "DEFAULT":
            c.add_section(section)
        for key, value in options.items():
            c[section][key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    out = io.StringIO()
    c.write(out)
    return out.getvalue()


def counts(output: str) -> dict[str, int]:
    """Tempest's totals ('- Passed: 59', …) from the output of `tempest run`."""
    found = {}
    for name, pattern in _TOTALS.items():
        hits = pattern.findall(output)
        found[name] = int(hits[-1]) if hits else 0
    return found


def run(program: Path, settings: Settings, tempest_conf: str, workspace: Path) -> Result:
    """`tempest run` of the selected tests in a fresh workspace; the counts and the tail of
    its output (a failing test's traceback)."""
    t0 = time.monotonic()
    if not (workspace / ".stestr.conf").exists():
        # registered in a file of the gate's own: not ~/.tempest/workspace.yaml, where a second
        # gate's workspace of the same name would be refused ("already exists")
        proc = subprocess.run([str(program), "init", "--name", f"tidegate-{workspace.parent.name}",
                               "--workspace-path", str(workspace.parent / "tempest-workspaces.yaml"),
                               str(workspace)], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=300)
        if proc.returncode != 0:
            raise TempestError(f"tempest init failed: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
    (workspace / "etc" / "tempest.conf").write_text(tempest_conf)
    argv = [str(program), "run", "--concurrency", str(settings.concurrency)]
    if settings.tests:
        listing = workspace / "tests.txt"
        listing.write_text("".join(f"^{re.escape(t)}$\n" for t in settings.tests))
        argv += ["--include-list", str(listing)]
    else:
        argv += ["--regex", settings.regex]
    try:
        proc = subprocess.run(argv, cwd=workspace, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=settings.timeout)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        output = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        output, code = output + f"\ntimed out after {settings.timeout:g}s", None
    found = counts(output)
    ok = code == 0 and found["failed"] == 0 and found["passed"] > 0
    return Result(ok, found["passed"], found["skipped"], found["failed"], time.monotonic() - t0,
                  "\n".join(output.splitlines()[-60:]))
