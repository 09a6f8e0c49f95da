"""Files put into a created container through the engine's archive API (both drivers):
a tar made in memory, owners resolved against the container's own /etc/passwd and
/etc/group, so nothing of it is ever on the controller's or the host's disk."""
from __future__ import annotations

import io
import posixpath
import tarfile
from typing import Callable, Sequence

from .base import FileCopy


class OwnerError(Exception):
    """An owner that the container's image does not know (one line)."""


def _table(text: bytes | None) -> dict[str, tuple[int, int]]:
    """name -> (id, primary gid or id) of an /etc/passwd or /etc/group file."""
    out = {}
    for line in (text or b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit():
            out[parts[0]] = (int(parts[2]), int(parts[3]) if parts[3].isdigit() else int(parts[2]))
    return out


def needs_tables(files: Sequence[FileCopy], default_owner: str | None = None) -> bool:
    return any((f.owner or default_owner) and not all(p.isdigit() for p in (f.owner or default_owner).split(":"))
               for f in files)


def owner_ids(owner: str | None, passwd: bytes | None, group: bytes | None) -> tuple[int, int]:
    """(uid, gid) of `user[:group]` (names or numbers); a user alone: its primary group."""
    if not owner:
        return 0, 0
    user, _, grp = owner.partition(":")
    users = _table(passwd)
    if user.isdigit():
        uid, gid = int(user), int(user)
    elif user in users:
        uid, gid = users[user]
    else:
        raise OwnerError(f"user {user!r} is not in the image's /etc/passwd")
    if grp:
        groups = _table(group)
        if grp.isdigit():
            gid = int(grp)
        elif grp in groups:
            gid = groups[grp][0]
        else:
            raise OwnerError(f"group {grp!r} is not in the image's /etc/group")
    return uid, gid


def archive(files: Sequence[FileCopy], read: Callable[[str], bytes | None],
            default_owner: str | None = None) -> bytes:
    """A tar of `files` (paths relative to /) with their modes and owners (a file without
    one: `default_owner`, the user the container runs as); `read(path)` gives a file of
    the container (its passwd and group tables) or None. No directory entries: unpacking
    one over /etc would rewrite its mode and owner; a missing parent is made (0755)."""
    tables = (read("/etc/passwd"), read("/etc/group")) if needs_tables(files, default_owner) else (None, None)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(posixpath.normpath(f.target).lstrip("/"))
            info.size = len(f.content)
            info.mode = f.mode
            info.uid, info.gid = owner_ids(f.owner or default_owner, *tables)
            tar.addfile(info, io.BytesIO(f.content))
        end = tar.offset + 2 * tarfile.BLOCKSIZE          # the members and the two end blocks
    # tarfile pads the archive to a 10 KiB record. Podman's archive API stops reading at
    # the end blocks and answers "passing bulk input to subprocess: write |1: broken pipe"
    # when the padding is still being sent (seen in CI on a loaded machine): send none.
    return buf.getvalue()[:end]


def first_member(tar_bytes: bytes) -> bytes | None:
    """The content of the one file in an archive the engine returned (get_archive)."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            if member.isfile():
                extracted = tar.extractfile(member)
                return extracted.read() if extracted else None
    return None
