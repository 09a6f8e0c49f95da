"""`pip install .` — a wheel, not an editable install — gives a working `tidegate`, built
with the oldest setuptools pyproject.toml allows: the JSON Schemas ship inside the package,
and nothing is read from the checkout."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.validators.helpers import GitRepo, files, service

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "controller", "validators", "gate", "schema")


def run(*args, **kwargs):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


def setuptools_floor() -> str:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    floor = next(re.fullmatch(r"setuptools>=([0-9.]+)", r) for r in requires if r.startswith("setuptools"))
    assert floor is not None, requires
    return floor.group(1)


@pytest.mark.slow
def test_a_wheel_built_with_the_setuptools_floor_runs_check_outside_the_checkout(tmp_path):
    # a copy of the sources: building in the checkout would leave build/ and *.egg-info there
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"setuptools~={setuptools_floor()}.0\n")       # the floor's own release line
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--build-constraint", constraints, "-w", wheels, source,
        env=clean)
    wheel = next(wheels.glob("tidegate-*.whl"))

    venv = tmp_path / "venv"                     # no system site-packages, no editable install
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin/python", "-m", "pip", "install", "-q", wheel, env=clean)
    shutil.rmtree(source)

    repo = GitRepo(tmp_path / "repo")
    repo.commit(files({"keystone": service()}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tidegate = venv / "bin/tidegate"
    ok = subprocess.run([tidegate, "check", "--repo", repo.path], cwd=elsewhere, env=clean,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "ok: c at" in ok.stdout, ok.stdout + ok.stderr
    repo.commit({"clouds/c/services/keystone.yaml": "project: keystone\nrelease: '2025.1'\nimage: a\nreplicas: 1.0\n"})
    bad = subprocess.run([tidegate, "check", "--repo", repo.path], cwd=elsewhere, env=clean,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "[schema.type]" in bad.stdout and "Traceback" not in bad.stderr, bad.stderr
    printed = run(tidegate, "schema", "cloud", cwd=elsewhere, env=clean)
    assert '"$id": "https://tidegate.dev/schema/cloud.schema.json"' in printed.stdout
    where = run(venv / "bin/python", "-c", "import schema, validators; print(schema.__file__, validators.__file__)",
                cwd=elsewhere, env=clean)
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout
