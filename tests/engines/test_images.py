"""The image builder: recipes, their hashes and their order (pure), and builds on real
engines of both kinds — rebuilt exactly when a recipe (or the recipe it builds on)
changes, two recipes with one image name kept apart, a failed build explained.

Engine tests start from the python base recipe's rootfs (cached on disk and imported by
`base_image`), changing only what the metadata build makes, so each build takes seconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller import images
from controller.engines import ContainerSpec, EngineError

from ..conftest import BASE_RECIPE

LIMITS = {"nofile": (1024, 1024), "nproc": (5000, 5000)}
PYTHON_BASE = yaml.safe_load((BASE_RECIPE[0] / f"{BASE_RECIPE[1]}.yaml").read_text())


def write_recipe(folder: Path, name: str, image: str, **changes) -> Path:
    """A recipe with the python base's rootfs (suite, packages) and its own image name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**PYTHON_BASE, "name": image, **changes}))
    return path


def write_context(folder: Path, name: str, image: str, containerfile: str, **files) -> Path:
    context = folder / name
    context.mkdir(parents=True, exist_ok=True)
    (context / "Containerfile").write_text(f"# image: {image}\n{containerfile}")
    for file, text in files.items():
        (context / file).write_text(text)
    return context


# -- recipes, without an engine ------------------------------------------------------------

@pytest.fixture
def mirror(monkeypatch):
    monkeypatch.setenv("TIDEGATE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def test_a_context_hash_follows_the_recipe_its_from_names(tmp_path, mirror):
    write_recipe(tmp_path, "base", "localhost/t/base:1", env={"GREETING": "one"})
    write_recipe(tmp_path, "other", "localhost/t/other:1")
    write_context(tmp_path, "app", "localhost/t/app:1", "FROM --platform=linux/amd64 localhost/t/base:1 AS build\n"
                                                         "COPY hello.txt /\n", **{"hello.txt": "hi\n"})
    app = images.load_recipe(tmp_path, "app")
    assert [b.name for b in app.bases] == ["base"] and app.image == "localhost/t/app:1"
    before = app.hash()
    write_recipe(tmp_path, "other", "localhost/t/other:1", env={"UNRELATED": "x"})
    assert images.load_recipe(tmp_path, "app").hash() == before            # not its base: no effect
    write_recipe(tmp_path, "base", "localhost/t/base:1", env={"GREETING": "two"})
    assert images.load_recipe(tmp_path, "app").hash() != before            # its base changed
    changed_context = images.load_recipe(tmp_path, "app").hash()
    (tmp_path / "app" / "hello.txt").write_text("hello\n")
    assert images.load_recipe(tmp_path, "app").hash() != changed_context   # so did its own context


def test_every_image_has_a_tag_naming_its_recipe_hash(tmp_path, mirror):
    write_recipe(tmp_path, "svc", "localhost/tidegate/keystone:2025.1")
    write_recipe(tmp_path / "other", "svc", "localhost/tidegate/keystone:2025.1", packages=["keystone"])
    one, two = images.load_recipe(tmp_path, "svc"), images.load_recipe(tmp_path / "other", "svc")
    assert one.hash_ref() == f"localhost/tidegate/keystone:recipe-{one.hash()}"
    assert one.image == two.image and one.hash_ref() != two.hash_ref()     # one name, two builds


def test_bases_come_before_the_recipes_built_on_them(tmp_path, mirror):
    write_recipe(tmp_path, "zbase", "localhost/t/base")                  # "latest" when FROM omits the tag
    write_recipe(tmp_path, "other", "localhost/t/other:1")
    write_context(tmp_path, "app", "localhost/t/app:1", "FROM localhost/t/base:latest\n")
    write_context(tmp_path, "top", "localhost/t/top:1", "FROM localhost/t/app:1\nFROM docker.io/library/debian\n")
    order = [r.name for r in images.build_order(tmp_path)]
    assert sorted(order) == images.list_recipes(tmp_path) == ["app", "other", "top", "zbase"]
    for recipe in images.build_order(tmp_path):
        assert all(order.index(b.name) < order.index(recipe.name) for b in recipe.bases), order
    assert order.index("zbase") < order.index("app") < order.index("top")
    assert [r.name for r in images.build_order(tmp_path, ["top"])] == ["zbase", "app", "top"]


def test_recipes_that_build_on_each_other_in_a_circle_are_refused(tmp_path, mirror):
    write_context(tmp_path, "a", "localhost/t/a:1", "FROM localhost/t/b:1\n")
    write_context(tmp_path, "b", "localhost/t/b:1", "FROM localhost/t/a:1\n")
    with pytest.raises(images.BuildError) as err:
        images.build_order(tmp_path)
    assert "circle" in str(err.value) and "a → b → a" in str(err.value)


# -- builds on real engines ------------------------------------------------------------------

@pytest.fixture
def images_to_remove(engine):
    """Image refs to remove after the test, dependants first (in the order registered)."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        try:
            engine.remove_image(ref)
        except EngineError:
            pass                                         # a failed test may leave children behind


def ids_by_tag(engine, *refs) -> list[str | None]:
    return [getattr(engine.image(ref), "id", None) for ref in refs]


@pytest.mark.engine
def test_a_recipe_change_rebuilds_and_an_unchanged_recipe_does_not(engine, base_image, unique, tmp_path,
                                                                   images_to_remove):
    image = f"localhost/{unique}/py:1"
    write_recipe(tmp_path, "py", image, env={"LANG": "C.UTF-8", "FLAVOUR": "one"})
    first = images.load_recipe(tmp_path, "py")
    images_to_remove += [image, first.hash_ref()]
    info, built = images.build(engine, first)
    assert built and info.labels[images.LABEL_RECIPE] == first.hash()
    assert ids_by_tag(engine, image, first.hash_ref()) == [info.id, info.id]

    again, built = images.build(engine, images.load_recipe(tmp_path, "py"))
    assert not built and again.id == info.id                               # unchanged: not rebuilt

    write_recipe(tmp_path, "py", image, env={"LANG": "C.UTF-8", "FLAVOUR": "two"})
    second = images.load_recipe(tmp_path, "py")
    images_to_remove.append(second.hash_ref())
    changed, built = images.build(engine, second)
    assert built and changed.id != info.id and second.hash_ref() != first.hash_ref()
    assert ids_by_tag(engine, image, second.hash_ref(), first.hash_ref()) == [changed.id, changed.id, info.id]
    job = engine.run_job(ContainerSpec(f"{unique}-env", image, command=("sh", "-c", "echo $FLAVOUR"),
                                       ulimits=LIMITS), timeout=60)
    assert job.output.strip() == "two"

    write_recipe(tmp_path, "py", image, env={"LANG": "C.UTF-8", "FLAVOUR": "one"})   # reverted
    back, built = images.build(engine, images.load_recipe(tmp_path, "py"))
    assert not built and back.id == info.id                                # the old build, re-tagged


@pytest.mark.engine
def test_two_recipes_naming_one_image_keep_their_own_builds(engine, base_image, unique, tmp_path,
                                                            images_to_remove):
    image = f"localhost/{unique}/keystone:2025.1"                          # as two clouds' recipes do
    write_recipe(tmp_path / "minimal", "keystone", image, env={"CLOUD": "minimal"})
    write_recipe(tmp_path / "demo", "keystone", image, env={"CLOUD": "demo"})
    minimal, demo = (images.load_recipe(tmp_path / c, "keystone") for c in ("minimal", "demo"))
    images_to_remove += [image, minimal.hash_ref(), demo.hash_ref()]
    built = {}
    for recipe in (minimal, demo):
        info, did = images.build(engine, recipe)
        assert did
        built[recipe.folder] = info.id
    assert built[minimal.folder] != built[demo.folder]
    for _ in range(2):                                   # back and forth: a tag moves, nothing rebuilds
        for recipe in (minimal, demo):
            lines = []
            info, did = images.build(engine, recipe, log=lines.append)
            assert not did and info.id == built[recipe.folder] == engine.image(image).id
            assert any("re-tagged" in line for line in lines), lines


@pytest.mark.engine
def test_a_context_on_a_recipe_image_is_rebuilt_when_its_base_recipe_changes(engine, base_image, unique, tmp_path,
                                                                             images_to_remove):
    base, app = f"localhost/{unique}/base:1", f"localhost/{unique}/app:1"
    write_recipe(tmp_path, "zbase", base, env={"LANG": "C.UTF-8", "GREETING": "one"})
    write_context(tmp_path, "app", app, f"FROM {base}\nCOPY tail.txt /tail.txt\n"
                                        "RUN echo \"$GREETING $(cat /tail.txt)\" > /greeting\n"
                                        "CMD [\"cat\", \"/greeting\"]\n", **{"tail.txt": "world\n"})

    def greeting() -> str:
        return engine.run_job(ContainerSpec(f"{unique}-greet", app, ulimits=LIMITS), timeout=60).output.strip()

    recipe = images.load_recipe(tmp_path, "app")
    images_to_remove += [app, recipe.hash_ref(), base, recipe.bases[0].hash_ref()]
    info, built = images.build(engine, recipe)                             # its base is built first
    assert built and engine.image(base) is not None and greeting() == "one world"
    again, built = images.build(engine, images.load_recipe(tmp_path, "app"))
    assert not built and again.id == info.id

    write_recipe(tmp_path, "zbase", base, env={"LANG": "C.UTF-8", "GREETING": "two"})
    changed = images.load_recipe(tmp_path, "app")
    images_to_remove[:0] = [changed.hash_ref()]
    images_to_remove.append(changed.bases[0].hash_ref())
    assert changed.hash() != recipe.hash()
    rebuilt, built = images.build(engine, changed)
    assert built and rebuilt.id != info.id and greeting() == "two world"


BROKEN = "RUN echo compiling the widget && echo widget.c:1: syntax error >&2 && exit 7\n"


@pytest.mark.engine
def test_a_failed_build_raises_build_error_with_the_log_tail_and_the_cli_shows_it(
        engine, base_image, unique, tmp_path, images_to_remove):
    cloud = tmp_path / "repo" / "clouds" / "c"
    base, app = f"localhost/{unique}/py:1", f"localhost/{unique}/app:1"
    write_recipe(cloud / "images", "py", base)
    write_context(cloud / "images", "app", app, f"FROM {base}\n{BROKEN}")
    (cloud / "cloud.yaml").write_text("name: c\n")
    recipe = images.load_recipe(cloud / "images", "app")
    images_to_remove += [base, recipe.bases[0].hash_ref()]
    with pytest.raises(images.BuildError) as err:
        images.build(engine, recipe)
    assert str(err.value).startswith(f"building {app} on host {engine.host}: ") and "\n" not in str(err.value)
    assert "compiling the widget" in err.value.log and "syntax error" in err.value.log
    assert engine.image(app) is None and engine.image(recipe.hash_ref()) is None   # nothing half-built is named

    cli = subprocess.run([sys.executable, "-m", "controller.cli", "images", "build", "--repo", str(tmp_path / "repo"),
                          "--cloud", "c", "--engine", engine.kind, "--url", engine.url],
                         capture_output=True, text=True, timeout=300, cwd=Path(images.__file__).parents[1],
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert cli.returncode == 1, cli.stderr
    assert cli.stdout.index("== py") < cli.stdout.index("== app")          # its base first, not alphabetical
    errors = cli.stderr.splitlines()
    assert "Traceback" not in cli.stderr and errors[0].startswith(f"tidegate: building {app} on host local: ")
    assert all(line.startswith("   | ") for line in errors[1:]) and len(errors) <= 26
    assert any("syntax error" in line for line in errors[1:]), cli.stderr
