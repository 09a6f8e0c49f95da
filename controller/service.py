"""The controller as a long-running service: follow a branch, converge each new commit,
repair drift, stop cleanly.

    branch ──(watchdog on refs | fetch every --poll)──▶ new tip ──▶ reconcile(commit), one
    commit at a time, oldest first ──▶ status ──▶ every --drift-interval: reconcile again
    (drift_check) ──▶ SIGTERM: the current step finishes, the loop ends, exit 0

Level-triggered: every wake-up (a ref event, the poll timer, the drift timer) re-reads the
branch tip and compares it with the revision last handed to the controller; an event
that is lost or coalesced costs latency, never correctness. The loop only decides WHEN
and WHICH revision; what a revision does to the cloud is `Controller.reconcile`'s business
(so tests drive the loop with a recorder instead of engines).

Commits are applied one at a time, in first-parent order: when several commits land
between two looks at the branch (a backlog after a restart, a burst of merges), each one
that changes clouds/<cloud>/ is reconciled in turn. Jumping straight to the tip would turn
two allowed upgrades (2025.1 → 2025.2, then 2025.2 → 2026.1) into one transition the
validators must judge as a whole, and skip the intermediate release's migrations.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import pygit2

from validators.load import RepoError

from .source import Source
from .status import Status, StatusUnreadable

log = logging.getLogger("tidegate.run")

MAX_BACKLOG = 200           # more new commits than this at once: go straight to the tip
RETRY_MIN, RETRY_MAX = 2.0, 300.0


# -- one controller per cloud ------------------------------------------------------
class AlreadyRunning(Exception):
    def __init__(self, cloud: str, pid: str):
        super().__init__(f"another controller (pid {pid or '?'}) already manages cloud {cloud}")
        self.pid = pid


class ControllerLock:
    """An exclusive fcntl lock on state-dir/<cloud>/controller.lock, holding our pid.

    The kernel drops the lock when the process dies (even by SIGKILL), so a stale file is
    never mistaken for a live controller. The file itself is never removed: removing a
    lock file races with the next process that opens it."""

    def __init__(self, state_dir: str | os.PathLike, cloud: str):
        self.cloud = cloud
        self.path = Path(state_dir) / cloud / "controller.lock"
        self._fd: int | None = None

    def acquire(self) -> "ControllerLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise AlreadyRunning(self.cloud, holder) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# -- the branch being followed -------------------------------------------------------
def is_url(repo: str) -> bool:
    """A URL (scheme://… or scp-like user@host:path) is fetched into a mirror; anything
    else is a local repository watched in place."""
    return "://" in repo or bool(re.match(r"^[\w.+-]+@[\w.-]+:", repo))


class Branch(Protocol):
    source: Source

    def tip(self) -> str | None: ...
    def sync(self) -> None: ...
    def watch(self, notify: Callable[[], None]) -> None: ...
    def close(self) -> None: ...


class LocalBranch:
    """A branch of a repository on this machine (bare or not), watched with watchdog:
    git moves `refs/heads/<branch>.lock` onto the ref (or rewrites `packed-refs`) on
    every commit, push, merge or reset, so an inotify event on either path is a change."""

    def __init__(self, path: str | os.PathLike, branch: str):
        self.source = Source(path)
        self.repo = self.source.repo
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        gitdir = Path(self.repo.path)
        common = gitdir / "commondir"          # a linked worktree keeps its refs in the main git dir
        if common.is_file():
            gitdir = (gitdir / common.read_text().strip()).resolve()
        self.gitdir = Path(os.path.realpath(gitdir))
        self.watched = {str(self.gitdir / "refs" / "heads" / branch), str(self.gitdir / "packed-refs")}
        self._observer = None

    def tip(self) -> str | None:
        ref = self.repo.references.get(self.ref)
        if ref is None:
            return None
        return str(ref.resolve().target)

    def sync(self) -> None:
        """Nothing to fetch: the repository is the source."""

    def watch(self, notify: Callable[[], None]) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watched = self.watched

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in ("opened", "closed_no_write", "accessed"):
                    return
                paths = {os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")}
                if paths & watched:
                    notify()

        observer = Observer()
        observer.daemon = True
        handler = Handler()
        observer.schedule(handler, str(self.gitdir), recursive=False)                   # packed-refs
        heads = self.gitdir / "refs" / "heads"
        if heads.is_dir():
            observer.schedule(handler, str(heads), recursive=True)                      # branch/with/slashes
        else:
            log.warning("%s has no refs/heads directory: following %s by polling only", self.gitdir, self.branch)
        observer.start()
        self._observer = observer

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


class _Credentials(pygit2.RemoteCallbacks):
    """SSH URLs authenticate with the ssh-agent, or with the key in $TIDEGATE_SSH_KEY
    (services under systemd have no agent)."""

    def credentials(self, url, username_from_url, allowed_types):
        user = username_from_url or "git"
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            key = os.environ.get("TIDEGATE_SSH_KEY")
            if key:
                return pygit2.Keypair(user, key + ".pub", key, "")
            return pygit2.KeypairFromAgent(user)
        if allowed_types & pygit2.enums.CredentialType.USERNAME:
            return pygit2.Username(user)
        return None


class RemoteBranch:
    """A branch of a remote repository, mirrored into a bare repository under the state
    directory (the controller reads that mirror and writes its notes there) and fetched
    every --poll seconds."""

    def __init__(self, url: str, branch: str, mirror: str | os.PathLike):
        self.url = url
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self.refspec = f"+{self.ref}:{self.ref}"     # forced: an upstream force-push is followed
        self.mirror = Path(mirror)
        if (self.mirror / "HEAD").exists():
            try:
                repo = pygit2.Repository(str(self.mirror))
            except pygit2.GitError as err:
                raise RepoError(f"{self.mirror}: not a usable mirror: {err}") from None
            if "origin" in repo.remotes.names():
                if repo.remotes["origin"].url != url:
                    log.info("mirror %s: origin moves from %s to %s", self.mirror, repo.remotes["origin"].url, url)
                    repo.remotes.set_url("origin", url)
            else:
                repo.remotes.create("origin", url, self.refspec)
        elif self.mirror.exists() and any(self.mirror.iterdir()):
            raise RepoError(f"{self.mirror}: exists and is not a git mirror (remove it, or use another --state-dir)")
        else:
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(self.mirror), bare=True)
            repo.remotes.create("origin", url, self.refspec)
        self.source = Source(str(self.mirror))
        self.repo = self.source.repo
        self.last_fetch: float | None = None       # unix time of the last successful fetch
        self.fetch_errors = 0

    def sync(self) -> None:
        """Fetch the branch; raise RepoError when the remote cannot be reached."""
        try:
            self.repo.remotes["origin"].fetch([self.refspec], callbacks=_Credentials())
        except (pygit2.GitError, KeyError, ValueError) as err:
            self.fetch_errors += 1
            raise RepoError(f"fetching {self.branch} from {self.url}: {str(err).strip()}") from None
        self.last_fetch = time.time()

    def tip(self) -> str | None:
        ref = self.repo.references.get(self.ref)
        return None if ref is None else str(ref.resolve().target)

    def watch(self, notify: Callable[[], None]) -> None:
        """Nothing to watch: a remote is polled."""

    def close(self) -> None:
        pass


def open_branch(repo: str, branch: str, state_dir: str | os.PathLike, cloud: str) -> LocalBranch | RemoteBranch:
    if is_url(repo):
        return RemoteBranch(repo, branch, Path(state_dir) / cloud / "source.git")
    return LocalBranch(repo, branch)


# -- which commits to apply ------------------------------------------------------------
def _cloud_tree(commit: pygit2.Commit, cloud: str) -> str | None:
    try:
        return str(commit.tree[f"clouds/{cloud}"].id)
    except KeyError:
        return None


def pending_commits(repo: pygit2.Repository, cloud: str, since: str | None, tip: str) -> list[str]:
    """The commits to reconcile, oldest first, to go from `since` (the revision last
    handed to the controller) to `tip`: the first-parent commits after `since` that change
    clouds/<cloud>/, and always `tip` itself. Just [tip] when `since` is unknown or not an
    ancestor (a first start, a force-push, a backlog over MAX_BACKLOG)."""
    if not since or since == tip:
        return [tip]
    try:
        if not repo.descendant_of(tip, since):
            return [tip]
        commit = repo[tip].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return [tip]
    chain = []
    while str(commit.id) != since:
        chain.append(commit)
        if not commit.parents or len(chain) > MAX_BACKLOG:
            return [tip]               # `since` sits off the first-parent line, or too far back
        commit = commit.parents[0]
    chain.reverse()
    steps = [str(c.id) for c in chain[:-1]
             if _cloud_tree(c, cloud) != _cloud_tree(c.parents[0], cloud)]
    return steps + [tip]


# -- the loop --------------------------------------------------------------------------
class Reconciler(Protocol):
    cancel: threading.Event

    def reconcile(self, rev: str = "HEAD", *, drift_check: bool = False) -> Status: ...


class Service:
    """Follow `branch` and converge `cloud` through `controller` (a Controller, or
    anything with `reconcile(rev, drift_check=)` and a `cancel` Event).

    `current`: the revision the controller last attempted (Status.last_attempted_revision
    at start-up), so a restart resumes from where it was instead of replaying history."""

    def __init__(self, controller: Reconciler, branch: Branch, *, cloud: str, poll: float = 30.0,
                 drift_interval: float = 60.0, debounce: float = 0.05, current: str | None = None):
        self.controller = controller
        self.branch = branch
        self.cloud = cloud
        self.poll = poll
        self.drift_interval = drift_interval
        self.debounce = debounce
        self.cancel = getattr(controller, "cancel", None) or threading.Event()
        self.current = current
        self.status: Status | None = None
        self.wake = threading.Event()
        self._last_event = 0.0
        self._backoff = 0.0
        self._retry_at: float | None = None
        self._branch_missing = False
        self.exceptions = 0                 # reconciles that raised (logged, retried)

    # -- control from other threads (watchdog, signal handler thread, tests) -------------
    def notify(self) -> None:
        self._last_event = time.monotonic()
        self.wake.set()

    def stop(self) -> None:
        """Let the current step finish, then end `run`."""
        self.cancel.set()
        self.wake.set()

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        self.branch.watch(self.notify)
        next_sync = time.monotonic()
        next_drift = time.monotonic() + self.drift_interval
        first = True
        try:
            while not self.cancel.is_set():
                now = time.monotonic()
                if now >= next_sync:
                    next_sync = now + self.poll
                    self._sync()
                tip = self._tip()
                if tip is not None and (first or tip != self.current):
                    first = False
                    self._follow(tip)
                    next_drift = time.monotonic() + self.drift_interval
                elif self._retry_at is not None and now >= self._retry_at and self.current:
                    self._reconcile(self.current)
                    next_drift = time.monotonic() + self.drift_interval
                elif self.drift_interval > 0 and now >= next_drift and self.current:
                    # The revision last attempted, not the last applied: when that revision was
                    # rejected, the controller converges to the last good one by itself, and
                    # its status keeps saying why the branch tip is not running.
                    self._reconcile(self.current, drift_check=True)
                    next_drift = time.monotonic() + self.drift_interval
                if self.cancel.is_set():
                    break
                deadlines = [next_sync] + ([next_drift] if self.drift_interval > 0 else [])
                if self._retry_at is not None:
                    deadlines.append(self._retry_at)
                self._sleep(min(deadlines) - time.monotonic())
        finally:
            self.branch.close()
        log.info("cloud %s: stopped", self.cloud)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.wake.wait(seconds) and not self.cancel.is_set():
            # debounce: a push updates a ref and packed-refs, a fetch several refs
            while (quiet := self._last_event + self.debounce - time.monotonic()) > 0:
                time.sleep(quiet)
        self.wake.clear()

    def _sync(self) -> None:
        try:
            self.branch.sync()
        except RepoError as err:
            log.warning("cloud %s: %s (retrying in %g s)", self.cloud, err, self.poll)

    def _tip(self) -> str | None:
        try:
            tip = self.branch.tip()
        except (pygit2.GitError, KeyError, ValueError) as err:
            log.warning("cloud %s: cannot read %s: %s", self.cloud, getattr(self.branch, "ref", "the branch"), err)
            return None
        if tip is None and not self._branch_missing:
            log.warning("cloud %s: branch %s does not exist (any more); keeping the cloud as it is",
                        self.cloud, getattr(self.branch, "branch", "?"))
        self._branch_missing = tip is None
        return tip

    def _follow(self, tip: str) -> None:
        steps = pending_commits(self.branch.source.repo, self.cloud, self.current, tip)
        if len(steps) > 1:
            log.info("cloud %s: %d new commits to apply in order, up to %s", self.cloud, len(steps), tip[:12])
        for rev in steps:
            if self.cancel.is_set():
                return
            self._reconcile(rev)

    def _reconcile(self, rev: str, *, drift_check: bool = False) -> Status | None:
        what = "drift check at" if drift_check else "reconciling"
        log.info("cloud %s: %s %s", self.cloud, what, rev[:12])
        started = time.monotonic()
        self.current = rev
        try:
            status = self.controller.reconcile(rev, drift_check=drift_check)
        except (StatusUnreadable, RepoError) as err:      # the operator must act: one line, no traceback
            self.exceptions += 1
            log.error("cloud %s: not reconciling %s: %s (checked again in %g s)", self.cloud, rev[:12], err,
                      self._retry_in())
            return None
        except Exception:  # noqa: BLE001 — one bad reconcile must not end the service: log, retry later
            self.exceptions += 1
            log.exception("cloud %s: reconciling %s failed; retrying in %g s", self.cloud, rev[:12], self._retry_in())
            return None
        self.status = status
        log.info("cloud %s: %s: %s (%s)%s [%.1f s]", self.cloud, rev[:12], status.condition(), status.reason,
                 f": {status.message}" if status.message else "", time.monotonic() - started)
        if status.reason == "EngineUnavailable":       # temporary: retry with backoff (kopf's classification)
            delay = self._retry_in()
            log.info("cloud %s: engine unavailable; retrying in %g s", self.cloud, delay)
            self.controller.record_retry(status, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime(time.time() + delay)))
        else:
            self._backoff, self._retry_at = 0.0, None
        return status

    def _retry_in(self) -> float:
        self._backoff = min(RETRY_MAX, max(RETRY_MIN, self._backoff * 2))
        if self.drift_interval > 0:
            self._backoff = min(self._backoff, max(RETRY_MIN, self.drift_interval))
        self._retry_at = time.monotonic() + self._backoff
        return self._backoff

    # -- what /metrics adds to the status ----------------------------------------------
    def metrics(self) -> dict:
        extra = {"tidegate_reconcile_exceptions_total":
                 ("counter", "Reconciles that raised an unexpected error (logged, retried)", self.exceptions)}
        if isinstance(self.branch, RemoteBranch):
            extra["tidegate_source_fetch_errors_total"] = (
                "counter", "Failed fetches of the branch from the remote", self.branch.fetch_errors)
            if self.branch.last_fetch is not None:
                extra["tidegate_source_last_fetch_timestamp_seconds"] = (
                    "gauge", "Unix time of the last successful fetch", round(self.branch.last_fetch, 3))
        return extra
