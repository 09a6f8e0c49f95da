"""`tidegate gate`: Grenade-style upgrade test of base → head on a throw-away test cloud."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

from controller import engine_option
from controller.errors import CommandError


def register(sub):
    p = sub.add_parser(
        "gate", help="prove a change's upgrade on a throw-away test cloud (exit 1: must not merge)",
        description="Validate base→head, bring up a test cloud at BASE (unique name, own network, volumes and "
                    "ports), run smoke checks and the create hooks, upgrade to HEAD wave by wave with the "
                    "controller's planner and executor while probes measure availability, run the verify hooks, "
                    "roll back as `git revert` would and verify again, (--contract) upgrade again, run the contract "
                    "jobs and verify again, run the destroy hooks, tear down. "
                    "Exit 0 pass, 1 the change must not merge, 2 the gate could not run.")
    p.add_argument("--repo", default=".", help="git repository holding clouds/ (default: current directory)")
    p.add_argument("--cloud", help="cloud name (clouds/<name>/)")
    p.add_argument("--base", help="base revision (a pull request's merge base)")
    p.add_argument("--head", default="HEAD", help="head revision (default HEAD)")
    engine_option.add(p, default="podman", help="the one engine of the test cloud: podman or docker, optionally "
                      "=URL (else $TIDEGATE_<KIND>_URL, else the engine `tidegate engine up` started)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write the JSON report here (- or no value: stdout)")
    p.add_argument("--keep", action="store_true", help="leave the test cloud up for debugging and say how to reach it")
    p.add_argument("--no-rollback", action="store_true", help="skip the rollback phase")
    p.add_argument("--matrix", action="store_true", help="run the verify hooks after each wave (every mixed-version state)")
    p.add_argument("--age-key", metavar="FILE",
                   help="the gate's (CI) age key, a recipient of the cloud's secrets (default $TIDEGATE_AGE_KEY_FILE)")
    p.add_argument("--contract", action="store_true",
                   help="test the contract phase too: keep the rollback window open through upgrade and rollback, "
                        "then upgrade again, run the contract jobs under probes and verify again (gate.yaml: "
                        "`contract: true`)")
    p.add_argument("--cleanup", metavar="TEST_CLOUD", help="remove a test cloud left by --keep, then exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from gate.junit import to_xml
    from gate.run import Gate, remove_test_cloud, write_json

    from .converge import identities

    if args.cleanup:
        from gate.isolate import TEST_CLOUD_NAME, is_test_cloud_name
        if not is_test_cloud_name(args.cleanup):
            raise CommandError(f"--cleanup {args.cleanup}: not a test cloud's name (the gate's own are "
                               f"{TEST_CLOUD_NAME.pattern}, as --keep prints); nothing removed — use "
                               "`tidegate down` for a real cloud", 2)
    kind, url = engine_option.one(args.engine, args.engine_default)
    if args.cleanup:
        from controller.engines import EngineError, connect
        try:
            left = remove_test_cloud(connect(kind, url, "gate"), args.cleanup)
        except EngineError as err:
            raise CommandError(str(err), 2) from None
        print(f"{args.cleanup}: removed" if not left else f"{args.cleanup}: left {', '.join(left)}")
        return 0 if not left else 2
    if not args.cloud or not args.base:
        raise CommandError("gate: --cloud and --base are required", 2)
    quiet = args.json == "-"
    gate = Gate(args.repo, args.cloud, args.base, args.head, kind=kind, url=url, rollback=not args.no_rollback,
                matrix=args.matrix, keep=args.keep, contract=args.contract, identities=identities(args),
                out=(lambda line: print(line, file=sys.stderr, flush=True)) if quiet else
                    (lambda line: print(line, flush=True)))
    previous = signal.signal(signal.SIGTERM, _interrupt)       # CI cancels with SIGTERM: tear down too
    try:
        report = gate.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.junit:
        Path(args.junit).write_bytes(to_xml(report))
    if args.json == "-":
        import json
        print(json.dumps(report.as_dict(), indent=2))
    elif args.json:
        write_json(report, args.json)
    out = sys.stderr if quiet else sys.stdout
    verdict = {0: "PASS", 1: "FAIL: the change must not merge", 2: "ERROR: the gate could not run" if report.error else "ERROR: the test cloud was not removed"}[report.exit_code]
    failed = report.failure()
    detail = f" ({failed.name}: {failed.message})" if failed else (f" ({report.error})" if report.error else "")
    print(f"gate {report.cloud} {report.base[:12]}..{report.head[:12]}: {verdict}{detail} in {report.seconds:.1f}s",
          file=out)
    return report.exit_code


def _interrupt(signum, frame):
    raise KeyboardInterrupt
