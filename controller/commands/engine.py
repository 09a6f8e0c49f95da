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
    found = local.recorded(directory)
    # a recorded PID is trusted only while it is still that engine (reboot, PID reuse)
    stale = local.stale_reason(found) if found is not None else None
    record = found if stale is None else None
    if args.action == "up":
        notes = []
        if record is None and not args.dir:
            system = local.SYSTEM_SOCKETS[args.kind]
            if Path(system).exists():
                if local.answers(args.kind, system):
                    return _report(args, {"kind": args.kind, "url": f"unix://{system}", "pid": None,
                                          "note": "a system engine already runs; using it as it is"})
                # a socket file outlives its engine (crash, unclean shutdown): ask, do not assume
                notes.append(f"{system} exists but no engine answers on it; starting a private engine instead")
        if record is None:
            try:
                record = local.start_engine(args.kind, directory)
            except local.LocalEngineError as err:
                raise CommandError(f"engine up: {' '.join(notes + [str(err)])}", 2) from None
            if record.replaced:
                notes.append(f"replaced a stale record: {record.replaced}")
            note = f"started in {record.start_seconds:.1f}s"
        else:
            note = "already running"
        return _report(args, {"kind": record.kind, "url": record.url, "pid": record.pid, "dir": record.dir,
                              "env": record.env(), "note": note, "notes": notes})
    if args.action == "down":
        if stale is not None:
            local.stop_engine(found, purge=args.purge)     # forgets the record, signals nothing
            return _report(args, {"kind": args.kind, "dir": str(directory), "note": "not running",
                                  "notes": [f"removed a stale record: {stale}; nothing was signalled"]})
        if record is None:
            return _report(args, {"kind": args.kind, "dir": str(directory), "note": "not running"})
        local.stop_engine(record, purge=args.purge)
        return _report(args, {"kind": record.kind, "pid": record.pid, "note": "stopped"})
    if record is None:
        _report(args, {"kind": args.kind, "dir": str(directory), "note": "not running",
                       "notes": [f"stale record: {stale}"] if stale else []})
        return 1
    return _report(args, {"kind": record.kind, "url": record.url, "pid": record.pid, "dir": record.dir,
                          "env": record.env(), "note": "running"})


def _report(args, data: dict) -> int:
    if data.get("url"):
        # what hosts without a url in cloud.yaml read first (controller.reconcile.default_engine_url)
        data["env"] = {f"TIDEGATE_{data['kind'].upper()}_URL": data["url"], **(data.get("env") or {})}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    line = f"{data['kind']} engine: {data['note']}"
    if data.get("url"):
        line += f" at {data['url']}"
    if data.get("pid"):
        line += f" (pid {data['pid']})"
    print(line)
    for note in data.get("notes") or ():
        print(f"  note: {note}")
    for k, v in (data.get("env") or {}).items():
        print(f"  export {k}={v}")
    return 0
