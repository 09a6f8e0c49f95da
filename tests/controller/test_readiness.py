"""Deep readiness checks without an engine: the decisions (judge, token request, password),
the checks against small HTTP servers on loopback addresses, and the executor on the
in-memory engine — a successor that is healthy but fails a deep check never joins its
alias and no old replica goes."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from controller.engines.base import ContainerInfo, ExecResult
from controller.keystone import AuthError, password, read_token, token_request
from controller.readiness import BODY_EXCERPT, DeepChecks, Tokens, excerpt, judge
from validators.load import load_cloud
from validators.model import Auth, Check, PasswordRef
from validators.tree import MemoryTree

from .fakeengine import FakeEngine
from .test_execute import converge, desired, web

NET = "tidegate-c"


# -- pure decisions ---------------------------------------------------------------------

def test_an_unexpected_status_is_named_with_a_bounded_piece_of_the_body():
    ok, words = judge(Check("providers", "http", 8778, status=(200,)), 503, b'{"error": "' + b"x" * 5000 + b'"}')
    assert not ok and words.startswith('answered 503 (expected 200): {"error": "xxx')
    assert len(words) < BODY_EXCERPT + 60 and words.endswith("…")


def test_the_default_accepts_2xx_only_and_a_body_match_is_a_substring():
    check = Check("users", "http", 5000, body="users")
    assert judge(check, 200, b'{"users": []}') == (True, "answered 200")
    assert judge(check, 302, b"users")[0] is False
    ok, words = judge(check, 200, b'{"projects": []}')
    assert not ok and "without 'users'" in words


def test_a_body_excerpt_is_one_line():
    assert excerpt(b"line one\nline two\r\n") == "line one line two"


AUTH = Auth("admin", "keystone", 5000, "admin", PasswordRef("placement", "OS_PASSWORD"), "admin",
            user_domain="Default", project_domain="Default")


def test_the_token_request_is_a_scoped_v3_password_login():
    request = token_request(replace(AUTH, path="/identity/v3/"), "s3cret")
    assert request.path == "/identity/v3/auth/tokens"
    body = json.loads(request.body)["auth"]
    assert body["identity"] == {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": "s3cret", "domain": {"name": "Default"}}}}
    assert body["scope"] == {"project": {"name": "admin", "domain": {"name": "Default"}}}
    assert dict(request.headers)["Content-Type"] == "application/json"


def test_a_refused_login_names_the_credentials_and_the_answer():
    assert read_token(AUTH, 201, "gAAAA", b"{}") == "gAAAA"
    with pytest.raises(AuthError, match=r"auth admin: token request for user admin answered 401: "
                                         r'\{"error": "The request you have made requires authentication."\}'):
        read_token(AUTH, 401, None, b'{"error": "The request you have made requires authentication."}')


def test_the_password_is_the_named_services_environment_value():
    cloud = desired(web=web(environment={"OS_PASSWORD": "demo-admin"})).cloud
    assert password(cloud, replace(AUTH, password=PasswordRef("web", "OS_PASSWORD"))) == "demo-admin"
    with pytest.raises(AuthError, match="services/web.yaml sets no NOPE"):
        password(cloud, replace(AUTH, password=PasswordRef("web", "NOPE")))


# -- against servers on loopback addresses ----------------------------------------------

class Api:
    """A small Keystone-and-API on one loopback address: POST /v3/auth/tokens issues a new
    token each time (if the password is right), GET /things wants a token it issued."""

    def __init__(self, address: str, port: int = 0, password: str = "pw", broken: bool = False):
        api = self
        self.logins, self.password, self.broken = 0, password, broken

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if data["auth"]["identity"]["password"]["user"]["password"] != api.password:
                    return self._send(401, b'{"error": "bad password"}')
                api.logins += 1
                token = f"tok-{address}-{api.logins}"
                issued.add(token)
                self._send(201, b"{}", [("X-Subject-Token", token)])

            def do_GET(self):
                if api.broken or self.headers.get("X-Auth-Token") not in issued:
                    return self._send(503, b'{"error": "service unavailable: cannot validate the token"}')
                self._send(200, b'{"things": []}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


issued: set = set()       # tokens of every Api: one replica validates another's (shared keys)


@pytest.fixture
def apis():
    made = []

    def make(address, port=0, **kw):
        api = Api(address, port, **kw)
        made.append(api)
        return api
    yield make
    for api in made:
        api.close()


def local_engine() -> FakeEngine:
    engine = FakeEngine()
    engine.url = "unix:///fake.sock"          # on this machine: containers are reached at their addresses
    return engine


def container(name, service, address, joined, state="running"):
    aliases = (service, f"{service}-0") if joined else ()
    return ContainerInfo(f"id-{name}", name, "img", "sha256:x",
                         {"tidegate.cloud": "c", "tidegate.service": service, "tidegate.role": "replica"},
                         state, networks={NET: (address, aliases)})


def cloud_with_auth():
    cloud = {"name": "c", "hosts": {"local": {"engine": "podman"}},
             "auth": {"admin": {"service": "keystone", "port": 5000, "user": "admin", "project": "admin",
                                "password": {"service": "web", "env": "OS_PASSWORD"}}}}
    tree = {"clouds/c/cloud.yaml": yaml.safe_dump(cloud),
            "clouds/c/services/keystone.yaml": yaml.safe_dump(web()),
            "clouds/c/services/web.yaml": yaml.safe_dump(web(environment={"OS_PASSWORD": "pw"}))}
    loaded = load_cloud(MemoryTree(tree), "c")
    assert loaded.cloud is not None, loaded.findings
    return loaded.cloud


def test_every_attempt_gets_a_fresh_token_from_a_serving_replica_not_the_successor(apis):
    serving = apis("127.0.0.1")
    successor = apis("127.0.0.2", serving.port)
    engine = local_engine()
    for info in (container("ks-old", "keystone", "127.0.0.1", True),
                 container("ks-new", "keystone", "127.0.0.2", False)):
        engine.containers[info.name] = info
    cloud = replace(cloud_with_auth(), auth={"admin": replace(cloud_with_auth().auth["admin"], port=serving.port)})
    tokens = Tokens(cloud, {"local": engine}, NET)
    assert tokens.fresh("admin", successor="id-ks-new") == "tok-127.0.0.1-1"
    assert tokens.fresh("admin", successor="id-ks-new") == "tok-127.0.0.1-2"
    assert (serving.logins, successor.logins) == (2, 0)
    # only the successor runs (a first deploy of keystone itself): it is asked
    del engine.containers["ks-old"]
    assert tokens.fresh("admin", successor="id-ks-new") == "tok-127.0.0.2-1"


def deep(engine, checks, cloud, cancel=None):
    return DeepChecks(engine, checks, network=NET, via=None, tokens=Tokens(cloud, {"local": engine}, NET),
                      cancel=cancel)


def test_a_successor_that_cannot_validate_fresh_tokens_fails_naming_the_check_and_answer(apis):
    keystone = apis("127.0.0.1")
    broken = apis("127.0.0.3", keystone.port, broken=True)
    engine = local_engine()
    engine.containers["ks"] = container("ks", "keystone", "127.0.0.1", True)
    cloud = replace(cloud_with_auth(), auth={"admin": replace(cloud_with_auth().auth["admin"], port=keystone.port)})
    check = Check("things", "http", broken.port, path="/things", status=(200,), auth="admin", retries=2,
                  interval=0.01)
    result = deep(engine, (check,), cloud).until_ready(container("web-new", "web", "127.0.0.3", False))
    assert not result.ok and result.attempts == 2
    assert result.reason == (f"deep check 'things': GET http://127.0.0.3:{broken.port}/things answered 503 "
                             '(expected 200): {"error": "service unavailable: cannot validate the token"} (2 attempt(s))')
    assert keystone.logins == 2                    # a fresh token for each attempt
    apis("127.0.0.4", keystone.port)                           # a successor that works
    checks, info = deep(engine, (check,), cloud), container("web-ok", "web", "127.0.0.4", False)
    assert checks.until_ready(info).ok and keystone.logins == 3
    # min_ready's rounds ask with the token it accepted new: no login a second
    assert [checks.round(info) for _ in range(3)] == [None] * 3 and keystone.logins == 3


def test_a_wrong_password_is_a_failed_check_that_says_so(apis):
    keystone = apis("127.0.0.1", password="other")
    engine = local_engine()
    engine.containers["ks"] = container("ks", "keystone", "127.0.0.1", True)
    cloud = replace(cloud_with_auth(), auth={"admin": replace(cloud_with_auth().auth["admin"], port=keystone.port)})
    check = Check("things", "http", keystone.port, path="/things", auth="admin", retries=1)
    ok, words = deep(engine, (check,), cloud).once(check, container("w", "web", "127.0.0.1", False))
    assert not ok and words == 'auth admin: token request for user admin answered 401: {"error": "bad password"}'


def test_during_min_ready_a_check_fails_after_retries_consecutive_failures():
    engine = FakeEngine()
    answers = iter([1, 0, 1, 1, 1])
    engine.exec = lambda name, command, **kw: ExecResult(next(answers), "not ready")
    check = Check("status", "exec", command=("placement-status", "upgrade", "check"), retries=2)
    checks = deep(engine, (check,), cloud_with_auth())
    info = container("w", "web", "127.0.0.1", True)
    assert [checks.round(info) for _ in range(3)] == [None, None, None]       # 1 fail, pass, 1 fail
    assert checks.round(info) == ("deep check 'status': placement-status upgrade check exited 1: not ready "
                                  "(2 consecutive failures)")


# -- the executor -----------------------------------------------------------------------

def test_a_healthy_successor_that_fails_a_deep_check_never_joins_and_no_old_replica_goes(tmp_path):
    engine = FakeEngine(images=("img:2025.1", "img:2025.2"))
    checks = [{"name": "status", "type": "exec", "command": ["web-status"], "retries": 2, "interval": 0.01}]
    assert converge(engine, desired(web=web(checks=checks))).ok
    before = engine.running()
    engine.calls.clear()
    engine.exec = lambda name, command, **kw: ExecResult(0 if list(command) == ["true"] else 1, "db: no such table")
    outcome = converge(engine, desired(web=web("2025.2", checks=checks)))
    assert not outcome.ok and outcome.failed_step.action == "wait-healthy"
    assert outcome.error.endswith("is healthy but failed its deep check 'status': web-status exited 1: "
                                  "db: no such table (2 attempt(s))")
    assert engine.running() == before and engine.ops("stop") == [outcome.failed_step.container]
    assert engine.ops("connect") == []                       # never in the alias


def test_a_deep_check_that_fails_during_min_ready_stops_the_rollout_before_an_old_replica_goes():
    engine = FakeEngine(images=("img:2025.1", "img:2025.2"))
    checks = [{"name": "status", "type": "exec", "command": ["web-status"], "retries": 2, "interval": 0.01}]
    assert converge(engine, desired(web=web(checks=checks))).ok
    before = engine.running()
    engine.calls.clear()
    runs = []

    def exec_(name, command, **kw):
        if list(command) == ["true"]:
            return ExecResult(0, "")
        runs.append(name)
        return ExecResult(0 if len(runs) == 1 else 1, "lost its database")
    engine.exec = exec_
    outcome = converge(engine, desired(web=web("2025.2", checks=checks, upgrade={"min_ready": 0.2})))
    assert not outcome.ok and outcome.failed_step.action == "wait-healthy"
    assert outcome.error.endswith("failed its deep check 'status': web-status exited 1: lost its database "
                                  "(2 consecutive failures) during min_ready")
    assert len(runs) == 3                                    # passed once, then failed twice in a row
    assert engine.running() == before and engine.ops("stop") == [outcome.failed_step.container]
