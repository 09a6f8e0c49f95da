"""The root filesystem every test host boots: the recipe images/testhost.yaml built by
tidegate's own builder (mmdebstrap, cached by recipe hash in $TIDEGATE_CACHE), unpacked
once into a directory beside the tarball. Hosts mount it read-only as the lower layer of
an overlay, so a host starts without copying 600 MB and writes only its own changes."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

from controller import images

IMAGES = Path(__file__).resolve().parent / "images"
RECIPE = "testhost"


def lower_dir(log=print) -> Path:
    """The unpacked rootfs (built and unpacked when missing); safe across processes."""
    recipe = images.load_recipe(IMAGES, RECIPE)
    tar = images.build_rootfs(recipe, log)
    out = images.cache_dir() / f"testhost-{recipe.rootfs_hash()}"
    with open(images.cache_dir() / f"testhost-{recipe.rootfs_hash()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # released when the file closes
        if (out / "usr/sbin/sshd").exists():
            return out
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.monotonic()
        proc = subprocess.run(["tar", "-xf", str(tar), "-C", str(tmp), "--numeric-owner"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"unpacking {tar}: {proc.stderr.strip()[-300:]}")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        log(f"test host rootfs unpacked to {out} in {time.monotonic() - t0:.1f}s")
        return out
