"""A secret change on real engines: it rolls exactly the services that use it, and its
value is in the container's file only — not in inspect output, labels, status or logs."""
from __future__ import annotations

import json

import pytest
import yaml

from controller import secrets
from tests.conftest import BASE_RECIPE, ROOT, build_image

from ..controller.webcloud import make_web_cloud

pytestmark = pytest.mark.engine


def test_secret_change_rolls_only_its_service_and_never_shows_its_value(tmp_path, engine, unique, port,
                                                                       monkeypatch):
    key, public = secrets.generate()
    (tmp_path / "ctl.key").write_text(key + "\n")
    monkeypatch.setenv(secrets.KEY_ENV, str(tmp_path / "ctl.key"))
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    web = make_web_cloud(tmp_path, engine, unique, port, images=images)
    try:
        cloud = yaml.safe_load((web.folder / "cloud.yaml").read_text())
        cloud["secrets"] = {"recipients": {"controller": public}}
        data = web.service("web")
        data["config"].append({"source": "config/web/token.conf", "target": "/srv/token.conf",
                               "template": True, "mode": "0400"})
        folder = f"clouds/{web.name}"
        values = ["first-v4lue-7c2e", "second-v4lue-9b1d"]
        web.repo.commit({f"{folder}/cloud.yaml": yaml.safe_dump(cloud),
                         f"{folder}/services/web.yaml": yaml.safe_dump(data, sort_keys=False),
                         f"{folder}/config/web/token.conf": "token = ${secret:token}\n",
                         f"{folder}/secrets/token.age": secrets.encrypt(values[0].encode(), [public]).decode()},
                        "web reads a secret")
        status = web.reconcile()
        assert status.condition() == "Ready", status.render()
        lb, first = web.containers("lb"), web.containers("web")
        name = next(iter(first))
        shown = engine.exec(name, ["cat", "/srv/token.conf"])
        assert shown.output.strip() == f"token = {values[0]}"
        web.repo.commit({f"{folder}/secrets/token.age": secrets.encrypt(values[1].encode(), [public]).decode()},
                        "rotate token")
        status = web.reconcile()
        assert status.condition() == "Ready", status.render()
        assert web.containers("lb") == lb                           # not a user of the secret
        after = web.containers("web")
        assert len(after) == 2 and not set(after.values()) & set(first.values())
        assert engine.exec(next(iter(after)), ["cat", "/srv/token.conf"]).output.strip() == f"token = {values[1]}"
        seen = [json.dumps(status.as_dict() if hasattr(status, "as_dict") else status.render())]
        seen += [p.read_text(errors="replace") for p in web.state_dir.rglob("*") if p.is_file()]
        for c in engine.list_containers({"tidegate.cloud": web.name}):
            raw = (engine.api.get(f"/containers/{c.id}/json").json() if engine.kind == "podman"
                   else engine.api.inspect_container(c.id))
            seen += [json.dumps(raw), json.dumps(dict(c.labels)), engine.logs(c.id, tail=None)]
        for value in values:
            assert not [text[:80] for text in seen if value in text]
    finally:
        web.teardown()
