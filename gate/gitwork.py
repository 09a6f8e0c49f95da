"""Git plumbing of the gate: a cloud's files at a commit, and the test cloud's private
repository (a working tree and the git CLI, as an operator has)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2


class GateError(Exception):
    """The gate could not run (exit 2): engine, repository, arguments."""


def cloud_files(repo: pygit2.Repository, commit: pygit2.Commit, cloud: str) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every file under clouds/<cloud>/ at `commit`."""
    try:
        top = commit.tree[f"clouds/{cloud}"]
    except KeyError:
        raise GateError(f"no clouds/{cloud}/ at {str(commit.id)[:12]}") from None
    out = {}

    def walk(tree, prefix):
        for entry in tree:
            obj = repo[entry.id]
            if entry.type_str == "tree":
                walk(obj, f"{prefix}{entry.name}/")
            elif entry.type_str == "blob":
                out[f"{prefix}{entry.name}"] = (obj.data, entry.filemode)
    walk(repo[top.id], f"clouds/{cloud}/")
    return out


class GitWork:
    """The test cloud's private repository (working tree + git CLI, as an operator has)."""

    ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "tidegate gate", "GIT_AUTHOR_EMAIL": "gate@tidegate.invalid",
           "GIT_COMMITTER_NAME": "tidegate gate", "GIT_COMMITTER_EMAIL": "gate@tidegate.invalid"}

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.files: dict[str, tuple[bytes, int]] = {}

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True,
                              env={**os.environ, **self.ENV})
        if proc.returncode != 0:
            raise GateError(f"git {args[0]} in {self.path}: {proc.stderr.strip().splitlines()[-1:]}")
        return proc.stdout.strip()

    def commit(self, files: dict[str, tuple[bytes, int]], message: str) -> str:
        for rel in set(self.files) - set(files):
            (self.path / rel).unlink()
        materialize(files, self.path)
        self.files = dict(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def materialize(files: dict[str, tuple[bytes, int]], root: Path) -> None:
    """Write `files` (path -> (content, git mode)) under `root`: the hooks of one commit,
    run from there whatever the test cloud's repository holds at the moment."""
    for rel, (data, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if mode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE else 0o644)
