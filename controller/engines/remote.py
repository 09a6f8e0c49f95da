"""How tidegate reaches a remote engine safely: the decisions, apart from the drivers.

- ssh://user@host[:port]/socket: the host's key is checked against a known_hosts file
  (the host's `known_hosts:` in cloud.yaml, else $TIDEGATE_KNOWN_HOSTS, else ssh's own
  files) with StrictHostKeyChecking=yes: an unknown or changed key stops the connection,
  it is never accepted silently. The login key is $TIDEGATE_SSH_KEY when set (ssh's
  IdentityFile), else ssh's configuration and agent.
- tcp://host:port: docker only with TLS client certificates (`tls: {ca, cert, key}`);
  plain tcp (unauthenticated root on the network) only when the host says
  `insecure: true`. Podman's API has no TLS: tcp:// is plain there, so it needs
  `insecure: true` too.

A host's relative paths name files of its cloud folder (read from the commit, not from
a checkout): the loader hands their contents over in `Host.files`; `host_access`
writes them to a private directory of this process for ssh and the TLS library.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

TLS_FIELDS = ("ca", "cert", "key")


class AccessRefused(ValueError):
    """A remote engine URL that tidegate will not use as configured (one line)."""


@dataclass(frozen=True)
class Access:
    """What connecting to one host's engine needs besides its URL (paths on this machine)."""
    known_hosts: str | None = None          # ssh: the only file host keys are checked against
    identity: str | None = None             # ssh: the private key (IdentityFile)
    tls: tuple[str, str, str] | None = None  # tcp: (ca, cert, key)
    insecure: bool = False                  # tcp: plain HTTP accepted


def ssh_options(access: Access | None) -> list[str]:
    """ssh -o options for a tunnel: never prompt, never accept a host key it does not know."""
    access = access or Access()
    opts = ["BatchMode=yes", "StrictHostKeyChecking=yes"]
    if access.known_hosts:
        opts += [f"UserKnownHostsFile={_ssh_path(access.known_hosts)}", "GlobalKnownHostsFile=/dev/null"]
    if access.identity:
        opts += [f"IdentityFile={_ssh_path(access.identity)}", "IdentitiesOnly=yes"]
    return [a for opt in opts for a in ("-o", opt)]


def _ssh_path(path: str) -> str:
    # ssh splits option values on whitespace; "~" and "%" are expanded by ssh: quote them away
    if any(c.isspace() or c in '"%' for c in path) or path.startswith("~"):
        raise AccessRefused(f"path {path!r} cannot be given to ssh (spaces, quotes, % or ~)")
    return path


_UNKNOWN = re.compile(r"No \S+ host key is known for|Host key verification failed")
_CHANGED = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed")


def ssh_failure(ssh_text: str, destination: str, access: Access | None) -> str:
    """ssh's stderr as one line for the operator; host-key failures name the host and
    the known_hosts file."""
    where = (access.known_hosts if access and access.known_hosts else "ssh's known_hosts files "
             "(set known_hosts: in cloud.yaml or $TIDEGATE_KNOWN_HOSTS)")
    target = urllib.parse.urlparse(destination).hostname or destination
    if _CHANGED.search(ssh_text):
        return f"host key of {target} does not match {where}: a changed host key is refused"
    if _UNKNOWN.search(ssh_text):
        return f"host key of {target} is not in {where}: unknown hosts are refused, never added"
    words = [line for line in ssh_text.splitlines() if line.strip() and not line.startswith("@")]
    return " ".join(" ".join(words).split())[:200] or "ssh exited"


def transport(kind: str, url: str, access: Access | None) -> str:
    """How to talk to the engine at `url`: "unix", "ssh", "tls" or "plain" (tcp without
    TLS, only when the host is marked insecure). Raises AccessRefused otherwise."""
    access = access or Access()
    scheme = urllib.parse.urlparse(url).scheme
    if scheme in ("unix", "ssh"):
        if access.tls:
            raise AccessRefused(f"tls: is for tcp:// engines; {url} is {scheme}://")
        return scheme
    if scheme != "tcp":
        raise AccessRefused(f"engine URL {url!r}: expected unix://, ssh:// or tcp://")
    if access.tls:
        if kind != "docker":
            raise AccessRefused(f"{kind} serves no TLS on tcp://; use ssh:// (or insecure: true for plain tcp)")
        return "tls"
    if access.insecure:
        return "plain"
    raise AccessRefused(f"plain {url} is unauthenticated root access to the host: give the host "
                        "tls: {ca, cert, key} (docker), use ssh://, or say insecure: true")


def settings(environ: Mapping[str, str] = os.environ) -> Access:
    """The controller's own settings: $TIDEGATE_KNOWN_HOSTS and $TIDEGATE_SSH_KEY."""
    return Access(known_hosts=environ.get("TIDEGATE_KNOWN_HOSTS") or None,
                  identity=environ.get("TIDEGATE_SSH_KEY") or None)


def host_access(host, environ: Mapping[str, str] = os.environ) -> Access:
    """The Access of a cloud.yaml host (validators.model.Host): its own known_hosts and
    TLS files (relative ones written out from `host.files`), the settings for the rest."""
    base = settings(environ)
    files = dict(getattr(host, "files", ()) or ())

    def path(field: str, value: str | None) -> str | None:
        if not value:
            return None
        if os.path.isabs(value):
            return value
        if field not in files:
            raise AccessRefused(f"host {host.name}: {field} {value!r} is not a file of the cloud folder")
        return _private_file(files[field], os.path.basename(value))
    known = path("known_hosts", getattr(host, "known_hosts", None)) or base.known_hosts
    tls = getattr(host, "tls", None)
    tls_paths = tuple(path(f"tls.{f}", v) for f, v in zip(TLS_FIELDS, tls)) if tls else None
    return Access(known_hosts=known, identity=base.identity, tls=tls_paths,
                  insecure=bool(getattr(host, "insecure", False)))


_store: list[str] = []


def _private_file(content: bytes, name: str) -> str:
    """`content` as a file only this user reads, named by its hash (one per content)."""
    if not _store:
        _store.append(tempfile.mkdtemp(prefix="tidegate-access-"))
        atexit.register(shutil.rmtree, _store[0], True)
    folder = Path(_store[0], hashlib.sha256(content).hexdigest()[:16])
    path = folder / (name or "file")
    if not path.exists():
        folder.mkdir(mode=0o700, exist_ok=True)
        tmp = folder / f".{path.name}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    return str(path)
