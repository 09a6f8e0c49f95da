"""Real git repositories for controller tests, driven with the git CLI as an operator
would: non-bare or bare, commits signed with real SSH or GPG keys. The user's own git
configuration is ignored, so a global `commit.gpgSign` cannot change a test."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.validators.helpers import files, service  # noqa: F401  (re-exported for the tests)

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Operator", "GIT_AUTHOR_EMAIL": "op@example.net",
           "GIT_COMMITTER_NAME": "Operator", "GIT_COMMITTER_EMAIL": "op@example.net"}


def git(cwd, *args, env=None, input=None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, text=True, capture_output=True, input=input,
                          env={**GIT_ENV, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def ks(release: str, **fields) -> str:
    """A keystone service file at `release`."""
    return yaml.safe_dump(service(release=release, image=f"tidegate/keystone:{release}", **fields))


class Repo:
    """A non-bare repository with branch main checked out."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        git(self.path, "init", "-q", "-b", "main")
        git(self.path, "config", "user.email", "op@example.net")
        git(self.path, "config", "user.name", "Operator")

    def git(self, *args, env=None, input=None) -> str:
        return git(self.path, *args, env=env, input=input)

    def write(self, mapping: dict) -> None:
        for rel, content in mapping.items():
            p = self.path / rel
            if content is None:
                p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)

    def commit(self, mapping: dict, message: str = "change", *, sign: list[str] | None = None, env=None) -> str:
        """Write the files and commit them all; `sign`: git options that sign (see ssh_signing)."""
        self.write(mapping)
        self.git("add", "-A")
        self.git(*(sign or []), "commit", "-q", "--allow-empty", *(["-S"] if sign is not None else []),
                 "-m", message, env=env)
        return self.git("rev-parse", "HEAD")

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)


class BareRepo:
    """A bare repository that receives pushes from a working clone (`work`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        git(self.path.parent, "init", "-q", "--bare", "-b", "main", str(self.path))
        git(self.path, "config", "user.email", "op@example.net")   # `tidegate rollback` commits here
        git(self.path, "config", "user.name", "Operator")
        self.work = Repo(self.path.parent / (self.path.name + "-work"))
        self.work.git("remote", "add", "origin", str(self.path))

    def git(self, *args, **kw) -> str:
        return git(self.path, *args, **kw)

    def push(self, mapping: dict, message: str = "change", branch: str = "main") -> str:
        sha = self.work.commit(mapping, message)
        self.work.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return sha

    def head(self, ref: str = "main") -> str:
        return self.git("rev-parse", ref)


def ssh_key(directory: Path, name: str = "key") -> Path:
    """A fresh ed25519 key pair (no passphrase): returns the private key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def ssh_signing(key: Path) -> list[str]:
    """git options that sign a commit with an SSH key."""
    return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"]


def allowed_signers(path: Path, entries: list[tuple[str, Path]]) -> Path:
    """An allowed_signers file: (principal, private key path) per line."""
    path.write_text("".join(f"{who} {Path(str(key) + '.pub').read_text().strip()}\n" for who, key in entries))
    return path
