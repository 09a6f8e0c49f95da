"""`tidegate` — the command line: a thin shell over library calls that return values."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands as _commands
from .errors import CommandError  # noqa: F401  (re-exported for commands)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2 (argparse's default too)
        self.print_usage(sys.stderr)
        self.exit(2, f"tidegate: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tidegate", description=__doc__.split("\n")[0].split("—")[1].strip())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as err:
        print(f"tidegate: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("tidegate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
