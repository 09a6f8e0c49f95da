"""The source: a git repository seen through pygit2 — commits, their trees, history and
tidegate's notes. Cloud files are read straight from a commit's tree (no checkout, so it
works in a bare repository and never races with a working tree).
"""
from __future__ import annotations

import json
import os

import pygit2

from validators.load import RepoError
from validators.transition import Prior
from validators.tree import DirTree
from validators.yamlload import YamlError, load

NOTES_REF = "refs/notes/tidegate"
HISTORY_LIMIT = 10_000     # commits walked to find a service's previous state


class GitTree:
    """A commit's tree as a validators.tree.Tree."""

    def __init__(self, tree: pygit2.Tree):
        self._tree = tree
        self._children: dict[str, dict] = {}    # dir path -> {name: object}

    def _entries(self, path: str, tree: pygit2.Tree) -> dict:
        # One pass over a directory instead of a by-path lookup per file: looking up
        # 1,000 service files one by one costs ~0.6 s, listing them ~10 ms.
        entries = self._children.get(path)
        if entries is None:
            entries = self._children[path] = {entry.name: entry for entry in tree}
        return entries

    def _get(self, path: str):
        obj, walked = self._tree, ""
        for part in filter(None, path.strip("/").split("/")):
            if not isinstance(obj, pygit2.Tree):
                return None
            obj = self._entries(walked, obj).get(part)
            if obj is None:
                return None
            walked = f"{walked}/{part}" if walked else part
        return obj

    def kind(self, path: str) -> str | None:
        obj = self._get(path)
        if isinstance(obj, pygit2.Tree):
            return "dir"
        if isinstance(obj, pygit2.Blob):
            return "file"
        return None

    def size(self, path: str) -> int:
        obj = self._get(path)
        if not isinstance(obj, pygit2.Blob):
            raise FileNotFoundError(path)
        return obj.size

    def read(self, path: str) -> bytes:
        obj = self._get(path)
        if not isinstance(obj, pygit2.Blob):
            raise FileNotFoundError(path)
        return obj.data

    def listdir(self, path: str) -> list[str]:
        obj = self._get(path)
        if not isinstance(obj, pygit2.Tree):
            return []
        return sorted(entry.name for entry in obj)

    def blob_id(self, path: str) -> str | None:
        obj = self._get(path)
        return str(obj.id) if isinstance(obj, pygit2.Blob) else None


class Source:
    """A local git repository (bare or not)."""

    def __init__(self, path: str | os.PathLike = "."):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise RepoError(f"{path}: no such directory")
        try:
            found = pygit2.discover_repository(path)
        except pygit2.GitError as err:
            raise RepoError(f"{path}: cannot read repository: {err}") from None
        if found is None:
            raise RepoError(f"{path}: not a git repository")
        self.repo = pygit2.Repository(found)
        self.path = path

    # -- revisions ------------------------------------------------------------
    def commit(self, rev: str = "HEAD") -> pygit2.Commit:
        try:
            obj = self.repo.revparse_single(rev)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            if rev == "HEAD" and self.repo.head_is_unborn:
                raise RepoError(f"{self.path}: the repository has no commits yet") from None
            raise RepoError(f"{self.path}: unknown revision {rev!r}") from None
        return commit

    def tree(self, rev: str = "HEAD") -> GitTree:
        return GitTree(self.commit(rev).tree)

    def worktree(self) -> DirTree:
        if self.repo.is_bare or self.repo.workdir is None:
            raise RepoError(f"{self.path}: a bare repository has no working tree (drop --worktree)")
        return DirTree(self.repo.workdir)

    # -- history --------------------------------------------------------------
    def prior_states(self, cloud: str, base_rev: str, services) -> dict[str, Prior]:
        """For each service: its state before the last change that touched its file at or
        before `base_rev` (first-parent history), and whether that change's contract
        phase ran (per the controller's notes)."""
        result: dict[str, Prior] = {}
        base = self.commit(base_rev)
        for service in services:
            path = f"clouds/{cloud}/services/{service}.yaml"
            commit = base
            walked = [base]
            for _ in range(HISTORY_LIMIT):
                current = GitTree(commit.tree).blob_id(path)
                parent = commit.parents[0] if commit.parents else None
                before = GitTree(parent.tree).blob_id(path) if parent is not None else None
                if current != before:
                    data = None
                    if before is not None:
                        try:
                            data = load(GitTree(parent.tree).read(path), path).data
                        except YamlError:
                            data = None
                    contract = any(service in self.contracted(c, cloud) for c in walked)
                    result[service] = Prior(data, str(commit.id), contract)
                    break
                if parent is None:
                    break
                commit = parent
                walked.append(commit)
        return result

    # -- notes (refs/notes/tidegate) -----------------------------------------
    def note(self, commit) -> dict:
        """The controller's record on `commit`: {"clouds": {cloud: {...}}} or {}."""
        oid = commit.id if isinstance(commit, pygit2.Commit) else commit
        try:
            note = self.repo.lookup_note(str(oid), NOTES_REF)
        except KeyError:
            return {}
        try:
            data = json.loads(note.message)
        except (ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    def record(self, commit, cloud: str) -> dict:
        """The note's record for `cloud` on `commit`, or {}. Notes are written by hand too:
        anything not of the shape add_note writes counts as no record ({"clouds": ["c"]},
        not JSON at all…)."""
        clouds = self.note(commit).get("clouds")
        record = clouds.get(cloud) if isinstance(clouds, dict) else None
        return record if isinstance(record, dict) else {}

    @staticmethod
    def contracted_in(record: dict) -> set[str]:
        """Services whose contract phase a record lists (a malformed list counts as none)."""
        services = record.get("contract")
        if not isinstance(services, list):
            return set()
        return {s for s in services if isinstance(s, str)}

    def contracted(self, commit, cloud: str) -> set[str]:
        """Services whose contract phase the note on `commit` records for `cloud`."""
        return self.contracted_in(self.record(commit, cloud))

    def add_note(self, commit, cloud: str, record: dict) -> None:
        """Merge `record` for `cloud` into the note on `commit`."""
        oid = str(commit.id if isinstance(commit, pygit2.Commit) else commit)
        data = self.note(oid)
        if not isinstance(data.get("clouds"), dict):
            data["clouds"] = {}             # a malformed note is replaced, not merged into
        data["clouds"][cloud] = record
        signature = pygit2.Signature("tidegate", "tidegate@localhost")
        self.repo.create_note(json.dumps(data, sort_keys=True), signature, signature, oid,
                              NOTES_REF, True)
