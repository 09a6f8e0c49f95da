"""Read-only views of a cloud repository's files: a git commit's tree (see
controller.source.GitTree), a working directory, or an in-memory dict (tests).

Validators read through this small protocol and never touch the filesystem or git
themselves, so `tidegate check` validates a commit without checking it out.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Tree(Protocol):
    def kind(self, path: str) -> str | None:
        """'file', 'dir' or None (missing)."""

    def size(self, path: str) -> int:
        """Size in bytes of a file (cheap: no read)."""

    def read(self, path: str) -> bytes: ...

    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted; [] when it is missing."""


class DirTree:
    """A directory on disk (`tidegate check --worktree`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if full != self.root and self.root not in full.parents:
            raise FileNotFoundError(path)
        return full

    def kind(self, path: str) -> str | None:
        try:
            p = self._path(path)
        except FileNotFoundError:
            return None
        if p.is_file():
            return "file"
        if p.is_dir():
            return "dir"
        return None

    def size(self, path: str) -> int:
        return self._path(path).stat().st_size

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []


class MemoryTree:
    """{path: bytes|str} — for tests and synthetic benchmarks."""

    def __init__(self, files: dict[str, bytes | str]):
        self.files = {p.strip("/"): (v.encode() if isinstance(v, str) else v) for p, v in files.items()}

    def kind(self, path: str) -> str | None:
        path = path.strip("/")
        if path in self.files:
            return "file"
        prefix = path + "/" if path else ""
        return "dir" if any(p.startswith(prefix) for p in self.files) else None

    def size(self, path: str) -> int:
        return len(self.files[path.strip("/")])

    def read(self, path: str) -> bytes:
        try:
            return self.files[path.strip("/")]
        except KeyError:
            raise FileNotFoundError(path) from None

    def listdir(self, path: str) -> list[str]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        return sorted({p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)})
