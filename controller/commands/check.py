"""`tidegate check`: validate clouds at a revision, and the transition from a base."""
from __future__ import annotations

import json
import sys

from controller.errors import CommandError
from controller.report import check
from validators.load import RepoError
from validators.rules import catalogue


def register(sub):
    p = sub.add_parser("check", help="validate cloud state (and a base→rev transition) before it merges",
                       description="Validate every cloud (or one) at REV; with --base also the "
                                   "transition base→REV. Exit 0 clean, 1 errors found, 2 usage or repository error.")
    p.add_argument("--repo", default=".", help="git repository (bare or not); default: current directory")
    p.add_argument("--cloud", help="only this cloud (default: every clouds/<name>/)")
    p.add_argument("--rev", help="revision to validate (default HEAD)")
    p.add_argument("--base", help="base revision: also validate the upgrade from it (a pull request's merge base)")
    p.add_argument("--worktree", action="store_true", help="validate the working tree (uncommitted files) instead of --rev")
    p.add_argument("--json", action="store_true", help="machine-readable report (stable; see README)")
    p.add_argument("--list-rules", action="store_true", help="list every rule id and what it checks")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list_rules:
        return _list_rules(args.json)
    if args.worktree and args.rev is not None:
        raise CommandError("--rev and --worktree exclude each other: --worktree validates the "
                           "uncommitted files, --rev a commit", 2)
    if args.cloud is not None and not args.cloud.strip():
        raise CommandError("--cloud needs a cloud name (leave it out to check every cloud)", 2)
    try:
        report = check(args.repo, rev=args.rev or "HEAD", base=args.base, cloud=args.cloud,
                       worktree=args.worktree)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_human(report)
    return 1 if report["summary"]["error"] else 0


def _print_human(report: dict) -> None:
    current = None
    for f in report["findings"]:
        if f["file"] != current:
            if current is not None:
                print()
            current = f["file"]
        where = f["file"] + (f":{f['line']}" if f["line"] else "") + (f":{f['column']}" if f["column"] else "")
        print(f"{where}: {f['severity']}: {f['message']} [{f['rule']}]")
        if f["hint"]:
            print(f"    hint: {f['hint']}")
    s = report["summary"]
    what = f"{', '.join(report['clouds'])} at {report['rev'][:12]}"
    if report["base"]:
        what += f" (from base {report['base'][:12]})"
    counts = ", ".join(f"{n} {sev}{'s' if n != 1 else ''}" for sev, n in s.items() if n)
    if report["findings"]:
        print()
    print(f"{'FAIL' if s['error'] else 'ok'}: {what}: {counts or 'no findings'}")


def _list_rules(as_json: bool) -> int:
    rules = catalogue()
    if as_json:
        json.dump([{"id": r.id, "layer": r.layer, "severity": r.severity, "summary": r.summary}
                   for r in rules], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width = max(len(r.id) for r in rules)
        for r in rules:
            print(f"{r.id:<{width}}  {r.severity:<7}  {r.summary}")
    return 0
