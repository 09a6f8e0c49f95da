"""Per-host values in config templates — format only, pure.

A config file marked `template` may say `${host}`: the name (in cloud.yaml) of the host
the container runs on, rendered when the container's spec is made, so one file gives each
host its own value. Nova's computes need that: a compute's `host` is its identity, the
same when its container is replaced (else Nova sees a new compute and orphans the old
one's servers) and different on every compute host. `$${host}` is the literal `${host}`.

The file's hash (and so the container's) is the template's, before rendering: a replica
that moves to another host is placed there like any move, and renders that host's name.
"""
from __future__ import annotations

import re

# `${host}`; `$${host}` is the literal text `${host}`
HOST = re.compile(rb"\$(\$?)\{host\}")


def refers_to_host(content: bytes) -> bool:
    """True when the template says `${host}` (a literal `$${host}` does not count)."""
    return any(not m.group(1) for m in HOST.finditer(content))


def render_host(content: bytes, host: str) -> bytes:
    """`content` with each `${host}` replaced by `host` and each `$${host}` by `${host}`."""
    return HOST.sub(lambda m: m.group(0)[1:] if m.group(1) else host.encode(), content)
