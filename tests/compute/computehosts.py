"""The compute cloud over test hosts that are separate machines (tests/hosts, issue 15):
the control plane on the host named "ctl", each nova-compute on its own host ("cmp1",
"cmp2"), every engine reached only over ssh://. The cloud keeps the host names ctl, cmp1
and cmp2 (a Nova compute's identity is its host's name: nova.conf `host = ${host}`) and
maps them to the test hosts' ssh URLs, addresses and known_hosts.

On machines, services reach each other through ports published on their hosts'
addresses and the /etc/hosts lines tidegate derives from depends_on/requires
(validators/topology.py); a service on ctl still finds ctl's other services through its
engine's DNS, but a compute host's engine knows only its own containers. Hence:

- nova-compute names what it calls: RabbitMQ, MariaDB (its deep check reads its service
  record), memcached, Keystone, Placement, Neutron (a server's deletion asks Neutron for
  its ports) and Glance;
- an exposed port is published once per host, so two replicas of one API cannot share a
  host: a replica on one machine, replaced in place, is a gap in service. Nova's API and
  Neutron's server, upgraded under load, keep two replicas on two machines (ctl and a
  compute host: the cloud has three), so the front always has one; Keystone, not
  upgraded here, runs once on ctl;
- the front (HAProxy, on ctl) names each replica (`nova-api-1`), resolved from those
  /etc/hosts lines, instead of asking ctl's engine DNS, which knows ctl's replicas only;
  it publishes its ports on every address of ctl, and the catalog's public URLs name
  ctl's address."""
from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from controller import images
from controller.engines import connect
from controller.engines.remote import Access
from validators.load import load_cloud

from .computecloud import CLOUD, FRONT, HOSTS, NOVA, ComputeCloud, project_files, upgrade

# Where the replicas of the APIs that are upgraded under load run (see the docstring).
TWO_MACHINES = {"nova-api": ["ctl", "cmp1"], "neutron-server": ["ctl", "cmp2"]}

FRONT_CFG = """\
# The compute cloud's front over machines: each backend server is one replica by its
# per-replica name, which tidegate writes into this container's /etc/hosts from where
# the replica runs (its host's address; resolved at start).
global
  maxconn 4000
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option dontlog-normal
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout check 2s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  option http-server-close          # uwsgi closes after each answer: never reuse (config/haproxy)
  # A replica that stops refuses its connection: the request is retried on the other
  # machine's replica (redispatch); only checks take a server out (tests/demo/multihost.py).
  default-server init-addr libc,none check inter 500ms fall 2 rise 2
"""


def front_cfg(replicas: dict[str, int]) -> str:
    """FRONT_CFG's frontends and backends, one server per replica of each API."""
    apis = [("keystone", "keystone", 5000, "/v3"), ("placement", "placement", 8778, "/"),
            ("glance", "glance", 9292, "/healthcheck"), ("neutron", "neutron-server", 9696, "/healthcheck"),
            ("nova", "nova-api", 8774, "/healthcheck")]
    text = FRONT_CFG
    for api, _svc, port, _check in apis:
        text += f"frontend {api}\n  bind :{port}\n  default_backend {api}\n"
    for api, svc, port, check in apis:
        text += f"backend {api}\n  option httpchk GET {check}\n  http-check expect status 200\n"
        text += "".join(f"  server {svc}-{i} {svc}-{i}:{port}\n" for i in range(replicas[svc]))
    return text


def spread(files: dict, name: str, hosts: dict) -> dict:
    """clouds/compute as committed, made cloud `name` over `hosts` (ctl, cmp1, cmp2 ->
    {engine, url, address, known_hosts}); its secrets and their recipients unchanged."""
    ctl = hosts["ctl"]["address"].encode()
    root = f"clouds/{name}"
    out: dict = {}
    for path, (data, mode) in files.items():
        if not path.endswith(".age"):        # the catalog's public URLs: the front on ctl
            data = re.sub(rb"127\.0\.0\.1:(%s)(?![0-9])" % b"|".join(b"%d" % p for p in FRONT.values()),
                          ctl + rb":\1", data)
        out[f"{root}/" + path.removeprefix("clouds/compute/")] = (data, mode)

    def edit(rel: str, change) -> None:
        data, mode = out[f"{root}/{rel}"]
        value = yaml.safe_load(data)
        change(value)
        out[f"{root}/{rel}"] = (yaml.safe_dump(value, sort_keys=False, allow_unicode=True).encode(), mode)

    def cloud(v):
        v["name"] = name
        v["hosts"] = {h: dict(hosts[h]) for h in HOSTS}
    edit("cloud.yaml", cloud)
    edit("services/keystone.yaml", lambda v: v.update(replicas=1))
    for svc, on in TWO_MACHINES.items():
        edit(f"services/{svc}.yaml", lambda v, on=on: v.update(hosts=on, replicas=len(on)))
    replicas = {svc: yaml.safe_load(out[f"{root}/services/{svc}.yaml"][0]).get("replicas", 1)
                for svc in ("keystone", "placement", "glance", "neutron-server", "nova-api")}
    out[f"{root}/config/haproxy/haproxy.cfg"] = (front_cfg(replicas).encode(), 0o100644)
    return out


class HostsComputeCloud(ComputeCloud):
    """The compute cloud on a HostSet of three: hostset[0] is ctl, [1] cmp1, [2] cmp2."""

    def __init__(self, tmp: Path, hostset):
        assert len(hostset.hosts) == len(HOSTS), hostset.hosts
        self.hostset = hostset
        self.machine = dict(zip(HOSTS, hostset))             # cloud host name -> tests.hosts.Host
        self.hosts = {h: {"engine": m.kind, "url": m.ssh_url, "address": m.address, "known_hosts": m.known_hosts}
                      for h, m in self.machine.items()}
        name = f"cmh{uuid.uuid4().hex[:6]}"
        engines = {h: connect(m.kind, m.ssh_url, h, Access(known_hosts=m.known_hosts, identity=m.key))
                   for h, m in self.machine.items()}
        self.start(tmp, name, spread(project_files(), name, self.hosts), engines, dict(FRONT),
                   front=self.hosts["ctl"]["address"])

    def build_images(self, log=lambda line: None) -> dict[str, float]:
        """Each host gets the images of the services placed on it (base and both
        upgrades), built through its own remote engine in parallel; seconds per host."""
        wanted: dict[str, set[str]] = {}
        for files in (self.files, upgrade(self.files, self.name, NOVA + ("neutron-server",))):
            loaded = load_cloud(self.tree(files), self.name)
            assert loaded.cloud is not None, loaded.findings
            for svc in loaded.cloud.services.values():
                for host in svc.placement:
                    wanted.setdefault(host, set()).add(svc.build)

        def on(host):
            t0 = time.monotonic()
            for recipe in sorted(wanted[host]):
                images.build(self.engines[host], images.load_recipe(CLOUD / "images", recipe), log=log)
            return host, time.monotonic() - t0
        with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            return dict(pool.map(on, sorted(wanted)))

    def front_log(self) -> str:
        """The front's log: requests that failed or ended abnormally (dontlog-normal)."""
        return "\n".join(engine.logs(c.id, tail=200) for engine, c in self.containers("haproxy"))

    def teardown(self) -> None:
        from controller.teardown import remove_cloud
        for host, engine in self.engines.items():
            try:
                remove_cloud(engine, self.name, volumes=True, graceful=False)
            finally:
                engine.close()
