"""`tidegate run`: the controller as a service — follow a branch and keep one cloud
converged to it (see controller/service.py; contrib/tidegate@.service runs it under systemd)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from controller import engine_option
from controller.errors import CommandError
from validators.load import RepoError

from .converge import DEFAULT_STATE, identities, lease, lease_option, lock, signing_options, urls, verifier


def register(sub):
    p = sub.add_parser(
        "run", help="follow a branch and keep a cloud converged to it (the controller service)",
        description="Follow BRANCH of REPO and converge CLOUD to each new commit, in order: a local "
                    "repository is watched (a commit is seen within a second), a URL is mirrored under "
                    "the state directory and fetched every --poll seconds. Re-observes the engines every "
                    "--drift-interval seconds and repairs drift. SIGTERM/SIGINT: the current step "
                    "finishes, then exit 0. Exit 2 when the repository, the branch or the cloud cannot be "
                    "read at start-up, or when another controller already manages the cloud.")
    p.add_argument("--repo", default=".", help="local repository (bare or not) or URL (https://, ssh://, file://, user@host:path)")
    p.add_argument("--branch", default="main", help="branch to follow (default main)")
    p.add_argument("--cloud", required=True, help="cloud name (clouds/<name>/)")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help=f"controller state (default {DEFAULT_STATE}, or $TIDEGATE_STATE_DIR)")
    engine_option.add(p)
    p.add_argument("--poll", type=_seconds, default=30.0, metavar="SECONDS",
                   help="fetch interval for a remote URL; for a local repository, a safety re-read of the branch "
                        "besides the file watch (default 30)")
    p.add_argument("--drift-interval", type=_seconds, default=60.0, metavar="SECONDS",
                   help="re-observe the engines and repair drift this often; 0 turns it off (default 60)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="N",
                   help="serve Prometheus metrics on http://ADDRESS:N/metrics; 0 turns it off (default 0)")
    p.add_argument("--metrics-address", default="", metavar="ADDRESS",
                   help="address the metrics endpoint binds (default: all interfaces)")
    signing_options(p)
    p.add_argument("--assume-base", metavar="REV",
                   help="judge changes from REV: only when the last applied commit is unknown (status lost, "
                        "commit force-pushed away) and cannot be rebuilt from what runs")
    p.add_argument("--age-key", metavar="FILE",
                   help="the controller's age key, to decrypt the cloud's secrets (default $TIDEGATE_AGE_KEY_FILE)")
    p.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    lease_option(p)
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must not be negative")
    return value


def run(args) -> int:
    # imported here: `tidegate check` must not pay for (or depend on) the engine stack
    from controller.reconcile import Controller
    from controller.service import Service, open_branch
    from controller.status import Status, StatusUnreadable

    engine_urls = urls(args.engine)
    if args.poll <= 0:
        raise CommandError("--poll must be more than 0 seconds", 2)
    if not 0 <= args.metrics_port <= 65535:
        raise CommandError(f"--metrics-port {args.metrics_port}: not a port number", 2)
    verify_commit = verifier(args)
    # under systemd (JOURNAL_STREAM set) the journal stamps each line itself
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM")
                        else "%(asctime)s %(levelname)s %(message)s")

    held = lock(args)
    metrics = leased = None
    try:
        log = logging.getLogger("tidegate.run")
        try:
            branch = open_branch(args.repo, args.branch, args.state_dir, args.cloud)
        except RepoError as err:
            raise CommandError(str(err), 2) from None
        try:
            branch.sync()                    # a remote's first fetch
        except RepoError as err:
            if branch.tip() is None:         # nothing fetched ever: nothing to converge to
                raise CommandError(str(err), 2) from None
            log.warning("%s; starting from the mirror's last fetch", err)
        tip = branch.tip()
        if tip is None:
            raise CommandError(f"{args.repo}: no branch {args.branch!r}", 2)
        if branch.source.tree(tip).kind(f"clouds/{args.cloud}/cloud.yaml") != "file":
            raise CommandError(f"{args.repo}: no clouds/{args.cloud}/cloud.yaml on {args.branch} at {tip[:12]}", 2)

        controller = Controller(branch.source, args.cloud, state_dir=args.state_dir, engine_urls=engine_urls,
                                progress=_progress, verify_commit=verify_commit, assume_base=args.assume_base,
                                identities=identities(args))
        try:
            state = Status.load(args.state_dir, args.cloud)
        except StatusUnreadable as err:
            raise CommandError(str(err), 2) from None
        service = Service(controller, branch, cloud=args.cloud, poll=args.poll,
                          drift_interval=args.drift_interval, current=state.last_attempted_revision)

        lost_to = []

        def lost(message):
            log.error("%s; stopping after the current step", message)
            lost_to.append(message)
            service.stop()
        # the cloud's hosts at the tip (renewed while the service runs; see controller/lease.py)
        leased = lease(args, controller, [tip, state.last_applied_revision], lost)
        if args.metrics_port:
            from controller.metrics import MetricsServer
            try:
                metrics = MetricsServer(lambda: Status.load(args.state_dir, args.cloud), args.metrics_port,
                                        args.metrics_address, extra=service.metrics).start()
            except OSError as err:
                raise CommandError(f"--metrics-port {args.metrics_port}: {err.strerror}", 2) from None
        _on_signals(service)
        log.info("cloud %s: following %s of %s%s%s (pid %d)", args.cloud, args.branch, args.repo,
                 f", metrics on :{metrics.port}/metrics" if metrics else "",
                 ", signed commits only" if verify_commit else "", os.getpid())
        service.run()
        return 2 if lost_to else 0               # another controller has the cloud: not restarted
    finally:
        if metrics is not None:
            metrics.stop()
        if leased is not None:
            leased.release()
        held.release()


def _on_signals(service) -> None:
    """First SIGTERM/SIGINT: stop after the current step. A second one: the default action
    (SIGINT raises KeyboardInterrupt, SIGTERM kills)."""

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        logging.getLogger("tidegate.run").info("%s: finishing the current step, then stopping",
                                               signal.Signals(signum).name)
        # Not service.stop() here: the handler runs on the main thread, which may hold the very
        # Event lock stop() takes (the executor sleeps in cancel.wait()). A thread cannot deadlock.
        threading.Thread(target=service.stop, name="tidegate-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _progress(event: str, step, detail: str) -> None:
    if event == "start":
        return
    level = logging.WARNING if event in ("failed", "warning") else logging.INFO
    logging.getLogger("tidegate.run").log(level, "  %s %s %s%s", event, step.service, step.describe(),
                                          f": {detail}" if detail else "")
