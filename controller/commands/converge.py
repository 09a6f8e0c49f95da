"""`tidegate plan`, `tidegate apply` and `tidegate status`."""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

from controller import engine_option
from controller.errors import CommandError
from controller.status import Status, StatusUnreadable
from validators.load import CLOUD_NAME, RepoError

def default_state_dir(environ=os.environ, euid: int | None = None, home: str | None = None) -> str:
    """$TIDEGATE_STATE_DIR, else /var/lib/tidegate for root, else $XDG_STATE_HOME/tidegate
    (~/.local/state/tidegate): never relative to the current directory, where a controller
    started from elsewhere would find no status, no lock and no history."""
    if environ.get("TIDEGATE_STATE_DIR"):
        return environ["TIDEGATE_STATE_DIR"]
    if (os.geteuid() if euid is None else euid) == 0:
        return "/var/lib/tidegate"
    state_home = environ.get("XDG_STATE_HOME") or os.path.join(home or os.path.expanduser("~"), ".local", "state")
    return os.path.join(state_home, "tidegate")


DEFAULT_STATE = default_state_dir()


def _common(p, rev=True):
    p.add_argument("--repo", default=".", help="git repository holding clouds/ (default: current directory)")
    p.add_argument("--cloud", required=True, help="cloud name (clouds/<name>/)")
    if rev:
        p.add_argument("--rev", default="HEAD", help="revision to converge to (default HEAD)")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help=f"controller state (default {DEFAULT_STATE}, or $TIDEGATE_STATE_DIR)")
    engine_option.add(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--age-key", metavar="FILE",
                   help="the controller's age key, to decrypt the cloud's secrets (default $TIDEGATE_AGE_KEY_FILE)")
    if rev:
        p.add_argument("--assume-base", metavar="REV",
                       help="judge the change from REV: only when the last applied commit is unknown "
                            "(status lost, commit force-pushed away) and cannot be rebuilt from what runs")


def register(sub):
    p = sub.add_parser("plan", help="show what converging to a revision would do (changes nothing)",
                       description="Validate REV, observe the engines read-only, and print the plan: waves, "
                                   "steps per host and service, untouched services, migration phases, "
                                   "estimated time and impact. Exit 0, 1 if REV is invalid, 2 on errors (an "
                                   "engine that did not answer included).")
    _common(p)
    signing_options(p)
    p.set_defaults(func=run_plan)
    p = sub.add_parser("apply", help="converge the cloud to a revision once",
                       description="Validate REV (and the transition from the last applied revision), "
                                   "converge with health-gated rolling replacement, record status. "
                                   "Exit 0 converged, 1 rejected or failed, 2 usage or repository error, "
                                   "or an engine that did not answer.")
    _common(p)
    signing_options(p)
    lease_option(p)
    p.add_argument("--quiet", action="store_true", help="no per-step progress")
    p.add_argument("--retry-failed", action="store_true",
                   help="apply REV even though its rollout or its analysis failed before (status: failed revision); "
                        "without it, a failed commit is not applied again until a newer one")
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
                                   "Exit 0 done, 1 refused or failed (the reason is printed), 2 usage errors "
                                   "or an engine that did not answer.")
    _common(p, rev=False)
    p.add_argument("--service", required=True, help="the service whose contract phase is owed")
    lease_option(p)
    p.set_defaults(func=run_contract)


def urls(specs: list[str]) -> dict[str, str]:
    return engine_option.urls(specs)


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


def cloud_name(name: str) -> str:
    """The cloud's name, refused before it becomes a path: state-dir/<cloud>/controller.lock
    of `--cloud ../x` would be created outside the state directory. Only a name cloud.yaml
    may carry (and its folder must equal) can ever be applied."""
    if not CLOUD_NAME.fullmatch(name):
        raise CommandError(f"invalid cloud name {name!r}: a cloud name is lowercase letters, digits "
                           "and '-', a letter first (at most 40)", 2)
    return name


def lock(args):
    """One controller per cloud: `run`, `apply`, `contract` and `down` take the same lock,
    so a one-off command never changes the engines beside a running controller."""
    from controller.service import AlreadyRunning, ControllerLock
    cloud_name(args.cloud)
    held = ControllerLock(args.state_dir, args.cloud)
    try:
        return held.acquire()
    except AlreadyRunning as err:
        raise CommandError(str(err), 2) from None
    except OSError as err:
        raise CommandError(f"{held.path}: {err.strerror}", 2) from None


def lease_option(p) -> None:
    p.add_argument("--break-lease", action="store_true",
                   help="take the cloud's hosts even though another controller's lease on them has not expired "
                        "(only when that controller is gone for good)")


def lease(args, ctl, revs, on_lost=None):
    """The cloud's lease on the engines of its hosts (controller/lease.py), taken and renewed
    until released; the hosts are those of the first of `revs` whose cloud.yaml loads.
    Another controller's lease is a usage error (2) naming it."""
    import logging

    from controller.lease import Lease, LeaseHeld
    from controller.reconcile import connect_hosts
    from validators.load import load_cloud
    # a host that does not answer gets its lease at the next renewal: `run` logs that; a
    # one-shot command reports the host itself (status, exit 2), in one line, not three
    logging.getLogger("tidegate.lease").addHandler(logging.NullHandler())
    for rev in filter(None, revs):
        try:
            cloud = load_cloud(ctl.source.tree(str(ctl.source.commit(rev).id)), args.cloud).cloud
        except RepoError:
            continue
        if cloud is not None:
            break
    else:
        return None                          # nothing loads: nothing will be converged either
    try:
        held = Lease(connect_hosts(cloud, ctl.engine_urls), args.cloud, args.state_dir,
                     force=getattr(args, "break_lease", False), on_lost=on_lost)
        return held.acquire().start()
    except (LeaseHeld, ValueError) as err:
        raise CommandError(str(err), 2) from None


@contextmanager
def locked(args, ctl=None, rev=None):
    """The cloud's lock held for the block, and (given the controller) its lease on the
    cloud's hosts at `rev` (or at the last applied revision when `rev` does not load); a
    repository error in it is a usage error (2)."""
    held = lock(args)
    leased = None
    try:
        if ctl is not None:
            def lost(message):
                print(f"tidegate: {message}; stopping after the current step", file=sys.stderr, flush=True)
                ctl.cancel.set()
            leased = lease(args, ctl, [rev, Status.load(args.state_dir, args.cloud).last_applied_revision], lost)
        yield
    except (RepoError, StatusUnreadable) as err:
        raise CommandError(str(err), 2) from None
    finally:
        if leased is not None:
            leased.release()
            for engine in leased.engines.values():
                engine.close()
        held.release()


def controller(args, progress=None, verify_commit=None):
    # imported here: `tidegate check` must not pay for (or depend on) the engine stack
    from controller.reconcile import Controller
    from controller.source import Source
    cloud_name(args.cloud)
    try:
        source = Source(args.repo)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    return Controller(source, args.cloud, state_dir=args.state_dir, engine_urls=urls(args.engine),
                      progress=progress, verify_commit=verify_commit,
                      assume_base=getattr(args, "assume_base", None), identities=identities(args))


def identities(args) -> list:
    """The age key of `--age-key`, else of $TIDEGATE_AGE_KEY_FILE (none: secrets cannot be
    decrypted, which the cloud's findings say if it uses any). A bad key file: exit 2."""
    from controller.secrets import SecretError, identities_from_env, load_identities
    try:
        path = getattr(args, "age_key", None)
        return load_identities(path) if path else identities_from_env()
    except SecretError as err:
        raise CommandError(str(err), 2) from None


def run_plan(args) -> int:
    ctl = controller(args, verify_commit=verifier(args))
    from controller.reconcile import BaseUnknown
    try:
        target = ctl.target(args.rev, base=ctl.bases(Status.load(args.state_dir, args.cloud), args.rev))
    except (RepoError, StatusUnreadable) as err:
        raise CommandError(str(err), 2) from None
    except BaseUnknown as err:
        if err.temporary:
            raise CommandError(f"no engine answered: {err}", 2) from None
        raise CommandError(f"cannot judge {args.rev}: {err}", 1) from None
    if not target.valid:
        for f in target.findings:
            if f.severity == "error":
                print(f.render(), file=sys.stderr)
        print(f"tidegate: {target.commit[:12]} is invalid: nothing would be applied", file=sys.stderr)
        return 1
    the_plan, unreachable = ctl.plan(target.desired)
    if unreachable and set(unreachable) >= set(target.desired.cloud.hosts):
        raise CommandError("no engine answered: " + "; ".join(unreachable[h] for h in sorted(unreachable)), 2)
    if args.json:
        print(json.dumps(dict(the_plan.as_dict(), unreachable=unreachable), indent=2))
    else:
        print(the_plan.render())
    if unreachable:                     # a plan without some hosts' part: an environment error
        print("tidegate: the plan leaves out what runs on " + "; ".join(
            unreachable[h] for h in sorted(unreachable)), file=sys.stderr)
        return 2
    return 0


def _progress(event: str, step, detail: str) -> None:
    mark = {"start": "..", "done": "ok", "warning": "!?", "failed": "!!", "retry": "~~"}[event]
    if event == "start":
        return
    print(f"  [{mark}] {step.service:<16} {step.describe()}{'  ' + detail if detail else ''}", flush=True)


def run_apply(args) -> int:
    ctl = controller(args, progress=None if args.quiet or args.json else _progress, verify_commit=verifier(args))
    with locked(args, ctl, args.rev):
        status = ctl.reconcile(args.rev, retry_failed=args.retry_failed)
    engines_failed = status.reason == "EngineUnavailable"    # not the change's fault: exit 2
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    elif engines_failed:
        raise CommandError(f"cloud {args.cloud} not converged: {status.message.removeprefix('not converged: ')}; "
                           f"`tidegate status --cloud {args.cloud}` shows the rest", 2)
    else:
        print(status.render())
    if engines_failed:
        return 2
    return 0 if status.condition() == "Ready" and status.last_applied_revision == status.last_attempted_revision else 1


def run_status(args) -> int:
    cloud_name(args.cloud)
    try:
        status = Status.load(args.state_dir, args.cloud)
    except StatusUnreadable as err:
        raise CommandError(str(err), 2) from None
    if status.reason == "NeverApplied" and not Status.path(args.state_dir, args.cloud).exists():
        raise CommandError(f"no status for cloud {args.cloud!r} in {args.state_dir} (never applied here?)", 2)
    print(json.dumps(status.as_dict(), indent=2) if args.json else status.render())
    if status.unreachable:               # what runs there is not known: an environment error
        print("tidegate: at the last reconcile, " + "; ".join(
            f"host {h}: {e}" if not e.startswith(f"host {h}") else e
            for h, e in sorted(status.unreachable.items())), file=sys.stderr)
        return 2
    if status.reason == "EngineUnavailable":
        print(f"tidegate: {status.message}", file=sys.stderr)
        return 2
    return 0


def register_down(sub):
    p = sub.add_parser("down", help="remove a cloud's containers and networks (volumes only with --volumes)",
                       description="Stop (gracefully) and remove every container and network labelled with the "
                                   "cloud on each of its hosts. Named volumes — the cloud's data — stay unless "
                                   "--volumes is given. Unlabelled containers are never touched.")
    _common(p)
    p.add_argument("--volumes", action="store_true", help="also remove the cloud's named volumes (its data)")
    lease_option(p)
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
    with locked(args, ctl, args.rev):
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
    from controller.reconcile import ContractRefused, ContractUnreachable
    ctl = controller(args, progress=None if args.json else _progress)
    try:
        with locked(args, ctl):
            status = ctl.contract(args.service)
    except ContractRefused as err:
        print(f"tidegate: contract refused: {err}", file=sys.stderr)
        return 1
    except ContractUnreachable as err:
        raise CommandError(str(err), 2) from None
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        print(f"{args.service}: contract phase ran; no rollback past {status.last_applied_revision[:12]} from now on")
    return 0
