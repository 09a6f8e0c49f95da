"""`tidegate plan`, `tidegate apply` and `tidegate status`."""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

from controller.errors import CommandError
from controller.status import Status
from validators.load import RepoError

DEFAULT_STATE = os.environ.get("TIDEGATE_STATE_DIR", ".tidegate/state")


def _common(p, rev=True):
    p.add_argument("--repo", default=".", help="git repository holding clouds/ (default: current directory)")
    p.add_argument("--cloud", required=True, help="cloud name (clouds/<name>/)")
    if rev:
        p.add_argument("--rev", default="HEAD", help="revision to converge to (default HEAD)")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help=f"controller state (default {DEFAULT_STATE}, or $TIDEGATE_STATE_DIR)")
    p.add_argument("--engine-url", action="append", default=[], metavar="KIND=URL",
                   help="engine for hosts without a url, e.g. podman=unix:///run/podman/podman.sock")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub):
    p = sub.add_parser("plan", help="show what converging to a revision would do (changes nothing)",
                       description="Validate REV, observe the engines read-only, and print the plan: waves, "
                                   "steps per host and service, untouched services, migration phases, "
                                   "estimated time and impact. Exit 0, 1 if REV is invalid, 2 on errors.")
    _common(p)
    signing_options(p)
    p.set_defaults(func=run_plan)
    p = sub.add_parser("apply", help="converge the cloud to a revision once",
                       description="Validate REV (and the transition from the last applied revision), "
                                   "converge with health-gated rolling replacement, record status. "
                                   "Exit 0 converged, 1 rejected or failed, 2 usage or repository error.")
    _common(p)
    signing_options(p)
    p.add_argument("--quiet", action="store_true", help="no per-step progress")
    p.set_defaults(func=run_apply)
    p = sub.add_parser("status", help="last applied revision, desired vs running, last error, history")
    p.add_argument("--cloud", required=True)
    p.add_argument("--state-dir", default=DEFAULT_STATE)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_status)
    register_down(sub)
    p = sub.add_parser("contract", help="run a service's owed contract phase (ends its rollback window)",
                       description="Run the contract jobs of SERVICE's last upgrade at the last applied "
                                   "revision, once every replica runs the new release. Clouds with "
                                   "`policy.contract: manual` keep the rollback window open until this is run. "
                                   "Exit 0 done, 1 refused or failed (the reason is printed), 2 usage errors.")
    _common(p, rev=False)
    p.add_argument("--service", required=True, help="the service whose contract phase is owed")
    p.set_defaults(func=run_contract)


def urls(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        kind, sep, url = pair.partition("=")
        if not sep or kind not in ("podman", "docker"):
            raise CommandError(f"--engine-url {pair!r}: expected podman=URL or docker=URL", 2)
        out[kind] = url
    return out


def signing_options(p) -> None:
    p.add_argument("--require-signed", action="store_true",
                   help="apply only commits signed by a trusted key (given by --allowed-signers and/or --gpg-keyring)")
    p.add_argument("--allowed-signers", metavar="FILE",
                   help="SSH allowed_signers file (ssh-keygen(1) format; principal = committer e-mail); implies --require-signed")
    p.add_argument("--gpg-keyring", metavar="FILE",
                   help="OpenPGP public keys (armored or binary) to trust; implies --require-signed")


def verifier(args):
    """The signed-commit policy of `run` and `apply`, or None when none is asked for."""
    if not (args.require_signed or args.allowed_signers or args.gpg_keyring):
        return None
    from controller.signing import SigningSetupError, Verifier, check_setup
    try:
        check_setup(args.allowed_signers, args.gpg_keyring)
    except SigningSetupError as err:
        raise CommandError(str(err), 2) from None
    return Verifier(args.allowed_signers, args.gpg_keyring)


def lock(args):
    """One controller per cloud: `run`, `apply`, `contract` and `down` take the same lock,
    so a one-off command never changes the engines beside a running controller."""
    from controller.service import AlreadyRunning, ControllerLock
    held = ControllerLock(args.state_dir, args.cloud)
    try:
        return held.acquire()
    except AlreadyRunning as err:
        raise CommandError(str(err), 2) from None
    except OSError as err:
        raise CommandError(f"{held.path}: {err.strerror}", 2) from None


@contextmanager
def locked(args):
    """The cloud's lock held for the block; a repository error in it is a usage error (2)."""
    held = lock(args)
    try:
        yield
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    finally:
        held.release()


def controller(args, progress=None, verify_commit=None):
    # imported here: `tidegate check` must not pay for (or depend on) the engine stack
    from controller.reconcile import Controller
    from controller.source import Source
    try:
        source = Source(args.repo)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    return Controller(source, args.cloud, state_dir=args.state_dir, engine_urls=urls(args.engine_url),
                      progress=progress, verify_commit=verify_commit)


def run_plan(args) -> int:
    ctl = controller(args, verify_commit=verifier(args))
    try:
        target = ctl.target(args.rev, base=Status.load(args.state_dir, args.cloud).last_applied_revision)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    if not target.valid:
        for f in target.findings:
            if f.severity == "error":
                print(f.render(), file=sys.stderr)
        print(f"tidegate: {target.commit[:12]} is invalid: nothing would be applied", file=sys.stderr)
        return 1
    the_plan, unreachable = ctl.plan(target.desired)
    if args.json:
        print(json.dumps(dict(the_plan.as_dict(), unreachable=unreachable), indent=2))
    else:
        print(the_plan.render())
    return 0


def _progress(event: str, step, detail: str) -> None:
    mark = {"start": "..", "done": "ok", "failed": "!!", "retry": "~~"}[event]
    if event == "start":
        return
    print(f"  [{mark}] {step.service:<16} {step.describe()}{'  ' + detail if detail else ''}", flush=True)


def run_apply(args) -> int:
    ctl = controller(args, progress=None if args.quiet or args.json else _progress, verify_commit=verifier(args))
    with locked(args):
        status = ctl.reconcile(args.rev)
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        print(status.render())
    return 0 if status.condition() == "Ready" and status.last_applied_revision == status.last_attempted_revision else 1


def run_status(args) -> int:
    status = Status.load(args.state_dir, args.cloud)
    if status.reason == "NeverApplied" and not Status.path(args.state_dir, args.cloud).exists():
        raise CommandError(f"no status for cloud {args.cloud!r} in {args.state_dir} (never applied here?)", 2)
    print(json.dumps(status.as_dict(), indent=2) if args.json else status.render())
    return 0


def register_down(sub):
    p = sub.add_parser("down", help="remove a cloud's containers and networks (volumes only with --volumes)",
                       description="Stop (gracefully) and remove every container and network labelled with the "
                                   "cloud on each of its hosts. Named volumes — the cloud's data — stay unless "
                                   "--volumes is given. Unlabelled containers are never touched.")
    _common(p)
    p.add_argument("--volumes", action="store_true", help="also remove the cloud's named volumes (its data)")
    p.set_defaults(func=run_down)


def run_down(args) -> int:
    from controller.reconcile import trust_every_commit
    ctl = controller(args, verify_commit=trust_every_commit)     # reads the hosts; applies nothing
    try:
        target = ctl.target(args.rev)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    if target.desired is None:
        raise CommandError(f"{args.repo}: clouds/{args.cloud} at {args.rev} does not load; fix it first", 2)
    with locked(args):
        left_any = _remove(ctl, target, args)
    if not args.volumes:
        print("named volumes kept (--volumes removes them)")
    return 2 if left_any else 0


def _remove(ctl, target, args) -> bool:
    from controller.engines import EngineError
    from controller.teardown import remove_cloud
    left_any = False
    for host, engine in ctl.engines(target.desired).items():
        try:
            removed, left = remove_cloud(engine, args.cloud, volumes=args.volumes)
        except EngineError as err:
            print(f"{host}: {err}", file=sys.stderr)
            left_any = True
            continue
        print(f"{host}: removed {len(removed)} item(s)" + (f"; left {', '.join(left)}" if left else ""))
        left_any |= bool(left)
    return left_any


def run_contract(args) -> int:
    from controller.reconcile import ContractRefused
    ctl = controller(args, progress=None if args.json else _progress)
    try:
        with locked(args):
            status = ctl.contract(args.service)
    except ContractRefused as err:
        print(f"tidegate: contract refused: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        print(f"{args.service}: contract phase ran; no rollback past {status.last_applied_revision[:12]} from now on")
    return 0
