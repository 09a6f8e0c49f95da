"""Helpers for validator tests: clouds as dicts, in memory or committed to a git repo."""
from __future__ import annotations

import subprocess

import yaml

from validators.check import check_state, check_transition
from validators.load import load_cloud
from validators.tree import MemoryTree

BASE_CLOUD = {"name": "c", "hosts": {"h1": {"engine": "podman"}, "h2": {"engine": "docker"}}}


def service(**fields) -> dict:
    data = {"project": "keystone", "release": "2025.1", "image": "tidegate/keystone:2025.1",
            "health": {"type": "tcp", "port": 5000}}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def files(services: dict, cloud: dict | None = None, extra: dict | None = None) -> dict:
    out = {"clouds/c/cloud.yaml": yaml.safe_dump(cloud or BASE_CLOUD)}
    for name, data in services.items():
        out[f"clouds/c/services/{name}.yaml"] = data if isinstance(data, (str, bytes)) else yaml.safe_dump(data)
    out.update(extra or {})
    return out


def findings_of(services: dict, cloud: dict | None = None, extra: dict | None = None):
    return check_state(load_cloud(MemoryTree(files(services, cloud, extra)), "c"))


def transition_findings(base: dict, new: dict, history=None, cloud=None, *, new_cloud=None,
                        base_extra=None, new_extra=None):
    """Findings of the change base → new; `cloud`/`new_cloud` and `*_extra` (e.g. a
    rules.yaml) let the change touch cloud.yaml and rules.yaml too."""
    base_loaded = load_cloud(MemoryTree(files(base, cloud, base_extra)), "c")
    new_loaded = load_cloud(MemoryTree(files(new, new_cloud or cloud, new_extra)), "c")
    return check_transition(base_loaded, new_loaded, history)


def rules_of(findings) -> set[str]:
    return {f.rule for f in findings}


class GitRepo:
    """A throw-away git repository driven with the git CLI (as an operator would)."""

    def __init__(self, path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "op@example.net")
        self.git("config", "user.name", "Operator")

    def git(self, *args) -> str:
        return subprocess.run(["git", *args], cwd=self.path, check=True, text=True,
                              capture_output=True).stdout.strip()

    def write(self, mapping: dict) -> None:
        for rel, content in mapping.items():
            p = self.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content if isinstance(content, bytes) else content.encode())

    def commit(self, mapping: dict, message: str = "change") -> str:
        self.write(mapping)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

