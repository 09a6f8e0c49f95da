"""`tidegate engine up|down|status`: a private local engine for the demo and the tests."""
from __future__ import annotations

import json
from pathlib import Path

from controller.errors import CommandError


def register(sub):
    p = sub.add_parser("engine", help="start or stop a private local podman/docker engine",
                       description="On a machine with no engine running, start a private one (own socket, "
                                   "storage, network range and containers.conf); `down` stops it by its PID "
                                   "and nothing else. An engine already running is used as it is.")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--kind", choices=("podman", "docker"), default="podman")
    p.add_argument("--dir", help="where the instance lives (default .tidegate/engines/<kind>, or $TIDEGATE_ENGINE_DIR/<kind>)")
    p.add_argument("--purge", action="store_true", help="with down: also remove the instance's containers (not its volumes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from controller.engines import local
    directory = Path(args.dir) if args.dir else local.engines_home() / args.kind
    record = local.running(directory)
    if args.action == "up":
        if record is None and not args.dir:
            system = local.SYSTEM_SOCKETS[args.kind]
            if Path(system).exists():
                return _report(args, {"kind": args.kind, "url": f"unix://{system}", "pid": None,
                                      "note": "a system engine already runs; using it as it is"})
        if record is None:
            try:
                record = local.start_engine(args.kind, directory)
            except local.LocalEngineError as err:
                raise CommandError(f"engine up: {err}", 2) from None
            note = f"started in {record.start_seconds:.1f}s"
        else:
            note = "already running"
        return _report(args, {"kind": record.kind, "url": record.url, "pid": record.pid, "dir": record.dir,
                              "env": record.env(), "note": note})
    if args.action == "down":
        if record is None:
            return _report(args, {"kind": args.kind, "dir": str(directory), "note": "not running"})
        local.stop_engine(record, purge=args.purge)
        return _report(args, {"kind": record.kind, "pid": record.pid, "note": "stopped"})
    if record is None:
        _report(args, {"kind": args.kind, "dir": str(directory), "note": "not running"})
        return 1
    return _report(args, {"kind": record.kind, "url": record.url, "pid": record.pid, "dir": record.dir,
                          "env": record.env(), "note": "running"})


def _report(args, data: dict) -> int:
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    line = f"{data['kind']} engine: {data['note']}"
    if data.get("url"):
        line += f" at {data['url']}"
    if data.get("pid"):
        line += f" (pid {data['pid']})"
    print(line)
    for k, v in (data.get("env") or {}).items():
        print(f"  export {k}={v}")
    return 0
