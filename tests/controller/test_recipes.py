"""Image recipes are data judged before anything is built: strict YAML and a schema
(`tidegate schema recipe`), and `files:` confined — sources are files of the cloud's
images/ folder (after symlinks are resolved), destinations paths inside the image. The
builder runs as root on the CI runner that gates a pull request: a recipe copying
/etc/shadow (or ../../x) is refused at load, with one line naming the file and field,
and `tidegate check` reports it as a finding on the recipe's line."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from controller import images
from validators.schema import schema
from tests.validators.helpers import findings_of, service

RECIPE = {"name": "localhost/tidegate/app:1", "suite": "bookworm", "packages": ["python3"]}


def recipe(folder, files=None, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.yaml").write_text(yaml.safe_dump({**RECIPE, **({"files": files} if files else {}), **changes}))
    return folder


def test_a_recipe_copying_files_from_outside_images_is_refused_before_any_build(tmp_path):
    folder = recipe(tmp_path / "images", {"/usr/local/bin/entry.sh": "entry.sh"})
    (folder / "entry.sh").write_text("#!/bin/sh\n")
    assert images.load_recipe(folder, "app").files == (("/usr/local/bin/entry.sh", "entry.sh"),)
    (tmp_path / "secret").write_text("root:x")
    os.symlink(tmp_path / "secret", folder / "link")
    for files, field, why in (
            ({"/root/shadow": "/etc/shadow"}, "files./root/shadow", "does not have the required form"),
            ({"/x": "../../x"}, "files./x", "does not have the required form"),
            ({"/x": "sub/../../secret"}, "files./x", "does not have the required form"),
            ({"/x": "link"}, "files./x", "outside the cloud's images/ folder"),   # a symlink out of images/
            ({"/x": "missing"}, "files./x", "is not a file in images/"),
            ({"/../../etc/cron.d/x": "entry.sh"}, "files", "invalid name"),        # a destination out of the image
            ({"etc/x": "entry.sh"}, "files", "invalid name")):
        recipe(folder, files)
        with pytest.raises(images.BuildError) as err:
            images.load_recipe(folder, "app")
        text = str(err.value)
        assert "\n" not in text and str(folder / "app.yaml") in text and field in text and why in text, text


def test_a_recipe_with_wrong_types_or_an_alias_bomb_is_one_line_not_a_traceback(tmp_path):
    folder = recipe(tmp_path / "images", packages="python3")
    with pytest.raises(images.BuildError, match=r"app.yaml:\d+:\d+: packages: 'python3' is not of type 'array' \[schema.type\]"):
        images.load_recipe(folder, "app")
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n' for p, c in zip("abcdef", "bcdefg"))
    (folder / "app.yaml").write_text(bomb)
    with pytest.raises(images.BuildError, match=r"\[yaml.alias-bomb\]"):
        images.load_recipe(folder, "app")
    (folder / "app.yaml").write_text("name: a\nname: b\nsuite: bookworm\n")
    with pytest.raises(images.BuildError, match=r"\[yaml.duplicate-key\]"):
        images.load_recipe(folder, "app")


def test_check_reports_a_recipe_that_copies_from_outside_images():
    bad = yaml.safe_dump({**RECIPE, "files": {"/root/shadow": "/etc/shadow"}})
    findings = findings_of({"app": service(build="app")}, extra={"clouds/c/images/app.yaml": bad})
    [f] = [f for f in findings if f.severity == "error"]
    assert (f.file, f.rule, f.line) == ("clouds/c/images/app.yaml", "schema.pattern", 2), f
    assert "files./root/shadow" in f.message
    good = yaml.safe_dump({**RECIPE, "files": {"/etc/app.conf": "app.conf"}})
    findings = findings_of({"app": service(build="app")}, extra={"clouds/c/images/app.yaml": good})
    assert [f for f in findings if f.severity == "error"] == []


def test_the_recipe_schema_knows_the_builders_suites():
    assert schema("recipe")["properties"]["suite"]["enum"] == list(images.SUITES)
    json.dumps(schema("gate"))
