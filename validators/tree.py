"""Read-only views of a cloud repository's files: a git commit's tree (see
controller.source.GitTree), a working directory, or an in-memory dict (tests).

Validators read through this small protocol and never touch the filesystem or git
themselves, so `tidegate check` validates a commit without checking it out.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol


class Tree(Protocol):
    def kind(self, path: str) -> str | None:
        """'file', 'dir', 'link' (a symbolic link, on the path or at its end), 'submodule'
        or None (missing). Links and submodules are never followed: read, size and
        listdir treat them as missing."""

    def size(self, path: str) -> int:
        """Size in bytes of a file (cheap: no read)."""

    def read(self, path: str) -> bytes: ...

    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted; [] when it is missing."""

    def link_target(self, path: str) -> str:
        """Where a symbolic link points (for the message that refuses it); '' otherwise."""


class DirTree:
    """A directory on disk (`tidegate check --worktree`). A path that passes through a
    symbolic link is a 'link', wherever the link points: a commit cannot follow one
    either, so the working tree must not judge differently."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def _lookup(self, path: str) -> tuple[Path, str | None]:
        full = self.root
        mode = os.lstat(full).st_mode
        for part in filter(None, path.strip("/").split("/")):
            if part in (".", "..") or not stat.S_ISDIR(mode):
                return full, None
            full = full / part
            try:
                mode = os.lstat(full).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return full, None
            if stat.S_ISLNK(mode):
                return full, "link"
        if stat.S_ISREG(mode):
            return full, "file"
        if stat.S_ISDIR(mode):
            # a submodule's working tree holds a .git file (or folder) of its own
            return full, ("submodule" if full != self.root and os.path.lexists(full / ".git") else "dir")
        return full, None

    def _path(self, path: str, want: str) -> Path:
        full, kind = self._lookup(path)
        if kind != want:
            raise FileNotFoundError(path)
        return full

    def kind(self, path: str) -> str | None:
        return self._lookup(path)[1]

    def size(self, path: str) -> int:
        return self._path(path, "file").stat().st_size

    def read(self, path: str) -> bytes:
        return self._path(path, "file").read_bytes()

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(path, "dir")))
        except FileNotFoundError:
            return []

    def link_target(self, path: str) -> str:
        full, kind = self._lookup(path)
        return os.readlink(full) if kind == "link" else ""


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

    def link_target(self, path: str) -> str:
        return ""
