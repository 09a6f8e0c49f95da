"""The gate's sequence without an engine: what runs after a failed phase. The phases that
need containers are replaced by a subclass that fails where a real gate would; the hooks
are real executables run by the real hook runner."""
from __future__ import annotations

from pathlib import Path

from gate.gitwork import materialize
from gate.run import Gate

EXECUTABLE = 0o100755


class FailsAt(Gate):
    """A gate whose phases up to `reached` pass and whose `fails` phase fails."""

    def __init__(self, tmp_path: Path, reached: list[str], fails: str):
        super().__init__(str(tmp_path / "repo"), "c", "base", "head", kind="podman", url="unix:///none",
                         work_dir=str(tmp_path / "work"), out=lambda line: None)
        self.reached, self.fails, self.marker = reached, fails, tmp_path / "destroyed"

    def order(self, files) -> list[str]:
        return ["web"]

    def projects(self) -> dict[str, str]:
        return {"web": "web"}

    def _run(self) -> None:
        hook = f"#!/bin/sh\necho \"$TIDEGATE_PHASE $TIDEGATE_SERVICE\" >> {self.marker}\necho gone\n".encode()
        self.base = self.head = {f"{self.prefix}tests/web/destroy": (hook, EXECUTABLE)}
        for label in ("base", "head"):
            materialize(self.base, self.work / f"tree-{label}")
        for name in self.reached:
            p, t0 = self.phase(name)
            self.end(p, True, "", t0)
        p, t0 = self.phase(self.fails)
        self.end(p, False, "wave 1: web did not become healthy", t0)


def test_destroy_hooks_run_after_a_failed_phase(tmp_path):
    g = FailsAt(tmp_path, ["check", "images", "base", "smoke+create"], "upgrade")
    report = g.run()
    assert [p.name for p in report.phases] == ["check", "images", "base", "smoke+create", "upgrade", "destroy"]
    assert report.exit_code == 1 and report.failure().name == "upgrade"      # the verdict stays the upgrade's
    destroy = report.phases[-1]
    assert destroy.ok is True and [c.name for c in destroy.cases] == ["destroy:web"]
    assert g.marker.read_text() == "destroy web\n"


def test_no_destroy_hooks_before_the_create_hooks_ran(tmp_path):
    g = FailsAt(tmp_path, ["check", "images"], "base")
    report = g.run()
    assert [p.name for p in report.phases] == ["check", "images", "base"]
    assert not g.marker.exists()


def test_probe_timeout_is_a_setting_and_a_change_cannot_lengthen_it():
    from gate.config import governing, load
    assert load(b"", "g.yaml").probe_timeout == 10.0
    short, long = b"probe_timeout: 2\n", b"probe_timeout: 30\n"
    assert load(short, "g.yaml").probe_timeout == 2.0
    config, notes = governing(short, long, "g.yaml")
    assert config.probe_timeout == 2.0 and any(n.startswith("probe_timeout: 30s at head, 2s at base") for n in notes)
    assert governing(long, short, "g.yaml")[0].probe_timeout == 2.0              # shortening is fine


def test_a_request_that_does_not_answer_in_time_counts_as_timed_out():
    """A loopback listener that accepts and never answers: each probe request fails after
    the probe's own timeout, and says so."""
    import socket
    import threading

    from gate.probes import Probe
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        accepted = []
        stop = threading.Event()

        def accept():
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])
                except OSError:
                    continue
        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        probe = Probe("slow", f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=0.2, pause=0).start()
        for _ in range(400):                   # bounded: 20 s at most, ~0.4 s when it works
            if probe.total >= 2:
                break
            threading.Event().wait(0.05)
        probe.stop()
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
    assert probe.ok == 0 and probe.failed == probe.timed_out >= 2
    assert f"({probe.timed_out} timed out after 0.2s)" in probe.summary()


def test_a_projects_hooks_run_once_for_its_services_before_their_own():
    from gate.hooks import Hook, select
    x = 0o100755
    files = {f"clouds/g/tests/{folder}/verify": (b"#!/bin/sh\n", x) for folder in ("cinder", "cinder-api", "keystone")}
    order = ["keystone", "cinder-api", "cinder-scheduler"]
    projects = {"keystone": "keystone", "cinder-api": "cinder", "cinder-scheduler": "cinder"}
    hooks = select(files, files, "clouds/g/", "verify", order, projects)
    assert hooks == [Hook("keystone", "verify", "base", "tests/keystone/verify", "keystone"),
                     Hook("cinder", "verify", "base", "tests/cinder/verify", "cinder",
                          ("cinder-api", "cinder-scheduler")),
                     Hook("cinder-api", "verify", "base", "tests/cinder-api/verify", "cinder")]
    assert hooks[1].environment() == {"TIDEGATE_PROJECT": "cinder",
                                      "TIDEGATE_SERVICES": "cinder-api cinder-scheduler"}
    assert hooks[2].environment() == {"TIDEGATE_PROJECT": "cinder", "TIDEGATE_SERVICES": "cinder-api"}


class _Keystone:
    """A loopback stand-in for Keystone's token API: issues a token for admin/secret, answers
    GET /v3/<project>/types only with the newest token, and can revoke it (a 401 follows)."""

    def __init__(self):
        import http.server
        import json
        import threading
        state = self
        self.issued, self.valid = 0, ""

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["auth"]["identity"]["password"]["user"]
                domain = user["domain"].get("name") or {"default": "Default"}.get(user["domain"].get("id"))
                if (user["name"], user["password"], domain) != ("admin", "secret", "Default"):
                    self.send_response(401)
                    self.end_headers()
                    return
                state.issued += 1
                state.valid = f"tok-{state.issued}"
                data = json.dumps({"token": {"project": {"id": "p1"}}}).encode()
                self.send_response(201)
                self.send_header("X-Subject-Token", state.valid)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                ok = self.path == "/v3/p1/types" and self.headers.get("X-Auth-Token") == state.valid
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_an_endpoint_is_probed_with_a_token_from_auth_and_a_new_one_after_a_401():
    from gate.probes import Token, get
    keystone = _Keystone()
    try:
        token = Token(f"{keystone.url}/v3", {"OS_USERNAME": "admin", "OS_PASSWORD": "secret", "OS_PROJECT_NAME": "admin"})
        url = f"{keystone.url}/v3/{{project_id}}/types"
        assert get(url) == (401, "")                                   # without a token
        assert get(url, token=token) == (200, "") and keystone.issued == 1
        assert get(url, token=token) == (200, "") and keystone.issued == 1    # reused
        keystone.valid = "revoked"
        assert get(url, token=token) == (200, "") and keystone.issued == 2    # 401: asked again once
        by_id = Token(f"{keystone.url}/v3", {"OS_USERNAME": "admin", "OS_PASSWORD": "secret",
                                            "OS_USER_DOMAIN_ID": "default", "OS_PROJECT_DOMAIN_ID": "default"})
        assert get(url, token=by_id) == (200, "")
        wrong = Token(f"{keystone.url}/v3", {"OS_USERNAME": "admin", "OS_PASSWORD": "nope"})
        assert get(url, token=wrong) == (None, "token: HTTP 401")
    finally:
        keystone.close()


def test_a_token_endpoint_needs_auth():
    import pytest

    from gate.config import GateConfigError, load
    with pytest.raises(GateConfigError, match=r"endpoints.users.token: a token comes from `auth`"):
        load(b"endpoints: {users: {service: lb, port: 5000, path: /v3/users, token: true}}\n", "g.yaml")
    config = load(b"endpoints: {ks: {service: lb, port: 5000, path: /v3}, users: {service: lb, port: 5000, "
                  b"path: /v3/users, token: true}}\nauth: ks\n", "g.yaml")
    assert config.endpoint("users").token and not config.endpoint("ks").token


def test_the_fronts_log_shows_each_event_once():
    from gate.phases import once
    logs = ["Server web/web1 is DOWN, reason: Layer7 wrong status, code: 500, 1 active and 0 backup servers left.",
            "[WARNING]  (8) : Server web/web1 is DOWN, reason: Layer7 wrong status, code: 500, 1 active and 0 "
            "backup servers left.",
            "127.0.0.1:4711 [02/Dec/2026:11:00:00.000] fe web/web2 0/0/0/1/1 200 12 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"",
            "127.0.0.1:4711 [02/Dec/2026:11:00:00.000] fe web/web2 0/0/0/1/1 200 12 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"",
            "[WARNING]  (8) : Server web/web1 is UP, reason: Layer7 check passed.",
            "Server web/web1 is UP, reason: Layer7 check passed."]
    assert once(logs) == [logs[0], logs[2], logs[4]]


def test_urls_naming_the_clouds_own_published_ports_name_the_test_clouds():
    """Keystone's catalog (a bootstrap job's --bootstrap-public-url) and Placement's public
    URL name the demo's host ports: in the test cloud they name its own ports."""
    import itertools

    from gate.isolate import PortMap, isolate
    root = Path(__file__).resolve().parents[2] / "clouds/demo"
    files = {f"clouds/demo/{p.relative_to(root)}": (p.read_bytes(), 0o100644)
             for p in root.rglob("*") if p.is_file()}
    counter = itertools.count(41000)
    ports = PortMap(lambda: next(counter))
    out = isolate(files, "demo", "gate-0000abcd", kind="podman", url="unix:///x", ports=ports)
    keystone, placement = ports.lookup("haproxy", 5000), ports.lookup("haproxy", 8778)
    ks = out["clouds/gate-0000abcd/services/keystone.yaml"][0].decode()
    assert f"http://127.0.0.1:{keystone}/v3" in ks and ":15000" not in ks
    pl = out["clouds/gate-0000abcd/services/placement.yaml"][0].decode()
    assert f"http://127.0.0.1:{placement}" in pl and ":18778" not in pl
    assert not any(b"127.0.0.1:15000" in data or b"127.0.0.1:18778" in data for data, _ in out.values())


def test_a_longer_port_that_starts_with_a_published_one_is_left_alone():
    from gate.isolate import _rewrite_urls
    urls = {b"://127.0.0.1:1500": b"://127.0.0.1:41000"}
    assert _rewrite_urls(b"a http://127.0.0.1:1500/v3 b http://127.0.0.1:15000/v3", urls) == \
        b"a http://127.0.0.1:41000/v3 b http://127.0.0.1:15000/v3"


# -- load hooks: a workload while the cloud changes -----------------------------------------

LOOP_UNTIL_TOLD = """#!/usr/bin/env python3
import os, sys, time
done = 0
while not os.path.exists(os.environ["TIDEGATE_LOAD_STOP"]):
    done += 1
    time.sleep(0.01)
print(f"{os.environ['TIDEGATE_LOAD_DURING']}: {done} operations, {os.environ['FAILED']} failed")
sys.exit(1 if os.environ['FAILED'] != '0' else 0)
"""


def start_load(tmp_path, text: str, env: dict, mode: int = 0o755):
    from gate import hooks
    path = tmp_path / "load"
    path.write_text(text)
    path.chmod(mode)
    return hooks.Load(path, "nova", env, tmp_path / "state", tmp_path, "upgrade")


def test_a_load_hook_works_until_told_to_stop_and_is_judged_by_its_exit(tmp_path):
    load = start_load(tmp_path, LOOP_UNTIL_TOLD, {"FAILED": "0"})
    result = load.stop(timeout=10)
    assert result.ok and result.code == 0 and result.phase == "load", result.output
    assert result.message.startswith("upgrade: ") and "0 failed" in result.message
    assert result.message.split()[1].isdigit()            # its own summary, whatever it managed


def test_a_load_hook_that_saw_failures_fails_with_its_last_line(tmp_path):
    result = start_load(tmp_path, LOOP_UNTIL_TOLD, {"FAILED": "2"}).stop(timeout=10)
    assert not result.ok and result.code == 1
    assert result.message.endswith("2 failed (exit 1)")


def test_a_load_hook_that_does_not_stop_is_killed_and_fails(tmp_path):
    text = "#!/bin/sh\necho working\nwhile true; do sleep 0.1; done\n"
    load = start_load(tmp_path, text, {})
    import time
    time.sleep(0.3)
    result = load.stop(timeout=1)
    assert not result.ok and result.code is None
    assert "did not stop within 1s of being told: killed" in result.output


def test_a_load_hook_that_is_not_executable_fails_at_once(tmp_path):
    result = start_load(tmp_path, LOOP_UNTIL_TOLD, {}, mode=0o644).stop(timeout=1)
    assert not result.ok and "not executable" in result.message


def test_the_gate_starts_the_bases_load_hooks_and_reports_each_as_a_case(tmp_path):
    from types import SimpleNamespace

    from gate import phases
    from gate.report import Phase
    hook = LOOP_UNTIL_TOLD.replace("os.environ['FAILED']", "'0'").encode()
    prefix = "clouds/t/"
    files = {f"{prefix}tests/nova/load": (hook, EXECUTABLE)}
    materialize(files, tmp_path / "tree-base")
    said = []
    g = SimpleNamespace(base=files, head=files, prefix=prefix, projects=lambda: {"nova-api": "nova"},
                        tree=lambda commit: tmp_path / f"tree-{commit}" / prefix, hook_env=lambda: {},
                        work=tmp_path / "work", config=SimpleNamespace(hook_timeout=10), say=said.append)
    running = phases.start_loads(g, "rollback", ["nova-api"], head_hooks=False)
    p = Phase("rollback")
    phases.stop_loads(g, p, running, "load during rollback")
    assert [(c.name, c.ok) for c in p.cases] == [("load during rollback:nova", True)]
    assert p.cases[0].message.startswith("rollback: ")


def test_a_failed_load_hook_brings_the_fronts_last_log_lines(tmp_path):
    """A write the front answered with an error page: the case shows what HAProxy logged
    (its failed requests, with their termination state), as a failed probe's case does."""
    from types import SimpleNamespace

    from controller.desired import LABEL_CLOUD, LABEL_SERVICE
    from controller.engines.base import ContainerInfo
    from gate import phases
    from gate.config import Endpoint
    from gate.report import Phase
    hook = LOOP_UNTIL_TOLD.replace("os.environ['FAILED']", "'1'").encode()
    prefix = "clouds/t/"
    files = {f"{prefix}tests/neutron/load": (hook, EXECUTABLE)}
    materialize(files, tmp_path / "tree-base")
    front = ContainerInfo(name="t-haproxy-0", id="1", image="i", image_id="i", state="running",
                          labels={LABEL_CLOUD: "t", LABEL_SERVICE: "haproxy"})
    logged = 'neutron neutron/neutron1 0/0/-1/-1/3 502 SH-- "POST /v2.0/ports"'
    engine = SimpleNamespace(list_containers=lambda labels: [front], logs=lambda name, tail: logged)
    endpoints = (Endpoint("neutron", "haproxy", 9696), Endpoint("keystone", "haproxy", 5000))
    config = SimpleNamespace(hook_timeout=10, endpoints=endpoints,
                             endpoint=lambda n: next(e for e in endpoints if e.name == n))
    g = SimpleNamespace(base=files, head=files, prefix=prefix, projects=lambda: {"neutron-server": "neutron"},
                        tree=lambda commit: tmp_path / f"tree-{commit}" / prefix, hook_env=lambda: {},
                        work=tmp_path / "work", config=config, say=lambda line: None, engine=engine, name="t")
    running = phases.start_loads(g, "rollback", ["neutron-server"], head_hooks=False)
    p = Phase("rollback")
    phases.stop_loads(g, p, running, "load during rollback")
    assert not p.cases[0].ok
    assert p.cases[0].output.count("--- t-haproxy-0 (last 1 log lines) ---") == 1
    assert '502 SH-- "POST /v2.0/ports"' in p.cases[0].output
