"""Register Placement in Keystone (idempotent): the `placement` user with the admin role in
the `service` project, the `placement` service, and its endpoints. Run as a bootstrap job
from the placement image (stdlib only); the endpoints and user names come from the
environment, the passwords from register.json (a template of the cloud's secrets, readable
by root only: never in the job container's environment)."""
import json
import os
import sys
import time
import urllib.error
import urllib.request

AUTH = os.environ["OS_AUTH_URL"].rstrip("/")
with open(os.environ.get("REGISTER_CREDENTIALS", "/etc/placement/register.json"), encoding="utf-8") as f:
    CREDENTIALS = json.load(f)


class AskAgain(Exception):
    """An answer that running the registration again can mend, unlike other 4xx: a 5xx (seen
    once from a Keystone replica that had just come up on a busy machine: 500 on GET
    /projects) and a 409 (seen when two services' register jobs both found no `service`
    project and both made it: the second gets 409, and finds it when run again)."""


def call(method, path, body=None, token=None, ok=(200, 201, 204)):
    req = urllib.request.Request(AUTH + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json", **({"X-Auth-Token": token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else {}), r.headers
    except urllib.error.HTTPError as err:
        if err.code in ok:
            return err.code, {}, err.headers
        if err.code >= 500 or err.code == 409:
            raise AskAgain(f"{method} {path}: HTTP {err.code}: {err.read()[:300]!r}") from None
        raise SystemExit(f"register: {method} {path}: HTTP {err.code}: {err.read()[:300]!r}")


def token():
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": os.environ["OS_USERNAME"], "domain": {"id": "default"}, "password": CREDENTIALS["admin_password"]}}},
        "scope": {"project": {"name": os.environ["OS_PROJECT_NAME"], "domain": {"id": "default"}}}}}
    for attempt in range(60):                      # keystone may still be starting
        try:
            _, _, headers = call("POST", "/auth/tokens", body)
            return headers["X-Subject-Token"]
        except (OSError, AskAgain, SystemExit) as err:
            last = err
            time.sleep(2)
    raise SystemExit(f"register: no token from {AUTH}: {last}")


def find_or_create(tok, kind, plural, query, body):
    _, found, _ = call("GET", f"/{plural}?{query}", token=tok)
    if found[plural]:
        return found[plural][0]["id"]
    _, made, _ = call("POST", f"/{plural}", {kind: body}, token=tok)
    return made[kind]["id"]


def main():
    tok = token()
    project = find_or_create(tok, "project", "projects", "name=service",
                             {"name": "service", "domain_id": "default", "description": "service users"})
    user = find_or_create(tok, "user", "users", "name=placement",
                          {"name": "placement", "domain_id": "default", "password": CREDENTIALS["placement_password"]})
    _, roles, _ = call("GET", "/roles?name=admin", token=tok)
    call("PUT", f"/projects/{project}/users/{user}/roles/{roles['roles'][0]['id']}", token=tok)
    service = find_or_create(tok, "service", "services", "type=placement",
                             {"name": "placement", "type": "placement", "description": "Placement API"})
    _, eps, _ = call("GET", f"/endpoints?service_id={service}", token=tok)
    have = {e["interface"] for e in eps["endpoints"]}
    for interface, url in (("public", os.environ["PLACEMENT_PUBLIC_URL"]), ("internal", "http://placement:8778"),
                           ("admin", "http://placement:8778")):
        if interface not in have:
            call("POST", "/endpoints", {"endpoint": {"service_id": service, "interface": interface, "url": url,
                                                     "region_id": "RegionOne"}}, token=tok)
    print(f"register: placement user {user} in project service, service {service}, endpoints ok")


if __name__ == "__main__":
    # A Keystone that just came up on a busy machine may time out or drop a request (seen:
    # a 30 s timeout during a test's first deploy): every step finds before it creates, so
    # the whole registration is simply run again, a bounded number of times.
    for attempt in range(5):
        try:
            sys.exit(main())
        except (OSError, AskAgain) as err:  # timeouts, resets, 5xx, 409; a 4xx ends it
            print(f"register: {type(err).__name__}: {err}; trying again in 5 s", file=sys.stderr)
            time.sleep(5)
    sys.exit("register: Keystone did not answer in 5 attempts")
