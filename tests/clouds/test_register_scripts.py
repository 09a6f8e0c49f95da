"""The clouds' Keystone registration jobs, run as they run in their containers (stdlib Python,
credentials from a JSON file), against a Keystone stand-in on loopback. CI met a Keystone
replica that had just come up answer 500 to `GET /projects` on a busy machine: the job ended
and took the gate's base deploy with it; make test met two compute-cloud jobs both making
the `service` project (409 for the second). A 5xx or a 409 is asked again (the run finds
what is there); other 4xx still end the job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"demo": ROOT / "clouds/demo/config/placement/register.py",
           "compute": ROOT / "clouds/compute/config/common/register.py"}
LISTS = {"projects": [{"id": "p1"}], "users": [{"id": "u1"}], "roles": [{"id": "r1"}],
         "services": [{"id": "s1"}],
         "endpoints": [{"interface": i} for i in ("public", "internal", "admin")]}


class FakeKeystone:
    """Answers what the registration asks; the first `fail` GETs of /projects get `code`."""

    def __init__(self, code: int, fail: int, race: bool = False):
        self.code, self.fail, self.asked = code, fail, []
        self.race = race                   # another job makes `service` between our GET and POST
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body=None, headers=()):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.asked.append(("POST", self.path))
                if self.path == "/v3/auth/tokens":
                    return self._answer(201, {"token": {}}, [("X-Subject-Token", "tok")])
                kind = self.path.rstrip("s").rsplit("/", 1)[-1]
                if kind == "project" and outer.race:
                    outer.race = False
                    return self._answer(409, {"error": {"code": 409, "message": "Conflict: name is service"}})
                return self._answer(201, {kind: {"id": "new"}})

            def do_PUT(self):
                outer.asked.append(("PUT", self.path))
                self._answer(204)

            def do_GET(self):
                outer.asked.append(("GET", self.path))
                plural = self.path.split("?")[0].rsplit("/", 1)[-1]
                if plural == "projects" and outer.race:
                    return self._answer(200, {"projects": []})
                if plural == "projects" and outer.fail > 0:
                    outer.fail -= 1
                    return self._answer(outer.code, {"error": {"code": outer.code}})
                return self._answer(200, {plural: LISTS.get(plural, [])})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v3"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run_script(which: str, keystone: FakeKeystone, tmp_path: Path) -> subprocess.CompletedProcess:
    script = SCRIPTS[which]
    creds = tmp_path / "register.json"
    creds.write_text(json.dumps({"admin_password": "a", "placement_password": "p", "password": "p"}))
    env = {**os.environ, "OS_AUTH_URL": keystone.url, "OS_USERNAME": "admin", "OS_PROJECT_NAME": "admin",
           "REGISTER_CREDENTIALS": str(creds), "PLACEMENT_PUBLIC_URL": "http://127.0.0.1:8780"}
    if which == "compute":                       # the shared script learns its service from the env
        env.update(REGISTER_NAME="nova", REGISTER_TYPE="compute", REGISTER_USER="nova",
                   REGISTER_PUBLIC_URL="http://127.0.0.1:8774", REGISTER_INTERNAL_URL="http://127.0.0.1:8774")
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def keystone(request):
    ks = FakeKeystone(*request.param)
    yield ks
    ks.close()


@pytest.mark.parametrize("which", sorted(SCRIPTS))
@pytest.mark.parametrize("keystone", [(500, 1)], indirect=True)
def test_a_5xx_is_asked_again_and_the_job_succeeds(which, keystone, tmp_path):
    out = run_script(which, keystone, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "HTTP 500" in out.stderr and "trying again" in out.stderr
    gets = [p for m, p in keystone.asked if m == "GET" and p.startswith("/v3/projects")]
    assert len(gets) == 2                        # failed once, then found


@pytest.mark.parametrize("which", sorted(SCRIPTS))
@pytest.mark.parametrize("keystone", [(403, 1)], indirect=True)
def test_a_4xx_ends_the_job_at_once(which, keystone, tmp_path):
    out = run_script(which, keystone, tmp_path)
    assert out.returncode != 0
    assert "HTTP 403" in out.stderr and "trying again" not in out.stderr
    gets = [p for m, p in keystone.asked if m == "GET" and p.startswith("/v3/projects")]
    assert len(gets) == 1


@pytest.mark.parametrize("which", sorted(SCRIPTS))
@pytest.mark.parametrize("keystone", [(200, 0, True)], indirect=True)
def test_a_project_another_job_made_meanwhile_is_found_on_the_next_run(which, keystone, tmp_path):
    out = run_script(which, keystone, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "HTTP 409" in out.stderr and "trying again" in out.stderr
    posts = [p for m, p in keystone.asked if m == "POST" and p == "/v3/projects"]
    assert len(posts) == 1                       # made once, by the other job; found after
