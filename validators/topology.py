"""How services on different machines reach each other — pure, derived from the cloud.

A cloud whose hosts are several machines (hosts reached over ssh:// or tcp://, or with
different `address`es) cannot rely on one engine's network: a name resolves only on the
cloud network of its own host. tidegate then does what Kolla does:

- **published on the host's address**: every port a service `expose`s (and the port of
  its http/tcp health check) is published on the address of the host each replica runs
  on, under the same number. Two replicas of one service cannot share a host's port, so
  such a service is replaced in place, host by host (`max_unavailable` at a time);
- **names resolve to the hosts that run them**: a service reaches the services it names
  in `depends_on` and `requires` by name — `<service>` resolves to the address of every
  host that runs one of its replicas, `<service>-<i>` to replica i's host — through lines
  the engine writes into the container's /etc/hosts. Those lines are part of the spec
  hash, so when replicas move to other hosts the services that reach them roll with it
  (a front's backends follow its replicas); nothing else rolls.

A cloud on one machine (every host local, one address) keeps the engine's own network
and DNS: nothing here applies.
"""
from __future__ import annotations

from dataclasses import replace


def is_remote(url: str | None) -> bool:
    """A host whose engine is reached over the network (not a unix socket here)."""
    return bool(url) and not url.startswith("unix://")


def spans_machines(hosts: dict) -> bool:
    """True when the cloud's hosts are several machines (or one remote machine)."""
    return any(is_remote(h.url) for h in hosts.values()) or len({h.address for h in hosts.values()}) > 1


def published_on_host(svc) -> tuple:
    """The ports a service listens on that other machines must reach: `expose`, plus its
    http/tcp health check's port (the controller probes through the host, too)."""
    from .model import Port
    taken = {(p.container, p.protocol) for p in svc.ports}
    wanted = list(svc.expose)
    if svc.health is not None and svc.health.type in ("http", "tcp") and svc.health.port is not None:
        wanted.append(svc.health.port)
    out, seen = [], set()
    for port in wanted:
        if (port, "tcp") in taken or port in seen:
            continue
        seen.add(port)
        out.append(Port(container=port, host=port, on_host_address=True))
    return tuple(out)


def reach(services: dict, hosts: dict, svc) -> tuple[tuple[str, str], ...]:
    """/etc/hosts lines (name, address) for the services `svc` names in depends_on and
    requires: one line per host that runs the service, one per replica."""
    lines: list[tuple[str, str]] = []
    targets = sorted(set(svc.depends_on) | {name for name, _ in svc.requires})
    for name in targets:
        other = services.get(name)
        if other is None or other.name == svc.name:
            continue
        addresses = [hosts[h].address for h in other.placement if h in hosts]
        for address in dict.fromkeys(addresses):
            lines.append((name, address))
        for i, address in enumerate(addresses):
            lines.append((f"{name}-{i}", address))
    return tuple(lines)


def derive(hosts: dict, services: dict) -> dict:
    """The services with `published` and `reach` filled in for the cloud's topology."""
    if not spans_machines(hosts):
        return services
    out = {}
    for name, svc in services.items():
        out[name] = replace(svc, published=svc.ports + published_on_host(svc),
                            reach=reach(services, hosts, svc))
    return out
