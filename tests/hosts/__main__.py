"""Try the test hosts by hand (as root):

    python -m tests.hosts up [--dir DIR] podman docker …   # one host per kind named
    python -m tests.hosts down [--dir DIR]                  # stop what `up` recorded in DIR

`up` prints each host's address and ssh URL, a cloud.yaml `hosts:` snippet and the
settings a controller needs (TIDEGATE_SSH_KEY, TIDEGATE_KNOWN_HOSTS)."""
from __future__ import annotations

import argparse
import sys

from . import hostset

DEFAULT_DIR = "/tmp/tidegate-hosts"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.hosts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start test hosts")
    up.add_argument("kinds", nargs="+", choices=("podman", "docker"))
    up.add_argument("--dir", default=DEFAULT_DIR)
    down = sub.add_parser("down", help="stop the test hosts recorded in --dir")
    down.add_argument("--dir", default=DEFAULT_DIR)
    args = p.parse_args(argv)
    existing = hostset.recorded(args.dir)
    if args.command == "down":
        if existing is None:
            print(f"no test hosts recorded in {args.dir}")
            return 0
        existing.stop()
        print(f"stopped {len(existing.hosts)} host(s) of {args.dir}")
        return 0
    if existing is not None and any(h.alive() for h in existing):
        print(f"test hosts already run from {args.dir}: `python -m tests.hosts down --dir {args.dir}` first",
              file=sys.stderr)
        return 2
    try:
        hosts = hostset.start_hosts(args.kinds, args.dir)
    except RuntimeError as err:
        print(f"test hosts: {err}", file=sys.stderr)
        return 1
    for h in hosts:
        extra = f"  tls {h.tcp_url}" if h.tcp_url else ""
        print(f"{h.name:8} {h.kind:7} {h.address:14} {h.ssh_url}{extra}  (up in {h.start_seconds:.1f}s)")
    print(f"{len(hosts.hosts)} host(s) on bridge {hosts.bridge} in {hosts.setup_seconds:.1f}s\n")
    print(hosts.cloud_yaml())
    for k, v in hosts.controller_env().items():
        print(f"export {k}={v}")
    print(f"# ssh -i {hosts.key} -o UserKnownHostsFile={hosts.known_hosts} root@{hosts[0].address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
