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


LINK_MODE = 0o120000           # a tree entry that is a symbolic link (its blob holds the target)


class GitTree:
    """A commit's tree as a validators.tree.Tree. Symbolic links and submodules are what
    they are ('link', 'submodule'), never followed or read as files.

    With the repository's object database, size() reads only an object's header; without
    it, pygit2 loads the whole blob to tell its size (150 MB for a 150 MB file)."""

    def __init__(self, tree: pygit2.Tree, odb: pygit2.Odb | None = None):
        self._tree = tree
        self._odb = odb
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
            return "link" if obj.filemode == LINK_MODE else "file"
        if isinstance(obj, pygit2.Commit):          # a gitlink: the commit lives in another repository
            return "submodule"
        return None

    def _file(self, path: str) -> pygit2.Blob:
        obj = self._get(path)
        if not isinstance(obj, pygit2.Blob) or obj.filemode == LINK_MODE:
            raise FileNotFoundError(path)
        return obj

    def size(self, path: str) -> int:
        obj = self._file(path)
        if self._odb is not None:
            return self._odb.read_header(obj.id)[1]
        return obj.size

    def read(self, path: str) -> bytes:
        return self._file(path).data

    def link_target(self, path: str) -> str:
        obj = self._get(path)
        return obj.data.decode(errors="replace") if self.kind(path) == "link" else ""

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

    def has(self, commit_id: str) -> bool:
        """Whether the repository holds this commit (gone after a force-push and gc)."""
        try:
            return isinstance(self.repo.get(commit_id), pygit2.Commit)
        except (ValueError, TypeError):
            return False

    def descends(self, commit_id: str, ancestor: str) -> bool:
        """`commit_id` is `ancestor` or has it in its history."""
        try:
            return commit_id == ancestor or self.repo.descendant_of(commit_id, ancestor)
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def tree(self, rev: str = "HEAD") -> GitTree:
        return GitTree(self.commit(rev).tree, self.repo.odb)

    def worktree(self) -> DirTree:
        if self.repo.is_bare or self.repo.workdir is None:
            raise RepoError(f"{self.path}: a bare repository has no working tree (drop --worktree)")
        return DirTree(self.repo.workdir)

    # -- history --------------------------------------------------------------
    def prior_states(self, cloud: str, base_rev: str, services) -> dict[str, Prior]:
        """For each service: its state before the last change that touched its file at or
        before `base_rev` (first-parent history), and whether a contract phase ran since
        (per the controller's notes) — its own, or that of ANY service of its project:
        the services of one project share a database, so one contract closes the rollback
        window for all of them."""
        result: dict[str, Prior] = {}
        base = self.commit(base_rev)
        projects: dict[tuple[str, str], str | None] = {}     # (commit, service) -> project
        for service in services:
            path = f"clouds/{cloud}/services/{service}.yaml"
            project = self._project(base, cloud, service, projects)
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
                    by = self._contract_of_project(walked, cloud, service, project, projects)
                    result[service] = Prior(data, str(commit.id), by is not None, by or "")
                    break
                if parent is None:
                    break
                commit = parent
                walked.append(commit)
        return result

    def _contract_of_project(self, commits, cloud: str, service: str, project: str | None,
                             projects: dict) -> str | None:
        """The service whose recorded contract (on one of `commits`) closes `service`'s
        rollback window: itself, else a service of the same project (as of that commit)."""
        for commit in commits:
            contracted = self.contracted(commit, cloud)
            if service in contracted:
                return service
            for other in sorted(contracted):
                if project is not None and self._project(commit, cloud, other, projects) == project:
                    return other
        return None

    @staticmethod
    def _project(commit, cloud: str, service: str, cache: dict) -> str | None:
        """The `project` a service's file names at `commit` (None: no such file, or unreadable)."""
        key = (str(commit.id), service)
        if key not in cache:
            path = f"clouds/{cloud}/services/{service}.yaml"
            tree = GitTree(commit.tree)
            project = None
            if tree.kind(path) == "file":
                try:
                    data = load(tree.read(path), path).data
                except YamlError:
                    data = None
                value = data.get("project") if isinstance(data, dict) else None
                project = value if isinstance(value, str) else None
            cache[key] = project
        return cache[key]

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
