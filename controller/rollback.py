"""Roll one service back: a new commit that restores clouds/<cloud>/services/<svc>.yaml as
it was before the last change to it — `git revert` limited to that one file.

`prepare` reads and validates (pygit2, no checkout: works on bare repositories), `commit`
records the result through the git CLI. The git CLI for the write, because it brings what
an operator's commit must have for free: the operator's identity and signing set-up
(`commit.gpgSign`, `gpg.format=ssh`, `user.signingKey`, agents — a controller started
with --require-signed applies only signed commits), a compare-and-swap ref update
(`update-ref NEW OLD`), and, for a checked-out branch, a fast-forward that updates index
and working tree with git's own safety checks (`merge --ff-only`).
"""
from __future__ import annotations

import difflib
import os
import re
import subprocess
from dataclasses import dataclass, field

import pygit2

from validators.check import judge
from validators.findings import Finding, has_errors
from validators.load import RepoError, load_cloud
from validators.releases import Release
from validators.yamlload import YamlError, load

from .source import HISTORY_LIMIT, GitTree, Source

TRAILER = "Tidegate-Rollback-Of"
_TRAILER = re.compile(rf"^{TRAILER}:\s*([0-9a-f]{{7,64}})\s*$", re.MULTILINE)


@dataclass
class Rollback:
    cloud: str
    service: str
    branch: str
    path: str                       # clouds/<cloud>/services/<service>.yaml
    head: str                       # the branch tip the rollback applies to
    reverts: str                    # the commit whose change to `path` is undone
    reverts_subject: str
    current: bytes | None           # the file at head (None: the last change removed it)
    restored: bytes | None          # the file as it was before `reverts` (None: the service goes)
    tree: str                       # the tree of the rollback commit
    release_from: str | None
    release_to: str | None
    also_changed: list[str] = field(default_factory=list)   # other cloud files `reverts` changed (kept)
    findings: list[Finding] = field(default_factory=list)
    commit: str | None = None       # set once committed

    @property
    def allowed(self) -> bool:
        return not has_errors(self.findings)

    @property
    def subject(self) -> str:
        short = self.reverts[:12]
        if self.restored is None:
            return f"Roll back {self.service}: remove it (reverts {short})"
        to = self.release_to or "its previous state"
        return f"Roll back {self.service} to {to} (reverts {short})"

    def message(self) -> str:
        change = (f"release {self.release_from} → {self.release_to}"
                  if self.release_from and self.release_to and self.release_from != self.release_to
                  else "its previous definition")
        what = (f"Removes {self.path}, which {self.reverts[:12]} added"
                if self.restored is None else
                f"Restores {self.path} as it was before {self.reverts[:12]}\n(\"{self.reverts_subject}\"): {change}")
        return (f"{self.subject}\n\n{what}.\nNo other file changes.\n\n"
                f"This reverts commit {self.reverts} for {self.path} only.\n\n"
                f"{TRAILER}: {self.reverts}\n")

    def diff(self) -> str:
        def lines(blob):
            return (blob or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
        return "".join(difflib.unified_diff(lines(self.current), lines(self.restored),
                                            f"a/{self.path}", f"b/{self.path}"))

    def as_dict(self) -> dict:
        return {"version": 1, "cloud": self.cloud, "service": self.service, "branch": self.branch,
                "path": self.path, "head": self.head, "reverts": self.reverts, "subject": self.subject,
                "release_from": self.release_from, "release_to": self.release_to,
                "removes_service": self.restored is None, "also_changed": self.also_changed,
                "allowed": self.allowed, "commit": self.commit,
                "findings": [f.as_dict() for f in sorted(self.findings)]}


def _blob(tree: pygit2.Tree, path: str) -> pygit2.Blob | None:
    try:
        obj = tree[path]
    except KeyError:
        return None
    return obj if isinstance(obj, pygit2.Blob) else None


def _release(blob: bytes | None, path: str) -> str | None:
    if blob is None:
        return None
    try:
        data = load(blob, path).data
    except YamlError:
        return None
    value = data.get("release") if isinstance(data, dict) else None
    return None if value is None else str(value)


def _changed_paths(commit: pygit2.Commit, prefix: str) -> list[str]:
    parent = commit.parents[0].tree if commit.parents else None
    diff = commit.tree.diff_to_tree(parent, swap=True) if parent is not None else commit.tree.diff_to_tree(swap=True)
    paths = set()
    for delta in diff.deltas:
        for p in (delta.old_file.path, delta.new_file.path):
            if p and p.startswith(prefix):
                paths.add(p)
    return sorted(paths)


def last_change(repo: pygit2.Repository, head: pygit2.Commit, path: str) -> pygit2.Commit | None:
    """The last first-parent commit at or before `head` that changed `path`."""
    commit = head
    for _ in range(HISTORY_LIMIT):
        parent = commit.parents[0] if commit.parents else None
        now = _blob(commit.tree, path)
        before = _blob(parent.tree, path) if parent is not None else None
        if (now.id if now else None) != (before.id if before else None):
            return commit
        if parent is None:
            return None
        commit = parent
    return None


def prepare(source: Source, cloud: str, service: str, branch: str = "main", *, status=None) -> Rollback:
    """Find the change to undo, build the rollback's tree (written to the object database,
    no ref moves) and validate head → rollback. `status` (the controller's Status, when at
    hand) adds what it knows about contract phases to what the notes say."""
    repo = source.repo
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None:
        raise RepoError(f"{source.path}: no branch {branch!r}")
    head = ref.peel(pygit2.Commit)
    path = f"clouds/{cloud}/services/{service}.yaml"
    if GitTree(head.tree).kind(f"clouds/{cloud}/cloud.yaml") != "file":
        raise RepoError(f"{source.path}: no clouds/{cloud}/cloud.yaml on {branch}")
    change = last_change(repo, head, path)
    if change is None:
        raise RepoError(f"{path}: no change to roll back on {branch} (the service never existed there)")

    current = _blob(head.tree, path)
    before = _blob(change.parents[0].tree, path) if change.parents else None
    index = pygit2.Index()
    index.read_tree(head.tree)
    if before is None:
        index.remove(path)
    else:
        mode = change.parents[0].tree[path].filemode
        index.add(pygit2.IndexEntry(path, before.id, mode))
    tree_id = index.write_tree(repo)

    current_data = current.data if current is not None else None
    restored = before.data if before is not None else None
    rollback = Rollback(
        cloud=cloud, service=service, branch=branch, path=path, head=str(head.id), reverts=str(change.id),
        reverts_subject=change.message.splitlines()[0] if change.message.strip() else "",
        current=current_data, restored=restored, tree=str(tree_id),
        release_from=_release(current_data, path), release_to=_release(restored, path),
        also_changed=[p for p in _changed_paths(change, f"clouds/{cloud}/") if p != path])

    refusal = _undoes_a_rollback(rollback, change)
    if refusal is not None:
        rollback.findings.append(refusal)
        return rollback
    rollback.findings += validate(source, cloud, service, head, repo[tree_id], status)
    return rollback


def _undoes_a_rollback(rollback: Rollback, change: pygit2.Commit) -> Finding | None:
    """Rolling back a rollback (or a `git revert` of an upgrade) would upgrade again: that is
    a roll-forward, which deserves its own commit and `tidegate check`, not this command."""
    short = str(change.id)[:12]
    hint = (f"to upgrade again, commit the upgrade anew (or `git revert {short}`) and let "
            "`tidegate check` judge it")
    undone = _TRAILER.search(change.message)
    if undone:
        return Finding(rollback.path, None, None, "error", "rollback.of-rollback",
                       f"the last change to {rollback.service} ({short}) is itself a rollback of "
                       f"{undone.group(1)[:12]}: rolling it back would undo the rollback", hint)
    try:
        up = Release.parse(rollback.release_to) > Release.parse(rollback.release_from)
    except (TypeError, ValueError):
        return None
    if up:
        return Finding(rollback.path, None, None, "error", "rollback.would-upgrade",
                       f"rolling back {rollback.service} would upgrade it ({rollback.release_from} → "
                       f"{rollback.release_to}): its last change ({short}) was a downgrade", hint)
    return None


def validate(source: Source, cloud: str, service: str, head: pygit2.Commit, tree: pygit2.Tree,
             status=None) -> list[Finding]:
    """What `tidegate check --base <head>` would say about the rollback's tree, plus the
    controller's record of contract phases."""
    loaded = load_cloud(GitTree(tree, source.repo.odb), cloud)
    base = load_cloud(GitTree(head.tree, source.repo.odb), cloud)
    findings = judge(loaded, base, lambda services: source.prior_states(cloud, str(head.id), services))
    if loaded.cloud is None or base.cloud is None:
        return findings
    prior = source.prior_states(cloud, str(head.id), [service]).get(service)
    findings += _contract_recorded(source.repo, cloud, service, base, loaded, prior, status)
    return sorted(set(findings))


def _contract_recorded(repo, cloud, service, base, new, prior, status) -> list[Finding]:
    """The notes live in the repository the controller reads; an operator's clone (or the
    mirror of a remote) may not have them. The controller's status file knows too — of the
    service's own contract, or of any service of its project (one database)."""
    if status is None or prior is None or prior.contract_ran:
        return []
    old, svc = base.cloud.services.get(service), new.cloud.services.get(service)
    if old is None or svc is None or not svc.release < old.release:
        return []
    project = [service] + sorted(name for name, s in base.cloud.services.items()
                                 if s.project == svc.project and name != service)
    for by in project:
        record = (status.contracted or {}).get(by) or {}
        ran_at = record.get("revision")
        if not ran_at:
            continue
        try:
            covered = ran_at == prior.commit or repo.descendant_of(ran_at, prior.commit)
        except (KeyError, ValueError, pygit2.GitError):
            continue                    # a revision this repository does not know: no verdict
        if not covered:
            continue
        whose = "" if by == service else f" of {by} (project {svc.project}: its services share a database)"
        return [Finding(svc.file, None, None, "error", "transition.downgrade",
                        f"{service}: {old.release} → {svc.release} is a downgrade after the contract phase{whose} "
                        f"ran (upgrade {prior.commit[:12]}; at {ran_at[:12]}"
                        f"{', ' + record['at'] if record.get('at') else ''}, per the controller's status of cloud {cloud})",
                        "roll forward with a fix instead, or restore the database backup taken before contract")]
    return []


# -- writing the commit (git CLI) -------------------------------------------------------
def _git(repo_path: str, *args: str, input: str | None = None, env=None) -> str:
    proc = subprocess.run(["git", "-C", repo_path, *args], input=input, capture_output=True, text=True,
                          env=env, timeout=120)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise RepoError(f"git {args[0]}: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout.strip()


def _checked_out_in(repo_path: str, branch: str) -> str | None:
    """The working tree (if any) that has `branch` checked out."""
    listing = _git(repo_path, "worktree", "list", "--porcelain")
    tree = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            tree = line[len("worktree "):]
        elif line == f"branch refs/heads/{branch}" and tree is not None:
            return tree
        elif line == "bare":
            tree = None
    return None


def commit(source: Source, rollback: Rollback, *, sign: bool | None = None) -> str:
    """Record the rollback on its branch and return the new commit id. Refuses (RepoError)
    when the branch moved since `prepare`, or when the branch is checked out in a working
    tree with uncommitted changes. `sign`: None follows the repository's commit.gpgSign."""
    if not rollback.allowed:
        raise RepoError("refusing to commit a rollback that does not pass the checks")
    repo_path = source.repo.path
    if sign is None:
        try:
            sign = _git(repo_path, "config", "--type=bool", "--get", "commit.gpgsign") == "true"
        except RepoError:
            sign = False                 # not set
    worktree = _checked_out_in(repo_path, rollback.branch)
    if worktree is not None:
        dirty = _git(worktree, "status", "--porcelain", "--untracked-files=no")
        if dirty:
            raise RepoError(f"{worktree}: the working tree has uncommitted changes; commit or stash them first "
                            f"(the rollback updates the checked-out branch {rollback.branch})")
    new = _git(repo_path, "commit-tree", rollback.tree, "-p", rollback.head, *(["-S"] if sign else []), "-F", "-",
               input=rollback.message())
    if worktree is not None:
        # fast-forward the checked-out branch: ref, index and files together; fails if it moved
        try:
            _git(worktree, "merge", "--ff-only", "--quiet", new)
        except RepoError as err:
            raise RepoError(f"{worktree}: could not fast-forward {rollback.branch} to the rollback ({err}); "
                            "nothing committed") from None
    else:
        try:
            _git(repo_path, "update-ref", "--create-reflog", "-m", f"tidegate rollback: {rollback.subject}",
                 f"refs/heads/{rollback.branch}", new, rollback.head)
        except RepoError:
            raise RepoError(f"{rollback.branch} moved while rolling back (it is no longer at "
                            f"{rollback.head[:12]}); nothing committed, try again") from None
    rollback.commit = new
    return new
