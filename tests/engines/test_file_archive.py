"""The archive a created container's files travel in (controller/engines/files.py)."""
import io
import tarfile

import pytest

from controller.engines.base import FileCopy
from controller.engines.files import OwnerError, archive

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nplacement:x:120:130::/var/lib/placement:/bin/false\n"
GROUP = b"root:x:0:\nplacement:x:130:\nadm:x:4:\n"


def tables(path):
    return {"/etc/passwd": PASSWD, "/etc/group": GROUP}.get(path)


def test_the_archive_ends_at_its_end_blocks_without_record_padding():
    # Podman stops reading after the two end blocks; padding still in flight made it
    # answer "passing bulk input to subprocess: write |1: broken pipe" under load.
    data = archive([FileCopy("/etc/a.conf", b"x" * 700)], tables)
    assert len(data) % tarfile.BLOCKSIZE == 0
    assert len(data) < tarfile.RECORDSIZE
    assert data.endswith(b"\0" * 2 * tarfile.BLOCKSIZE)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [m.name for m in tar] == ["etc/a.conf"]
        assert tar.extractfile("etc/a.conf").read() == b"x" * 700


def test_modes_and_owners_come_from_the_images_own_tables():
    data = archive([FileCopy("/etc/placement/placement.conf", b"[DEFAULT]\n", 0o640, "placement:adm"),
                    FileCopy("/run/key", b"k", 0o600)], tables, default_owner="placement")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        conf, key = tar.getmember("etc/placement/placement.conf"), tar.getmember("run/key")
    assert (conf.mode, conf.uid, conf.gid) == (0o640, 120, 4)
    assert (key.mode, key.uid, key.gid) == (0o600, 120, 130)


def test_an_owner_the_image_does_not_know_is_one_line():
    with pytest.raises(OwnerError, match="'nova' is not in the image's /etc/passwd"):
        archive([FileCopy("/etc/nova/nova.conf", b"", owner="nova")], tables)
