"""`tidegate gate --cleanup NAME` removes only a gate's own test clouds: a real cloud's
name (`demo`, or any name not of the form gate-<8 hex>) is refused with exit 2 before
any engine is asked, and that cloud's containers and volumes survive."""
from __future__ import annotations

import subprocess
import sys

import pytest

from controller.desired import LABEL_CLOUD, LABEL_MANAGED
from controller.engines import ContainerSpec
from tests.conftest import ROOT

pytestmark = pytest.mark.engine


def cleanup(engine, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli", "gate", "--engine",
                           f"{engine.kind}={engine.url}", "--cleanup", name],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cleanup_refuses_a_real_clouds_name_and_removes_nothing(engine, base_image, unique):
    cloud = unique                                   # another cloud on the same engine (like the demo)
    container, volume = f"{cloud}-web-0-abc", f"{cloud}-data"
    engine.ensure_volume(volume, {LABEL_CLOUD: cloud})
    engine.create(ContainerSpec(container, base_image, command=("sleep", "600"), stop_grace=1,
                                labels={LABEL_CLOUD: cloud, LABEL_MANAGED: "tidegate"},
                                ulimits={"nofile": (1024, 1024)}))
    try:
        for name in (cloud, "demo", "gate-1234567", "gate-12345678-x", "GATE-1234ABCD"):
            proc = cleanup(engine, name)
            assert proc.returncode == 2, proc.stdout + proc.stderr
            [line] = proc.stderr.strip().splitlines()             # one line, no traceback
            assert f"--cleanup {name}: not a test cloud's name" in line and "nothing removed" in line
        assert [c.name for c in engine.list_containers({LABEL_CLOUD: cloud})] == [container]
        assert volume in engine.list_volumes({})
        # a name of the gate's own form is accepted (nothing of it here: removed, exit 0)
        proc = cleanup(engine, "gate-0123abcd")
        assert proc.returncode == 0 and "gate-0123abcd: removed" in proc.stdout, proc.stdout + proc.stderr
        assert [c.name for c in engine.list_containers({LABEL_CLOUD: cloud})] == [container]
    finally:
        engine.remove(container)
        engine.remove_volume(volume)
