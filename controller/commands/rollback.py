"""`tidegate rollback`: undo the last change to one service, as a new commit that the
controller then applies like any other (see controller/rollback.py)."""
from __future__ import annotations

import json
import sys

from controller.errors import CommandError
from validators.load import RepoError

from .converge import DEFAULT_STATE


def register(sub):
    p = sub.add_parser(
        "rollback", help="commit a rollback of one service to its state before its last change",
        description="Find the last commit on BRANCH (first-parent) that changed clouds/CLOUD/services/SERVICE.yaml "
                    "and commit a change that restores the file as it was before — `git revert` limited to "
                    "that service. The result is validated first (as `tidegate check --base BRANCH` would, "
                    "including the contract phases recorded in refs/notes/tidegate and in the controller's "
                    "status): a rollback the rules forbid is refused. Works on bare repositories; when BRANCH "
                    "is checked out, the working tree must be clean and is fast-forwarded. Exit 0 committed "
                    "(or allowed, with --dry-run), 1 refused by the rules, 2 usage or repository error.")
    p.add_argument("--repo", default=".", help="git repository (bare or not); default: current directory")
    p.add_argument("--cloud", required=True, help="cloud name (clouds/<name>/)")
    p.add_argument("--service", required=True, help="service to roll back (clouds/<cloud>/services/<service>.yaml)")
    p.add_argument("--branch", default="main", help="branch to commit the rollback to (default main)")
    p.add_argument("--state-dir", default=DEFAULT_STATE,
                   help=f"the controller's state, consulted for contract phases when present (default {DEFAULT_STATE})")
    p.add_argument("--yes", "-y", action="store_true", help="commit without asking")
    p.add_argument("--dry-run", action="store_true", help="show and validate the rollback, commit nothing")
    sign = p.add_mutually_exclusive_group()
    sign.add_argument("--sign", "-S", dest="sign", action="store_const", const=True, default=None,
                      help="sign the commit (default: as the repository's commit.gpgSign says)")
    sign.add_argument("--no-sign", dest="sign", action="store_const", const=False, help="do not sign the commit")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.set_defaults(func=run)


def run(args) -> int:
    from controller import rollback as rb
    from controller.source import Source
    from controller.status import Status, StatusUnreadable

    try:
        status = Status.load(args.state_dir, args.cloud)
    except StatusUnreadable as err:
        raise CommandError(str(err), 2) from None
    try:
        source = Source(args.repo)
        plan = rb.prepare(source, args.cloud, args.service, args.branch, status=status)
    except RepoError as err:
        raise CommandError(str(err), 2) from None

    out = sys.stderr if args.json else sys.stdout
    _show(plan, out)
    if not plan.allowed:
        if args.json:
            print(json.dumps(plan.as_dict(), indent=2))
        print(f"tidegate: refusing to roll back {args.service}: "
              f"{next(f.message for f in plan.findings if f.severity == 'error')}", file=sys.stderr)
        return 1
    if args.dry_run:
        if args.json:
            print(json.dumps(plan.as_dict(), indent=2))
        print("dry run: nothing committed", file=out)
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("not committed: re-run with --yes to commit the rollback (stdin is not a terminal)", 2)
        answer = input(f"Commit this rollback to {args.branch}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing committed", file=out)
            return 0
    try:
        commit = rb.commit(source, plan, sign=args.sign)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    if args.json:
        print(json.dumps(plan.as_dict(), indent=2))
    print(f"committed {commit[:12]} on {args.branch}: {plan.subject}", file=out)
    return 0


def _show(plan, out) -> None:
    print(plan.subject, file=out)
    change = (f"release {plan.release_from} → {plan.release_to}" if plan.release_from != plan.release_to
              else "same release")
    if plan.restored is None:
        change = "the service is removed (it did not exist before)"
    print(f"  {plan.path}: {change}, as before {plan.reverts[:12]} \"{plan.reverts_subject}\"", file=out)
    for path in plan.also_changed:
        print(f"  note: {plan.reverts[:12]} also changed {path}, which stays as it is "
              f"(`git revert {plan.reverts[:12]}` undoes the whole commit)", file=out)
    diff = plan.diff()
    if diff:
        print("", file=out)
        for line in diff.splitlines():
            print(f"  {line}", file=out)
        print("", file=out)
    for f in plan.findings:
        print(f.render(), file=out)
