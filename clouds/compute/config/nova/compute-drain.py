"""Take this host's nova-compute out of service before its container stops, or put it
back once its successor serves (services/nova-compute.yaml `lifecycle:`) — what an
operator does by hand around a compute's restart, through Nova's API as the nova user:

  compute-drain.py disable SECONDS
      `openstack compute service set --disable` with a reason that says tidegate did it,
      then wait (at most SECONDS) until nothing is in flight on this compute: no server on
      it building or in a task (deleting, rebooting, migrating…), and no server still
      waiting for its claim (it may have been scheduled here just before the disable).
      A build cut by the stop would end in ERROR: nova-compute marks the servers it finds
      BUILDING on its host at start as failed. Exit 0 when quiet, 1 (naming the servers)
      when the time is up.
  compute-drain.py enable
      Enable this compute again — only if tidegate disabled it: a compute an operator
      disabled stays disabled. Exit 0 when it serves (or stays as the operator left it).

Stdlib only (it runs in the old container and in the new, whatever their release)."""
import configparser
import json
import sys
import time
import urllib.error
import urllib.request

CONF = "/etc/nova/nova.conf"
MARK = "tidegate: "                 # the disabled reason's prefix: ours to undo
MICROVERSION = "2.53"               # services by id (PUT /os-services/{id}); Nova 31 and 33 serve it
SETTLE = 2.0                        # a placement decision made just before the disable lands by then
QUIET_ROUNDS = 2                    # polls in a row with nothing in flight


def call(method, url, token=None, body=None, patience=30.0):
    """One API call; a 5xx or no answer is asked again for `patience` seconds (a replica
    of the API being replaced), a 4xx ends the hook at once."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return _call(method, url, token, body)
        except urllib.error.HTTPError as err:
            if err.code < 500 or time.monotonic() > deadline:
                sys.exit(f"{method} {url}: HTTP {err.code}: {err.read()[:200].decode(errors='replace')}")
            print(f"{method} {url}: HTTP {err.code}, asking again", file=sys.stderr)
        except OSError as err:
            if time.monotonic() > deadline:
                sys.exit(f"{method} {url}: {err}")
            print(f"{method} {url}: {err}, asking again", file=sys.stderr)
        time.sleep(2)


def _call(method, url, token, body):
    head = {"Accept": "application/json", "X-OpenStack-Nova-API-Version": MICROVERSION}
    data = None
    if body is not None:
        head["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if token:
        head["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=data, method=method, headers=head)
    with urllib.request.urlopen(req, timeout=30) as answer:
        text = answer.read()
        return json.loads(text) if text.strip() else {}, answer.headers


def login(conf):
    """A token of the nova service user (the [keystone_authtoken] credentials), and the
    compute API's internal endpoint from its catalog."""
    auth = conf["keystone_authtoken"]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": auth["username"], "password": auth["password"],
        "domain": {"name": auth.get("user_domain_name", "Default")}}}},
        "scope": {"project": {"name": auth["project_name"],
                              "domain": {"name": auth.get("project_domain_name", "Default")}}}}}
    answer, headers = call("POST", auth["auth_url"].rstrip("/") + "/auth/tokens", body=body)
    for entry in answer["token"]["catalog"]:
        if entry["type"] == "compute":
            for endpoint in entry["endpoints"]:
                if endpoint["interface"] == "internal":
                    return headers["X-Subject-Token"], endpoint["url"].rstrip("/")
    sys.exit("no internal compute endpoint in the catalog")


def service(token, api, host):
    found = call("GET", f"{api}/os-services?host={host}&binary=nova-compute", token)[0]["services"]
    return found[0] if found else None


def in_flight(token, api, host):
    """Servers on `host` building or in a task, and servers not yet claimed by a compute."""
    busy = []
    for query in (f"host={host}", "status=BUILD"):
        servers = call("GET", f"{api}/servers/detail?all_tenants=1&{query}", token)[0]["servers"]
        for s in servers:
            where = s.get("OS-EXT-SRV-ATTR:host")
            task = s.get("OS-EXT-STS:task_state")
            if where == host and (s["status"] == "BUILD" or task) or (where is None and s["status"] == "BUILD"):
                busy.append(f"{s['name']} ({s['status']}, task {task}, host {where})")
    return sorted(set(busy))


def disable(token, api, host, seconds):
    record = service(token, api, host)
    if record is None:
        print(f"nova-compute on {host} has no service record: nothing runs here to drain")
        return 0
    if record["status"] == "disabled" and not (record.get("disabled_reason") or "").startswith(MARK):
        print(f"nova-compute on {host} was disabled by an operator ({record.get('disabled_reason')}): kept so")
    elif record["status"] != "disabled":
        reason = MARK + f"its container is being replaced ({time.strftime('%Y-%m-%d %H:%M:%S')})"
        call("PUT", f"{api}/os-services/{record['id']}", token, {"status": "disabled", "disabled_reason": reason})
        print(f"nova-compute on {host} disabled: the scheduler sends it nothing new")
    deadline = time.monotonic() + seconds
    time.sleep(SETTLE)
    quiet = 0
    while True:
        busy = in_flight(token, api, host)
        quiet = 0 if busy else quiet + 1
        if quiet >= QUIET_ROUNDS:
            print(f"nova-compute on {host}: nothing in flight")
            return 0
        if time.monotonic() > deadline:
            print(f"nova-compute on {host}: still in flight after {seconds:.0f}s: {', '.join(busy)}")
            return 1
        time.sleep(1)


def enable(token, api, host):
    record = service(token, api, host)
    if record is None:
        print(f"nova-compute on {host} has no service record yet")
        return 1
    reason = record.get("disabled_reason") or ""
    if record["status"] == "disabled" and reason.startswith(MARK):
        call("PUT", f"{api}/os-services/{record['id']}", token, {"status": "enabled"})
        print(f"nova-compute on {host} enabled again")
    elif record["status"] == "disabled":
        print(f"nova-compute on {host} stays disabled, as an operator left it ({reason})")
    else:
        print(f"nova-compute on {host} is enabled")
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] not in ("disable", "enable") or (argv[1] == "disable" and len(argv) != 3):
        sys.exit("usage: compute-drain.py disable SECONDS | enable")
    conf = configparser.ConfigParser(interpolation=None, strict=False)
    conf.read(CONF)
    host = conf["DEFAULT"]["host"]
    token, api = login(conf)
    if argv[1] == "disable":
        return disable(token, api, host, float(argv[2]))
    return enable(token, api, host)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
