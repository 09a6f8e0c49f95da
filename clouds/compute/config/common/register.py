"""Register one OpenStack service in Keystone (idempotent): its user with the admin role in
the `service` project, the service and its public and internal endpoints. Run as a
bootstrap job from the service's own image (stdlib only). What to register comes from the
environment (REGISTER_USER, REGISTER_NAME, REGISTER_TYPE, REGISTER_PUBLIC_URL,
REGISTER_INTERNAL_URL); the passwords from register.json, a template of the cloud's
secrets readable by the job's user only (never in a container's environment).

Every step finds before it creates, so the whole registration can run again: a Keystone
that just came up on a busy machine may time out or drop a request."""
import json
import os
import sys
import time
import urllib.error
import urllib.request

AUTH = os.environ["OS_AUTH_URL"].rstrip("/")
CREDENTIALS_FILE = os.environ.get("REGISTER_CREDENTIALS", "/etc/tidegate/register.json")


class AskAgain(Exception):
    """An answer that running the registration again can mend, unlike other 4xx: a 5xx (seen
    once from a Keystone replica that had just come up on a busy machine: 500 on GET
    /projects) and a 409 (seen when two services' register jobs both found no `service`
    project and both made it: the second gets 409, and finds it when run again)."""


def call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json", **({"X-Auth-Token": token} if token else {})}
    req = urllib.request.Request(AUTH + path, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return (json.loads(data) if data else {}), r.headers
    except urllib.error.HTTPError as err:
        if err.code >= 500 or err.code == 409:
            raise AskAgain(f"{method} {path}: HTTP {err.code}: {err.read()[:300]!r}") from None
        raise SystemExit(f"register: {method} {path}: HTTP {err.code}: {err.read()[:300]!r}")


def token(admin_password):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": os.environ.get("OS_USERNAME", "admin"), "domain": {"id": "default"}, "password": admin_password}}},
        "scope": {"project": {"name": os.environ.get("OS_PROJECT_NAME", "admin"), "domain": {"id": "default"}}}}}
    last = None
    for _ in range(60):                            # Keystone may still be starting
        try:
            return call("POST", "/auth/tokens", body)[1]["X-Subject-Token"]
        except (OSError, AskAgain, SystemExit) as err:
            last = err
            time.sleep(2)
    raise SystemExit(f"register: no token from {AUTH}: {last}")


def find_or_create(tok, kind, plural, query, body):
    found, _ = call("GET", f"/{plural}?{query}", token=tok)
    if found[plural]:
        return found[plural][0]["id"]
    made, _ = call("POST", f"/{plural}", {kind: body}, token=tok)
    return made[kind]["id"]


def main():
    with open(CREDENTIALS_FILE, encoding="utf-8") as f:
        credentials = json.load(f)
    env = os.environ
    name, kind, user_name = env["REGISTER_NAME"], env["REGISTER_TYPE"], env["REGISTER_USER"]
    tok = token(credentials["admin_password"])
    project = find_or_create(tok, "project", "projects", "name=service",
                             {"name": "service", "domain_id": "default", "description": "service users"})
    user = find_or_create(tok, "user", "users", f"name={user_name}",
                          {"name": user_name, "domain_id": "default", "password": credentials["password"]})
    for role in ("admin", "service"):              # service: what a service token is checked for
        role_id = find_or_create(tok, "role", "roles", f"name={role}", {"name": role})
        call("PUT", f"/projects/{project}/users/{user}/roles/{role_id}", token=tok)
    service = find_or_create(tok, "service", "services", f"type={kind}", {"name": name, "type": kind})
    endpoints, _ = call("GET", f"/endpoints?service_id={service}", token=tok)
    have = {e["interface"] for e in endpoints["endpoints"]}
    for interface, url in (("public", env["REGISTER_PUBLIC_URL"]), ("internal", env["REGISTER_INTERNAL_URL"]),
                           ("admin", env["REGISTER_INTERNAL_URL"])):
        if interface not in have:
            call("POST", "/endpoints", {"endpoint": {"service_id": service, "interface": interface, "url": url,
                                                     "region_id": "RegionOne"}}, token=tok)
    print(f"register: {kind} service {name} ({service}), user {user_name} in project service, endpoints ok")


if __name__ == "__main__":
    for attempt in range(5):
        try:
            sys.exit(main())
        except (OSError, AskAgain) as err:  # timeouts, resets, 5xx, 409; a 4xx ends it
            print(f"register: {type(err).__name__}: {err}; trying again in 5 s", file=sys.stderr)
            time.sleep(5)
    sys.exit("register: Keystone did not answer in 5 attempts")
