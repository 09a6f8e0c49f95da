"""One way to say which engine, on every command that talks to engines:

    --engine KIND[=URL]      (repeatable where a cloud's hosts may use both kinds)

KIND is podman or docker. With `=URL`, hosts of that kind without a `url` in cloud.yaml
use URL; without it, they use $TIDEGATE_<KIND>_URL, else the engine `tidegate engine up`
started here, else the system socket (controller.reconcile.default_engine_url). The gate
and `images build`, which use one engine, take the kind from it as well.

The older spellings (`--engine-url KIND=URL`, `images build --url URL`) are still read,
and hidden from --help.
"""
from __future__ import annotations

import argparse

from controller.errors import CommandError

KINDS = ("podman", "docker")
HELP = ("engine for hosts without a url: podman or docker, optionally =URL (else $TIDEGATE_<KIND>_URL, "
        "else the engine `tidegate engine up` started, else the system socket)")


def add(p, *, default: str | None = None, help: str = HELP) -> None:
    """--engine KIND[=URL], repeatable; `default`: the kind when none is given (one-engine commands)."""
    p.add_argument("--engine", action="append", default=[], metavar="KIND[=URL]",
                   help=help + (f"; default {default}" if default else ""))
    p.add_argument("--engine-url", action="append", dest="engine", help=argparse.SUPPRESS)
    p.set_defaults(engine_default=default)


def parse(spec: str) -> tuple[str, str]:
    """(kind, url or '') of one --engine value; a usage error (2) naming it otherwise."""
    kind, _, url = spec.partition("=")
    if kind not in KINDS:
        raise CommandError(f"--engine {spec!r}: expected podman or docker, optionally =URL "
                           "(e.g. podman=unix:///run/podman/podman.sock)", 2)
    if "=" in spec and not url:
        raise CommandError(f"--engine {spec!r}: the URL after '=' is empty", 2)
    return kind, url


def urls(specs: list[str]) -> dict[str, str]:
    """kind -> URL for hosts without a url (only the kinds given a URL)."""
    out = {}
    for spec in specs:
        kind, url = parse(spec)
        if url:
            out[kind] = url
    return out


def one(specs: list[str], default: str = "podman") -> tuple[str, str]:
    """The one engine of a one-engine command: (kind, URL), the URL found as hosts find it."""
    from controller.reconcile import default_engine_url
    parsed = [parse(s) for s in specs] or [(default, "")]
    if len({kind for kind, _ in parsed}) > 1:
        raise CommandError("--engine: this command uses one engine; name one kind", 2)
    kind = parsed[-1][0]
    url = next((u for _, u in reversed(parsed) if u), "") or default_engine_url(kind)
    if not url:
        raise CommandError(f"--engine {kind}: no engine found; start one with `tidegate engine up --kind {kind}` "
                           f"or give its URL (--engine {kind}=URL, or $TIDEGATE_{kind.upper()}_URL)", 2)
    return kind, url
