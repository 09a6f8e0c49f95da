"""`tidegate check` on deep readiness checks and the credentials they log in with:
schema (a path starts with /), names, ports, auth references."""
import yaml

from validators.load import load_cloud
from validators.tree import MemoryTree

from .helpers import BASE_CLOUD, files, findings_of, service

AUTH = {"admin": {"service": "ks", "port": 5000, "user": "admin", "project": "admin",
                  "password": {"service": "ks", "env": "OS_PASSWORD"}}}
CLOUD = {**BASE_CLOUD, "auth": AUTH}


def ks(**fields):
    return service(environment={"OS_PASSWORD": "pw"}, expose=[5000], **fields)


def rules(found):
    return sorted((f.rule, f.line, f.message) for f in found if f.severity == "error")


def yaml_line(data: dict, text: str) -> int:
    """The line of the service file (as the helpers write it) that holds `text`."""
    lines = yaml.safe_dump(data).splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_declared_checks_load_with_their_defaults():
    checks = [{"name": "users", "type": "http", "path": "/v3/users", "auth": "admin"},
              {"name": "status", "type": "exec", "command": "keystone-status upgrade check", "retries": 5}]
    loaded = load_cloud(MemoryTree(files({"ks": ks(checks=checks)}, CLOUD)), "c")
    assert loaded.cloud is not None and rules(loaded.findings) == []
    users, status = loaded.cloud.services["ks"].checks
    assert (users.port, users.method, users.status, users.retries) == (5000, "GET", (), 3)   # the health check's port
    assert status.command == ("/bin/sh", "-c", "keystone-status upgrade check") and status.retries == 5
    assert loaded.cloud.auth["admin"].path == "/v3" and loaded.cloud.auth["admin"].user_domain == "Default"
    assert rules(findings_of({"ks": ks(checks=checks)}, CLOUD)) == []


def test_a_path_must_start_with_a_slash_and_an_http_check_needs_one():
    [(rule, line, message)] = rules(findings_of({"ks": ks(checks=[{"name": "u", "type": "http", "path": "v3/users"}])},
                                                CLOUD))
    assert (rule, message) == ("schema.pattern", "checks[0].path: 'v3/users' does not have the required form")
    assert line == yaml_line(ks(checks=[{"name": "u", "type": "http", "path": "v3/users"}]), "path: v3/users")
    found = rules(findings_of({"ks": ks(checks=[{"name": "u", "type": "http"}])}, CLOUD))
    assert [r for r, _, _ in found] == ["schema.required"] and "path" in found[0][2]
    found = rules(findings_of({"ks": ks(checks=[{"name": "u", "type": "exec"}])}, CLOUD))
    assert [r for r, _, _ in found] == ["schema.required"] and "command" in found[0][2]


def test_an_auth_reference_must_exist():
    found = rules(findings_of({"ks": ks(checks=[{"name": "u", "type": "http", "path": "/v3", "auth": "root"}])},
                              CLOUD))
    assert found == [("semantic.check-auth", yaml_line(ks(checks=[{"name": "u", "type": "http", "path": "/v3",
                                                                  "auth": "root"}]), "auth: root"),
                      "deep check 'u': auth 'root' is not declared in cloud.yaml")]
    assert rules(findings_of({"ks": ks(checks=[{"name": "s", "type": "exec", "command": ["true"],
                                                "auth": "admin"}])}, CLOUD))[0][0] == "semantic.check-auth"


def test_an_auth_names_a_service_and_a_password_that_exist():
    bad = {"admin": {**AUTH["admin"], "service": "keystone", "password": {"service": "ks", "env": "NOPE"}}}
    found = rules(findings_of({"ks": ks()}, {**BASE_CLOUD, "auth": bad}))
    assert [(r, m) for r, _, m in found] == [
        ("semantic.auth-reference", "auth admin: password: services/ks.yaml sets no environment variable NOPE"),
        ("semantic.auth-reference", "auth admin: service 'keystone' is not a service of this cloud")]
    assert all(line for _, line, _ in found)


def test_checks_need_distinct_names_and_a_port():
    two = [{"name": "u", "type": "http", "path": "/a"}, {"name": "u", "type": "http", "path": "/b"}]
    assert [r for r, _, _ in rules(findings_of({"ks": ks(checks=two)}, CLOUD))] == ["semantic.check-name"]
    portless = service(health={"type": "exec", "command": ["true"]}, expose=[1, 2],
                       checks=[{"name": "u", "type": "http", "path": "/"}])
    assert [r for r, _, _ in rules(findings_of({"ks": portless}))] == ["semantic.check-port"]
    with_port = {**portless, "checks": [{"name": "u", "type": "http", "path": "/", "port": 2}]}
    assert rules(findings_of({"ks": with_port})) == []


def test_changing_a_check_restarts_nothing():
    from controller.desired import desired_state
    def hash_of(svc):
        loaded = load_cloud(MemoryTree(files({"ks": svc}, CLOUD)), "c")
        return desired_state(loaded.cloud, loaded.tree, "c0").services["ks"].hash
    assert hash_of(ks()) == hash_of(ks(checks=[{"name": "u", "type": "http", "path": "/v3/users", "auth": "admin"}]))


def test_an_auth_password_may_be_a_secret_of_the_cloud_that_must_exist():
    import yaml as _yaml
    from validators.check import check_state
    from validators.load import load_cloud
    from validators.tree import MemoryTree
    cloud = {"name": "c", "hosts": {"h1": {"engine": "podman"}},
             "auth": {"admin": {"service": "ks", "port": 5000, "user": "admin", "project": "admin",
                                "password": {"secret": "keystone-admin"}}}}
    ks = {"project": "keystone", "release": "2025.1", "image": "ks", "health": {"type": "tcp", "port": 5000}}
    tree = {"clouds/c/cloud.yaml": _yaml.safe_dump(cloud), "clouds/c/services/ks.yaml": _yaml.safe_dump(ks)}
    found = [f for f in check_state(load_cloud(MemoryTree(tree), "c")) if f.rule == "semantic.auth-reference"]
    assert len(found) == 1 and "secret 'keystone-admin' does not exist" in found[0].message
    loaded = load_cloud(MemoryTree(tree), "c")
    assert loaded.cloud.auth["admin"].password.secret == "keystone-admin"
