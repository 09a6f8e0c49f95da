"""Keystone's fernet and credential key repositories as one secret of the cloud.

The secret's value is JSON, `{"0": KEY, "1": KEY, …}`: key 0 is the staged key (the next
primary), the highest index the primary that signs, the others secondaries that still
validate. Every replica on every host gets the same files (`layout: key-repository`),
so a token one replica issued validates on all of them.

Rotation is a commit (`tidegate secrets rotate keystone-fernet`) and follows Keystone's
staged scheme: the staged key becomes the new primary, a new staged key is made, the
oldest secondaries go beyond `max_active` keys in all. A replica that still runs the
previous set already holds the new primary as its staged key, so during the rolling
replacement tokens from new and old replicas validate everywhere, and a token issued
before the rotation validates after it (its key is now a secondary).
"""
from __future__ import annotations

import base64
import json
import os

DEFAULT_MAX_ACTIVE = 3        # keystone's [fernet_tokens] max_active_keys default


class KeyRepositoryError(ValueError):
    """A secret that is not a key repository (one line; never the keys)."""


def new_key() -> str:
    """A fernet key: 32 random bytes, URL-safe base64 (what keystone-manage writes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse(value: bytes) -> dict[int, str]:
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise KeyRepositoryError("not a key repository (JSON {\"0\": key, \"1\": key, …})") from None
    if not isinstance(data, dict) or not data:
        raise KeyRepositoryError("a key repository is a JSON object of index -> key")
    keys = {}
    for index, key in data.items():
        if not str(index).isdigit() or not isinstance(key, str):
            raise KeyRepositoryError(f"key index {index!r}: indexes are numbers, keys text")
        try:
            ok = len(base64.urlsafe_b64decode(key.encode())) == 32
        except ValueError:
            ok = False
        if not ok:
            raise KeyRepositoryError(f"key {index}: not a fernet key (32 bytes, URL-safe base64)")
        keys[int(index)] = key
    if 0 not in keys or len(keys) < 2:
        raise KeyRepositoryError("a key repository holds a staged key 0 and a primary key")
    return keys


def dump(keys: dict[int, str]) -> bytes:
    return json.dumps({str(i): keys[i] for i in sorted(keys)}, indent=1).encode()


def create() -> dict[int, str]:
    """A new repository: staged key 0 and primary key 1 (as `fernet_setup` makes it)."""
    return {0: new_key(), 1: new_key()}


def rotate(keys: dict[int, str], max_active: int = DEFAULT_MAX_ACTIVE) -> dict[int, str]:
    """Keystone's staged rotation: staged → new primary, a new staged key, at most
    `max_active` keys in all (the oldest secondaries go first)."""
    if max_active < 3:
        raise KeyRepositoryError("max_active is at least 3 (staged, primary and one secondary)")
    out = dict(keys)
    out[max(out) + 1] = out.pop(0)
    kept = sorted(out, reverse=True)[:max_active - 1]
    out = {i: out[i] for i in kept}
    out[0] = new_key()
    return out


def files(keys: dict[int, str], target: str) -> list[tuple[str, bytes]]:
    """(path, content) of each key file under `target` (named by index, as keystone reads them)."""
    return [(f"{target.rstrip('/')}/{i}", keys[i].encode()) for i in sorted(keys)]
