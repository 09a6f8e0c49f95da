"""The report of `tidegate check` (its --json document), as a library call: the CLI prints
it, the gate's check phase reads it. Every verdict in it comes from the one judge,
validators.check.judge."""
from __future__ import annotations

from validators.check import judge
from validators.load import RepoError, list_clouds, load_cloud

from .source import Source

JSON_VERSION = 1


def check(repo: str, *, rev: str = "HEAD", base: str | None = None, cloud: str | None = None,
          worktree: bool = False) -> dict:
    """Validate and return the report (the --json document)."""
    source = Source(repo)
    if worktree:
        tree, rev_id = source.worktree(), "worktree"
    else:
        commit = source.commit(rev)
        tree, rev_id = source.tree(rev), str(commit.id)
    base_tree = base_id = None
    if base is not None:
        base_commit = source.commit(base)
        base_tree, base_id = source.tree(base), str(base_commit.id)

    names = [cloud] if cloud is not None else list_clouds(tree)
    if not names:
        raise RepoError(f"{repo}: no clouds/<name>/cloud.yaml at {rev_id[:12]}")
    findings = []
    for name in names:
        loaded = load_cloud(tree, name)
        base_loaded = None
        if base_tree is not None:
            try:
                base_loaded = load_cloud(base_tree, name)
            except RepoError:
                base_loaded = None          # a new cloud: nothing to transition from
        found = judge(loaded, base_loaded, lambda services, name=name: source.prior_states(name, base, services))
        findings += [dict(f.as_dict(), cloud=name) for f in sorted(found)]
    summary = {sev: sum(1 for f in findings if f["severity"] == sev) for sev in ("error", "warning", "info")}
    return {"version": JSON_VERSION, "rev": rev_id, "base": base_id, "clouds": names,
            "summary": summary, "findings": findings}
