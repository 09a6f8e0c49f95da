"""Layer 2: the semantics of one state — references, placement, ports, mounts."""
from __future__ import annotations

import ipaddress
import posixpath
from collections import defaultdict

from .rules import Hit, rule


def _services(ctx):
    return ctx.cloud.services.values()


@rule("semantic.cloud-name", "semantic", "error",
      "cloud.yaml's name equals its folder name under clouds/")
def cloud_name(ctx):
    if ctx.cloud.name != ctx.loaded.name:
        yield Hit(f"{ctx.cloud.folder}/cloud.yaml", ("name",),
                  f"name {ctx.cloud.name!r} differs from the folder clouds/{ctx.loaded.name}/",
                  "rename the folder or the cloud; labels and container names use it")


@rule("semantic.service-name", "semantic", "error",
      "a service's `name`, when given, equals its file name")
def service_name(ctx):
    for name, data in ctx.loaded.service_data.items():
        declared = data.get("name")
        if declared is not None and declared != name:
            yield Hit(ctx.cloud.services[name].file, ("name",),
                      f"name {declared!r} differs from the file name {name!r}",
                      f"rename the file to services/{declared}.yaml or drop `name`")


@rule("semantic.unknown-host", "semantic", "error",
      "every host a service names is declared in cloud.yaml")
def unknown_host(ctx):
    known = ctx.cloud.hosts
    for svc in _services(ctx):
        for i, host in enumerate(svc.hosts):
            if host not in known:
                yield Hit(svc.file, ("hosts", i),
                          f"host {host!r} is not declared in cloud.yaml",
                          f"declared hosts: {', '.join(known)}; add it to cloud.yaml or fix the name")


@rule("semantic.unknown-dependency", "semantic", "error",
      "depends_on names services that exist")
def unknown_dependency(ctx):
    for svc in _services(ctx):
        for i, dep in enumerate(svc.depends_on):
            if dep not in ctx.cloud.services:
                yield Hit(svc.file, ("depends_on", i),
                          f"depends_on names {dep!r}, which is not a service of this cloud",
                          "add services/%s.yaml or remove the dependency" % dep)


@rule("semantic.dependency-cycle", "semantic", "error",
      "depends_on has no cycles (services must start in some order)")
def dependency_cycle(ctx):
    # Depth-first search with an explicit stack: a chain of thousands of services must
    # not exhaust Python's recursion limit.
    services = ctx.cloud.services
    done: set[str] = set()
    reported: set[frozenset] = set()
    for root in services:
        if root in done:
            continue
        path = [root]                        # the chain being explored
        on_path = {root: 0}                  # name -> position in path
        frames = [iter(enumerate(services[root].depends_on))]
        while frames:
            name = path[-1]
            for i, dep in frames[-1]:
                if dep not in services or dep in done:
                    continue
                if dep in on_path:
                    cycle = path[on_path[dep]:] + [dep]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        yield Hit(services[name].file, ("depends_on", i),
                                  "dependency cycle: " + " → ".join(cycle),
                                  "break the cycle: a service cannot wait for itself")
                    continue
                on_path[dep] = len(path)
                path.append(dep)
                frames.append(iter(enumerate(services[dep].depends_on)))
                break
            else:                            # every dependency of `name` explored
                frames.pop()
                del on_path[path.pop()]
                done.add(name)


_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def _bind_address(host_ip: str | None) -> str | None:
    """The address a port binds, normalised; None for every address of the host."""
    text = (host_ip or "").strip()
    if text in _WILDCARDS:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return text


def _overlap(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _address_text(address: str | None) -> str:
    return "all addresses" if address is None else address


@rule("semantic.port-conflict", "semantic", "error",
      "no two services publish the same host port on one host (an all-addresses bind "
      "conflicts with every address)")
def port_conflict(ctx):
    owners: dict[tuple, list] = defaultdict(list)   # (host, port, protocol) -> [(address, service)]
    for svc in _services(ctx):
        hosts = set(svc.placement)
        for i, port in enumerate(svc.ports):
            if port.host is None:
                continue
            address = _bind_address(port.host_ip)
            for host in sorted(hosts):
                key = (host, port.host, port.protocol)
                other = next(((a, name) for a, name in owners[key]
                              if name != svc.name and _overlap(a, address)), None)
                if other is not None:
                    yield Hit(svc.file, ("ports", i),
                              f"host port {port.host}/{port.protocol} on host {host} ({_address_text(address)}) "
                              f"is also published by {other[1]} ({_address_text(other[0])})",
                              "pick another host port, bind the two to different specific addresses "
                              "(host_ip), or place the services on different hosts")
                    break
                owners[key].append((address, svc.name))


@rule("semantic.config-outside", "semantic", "error",
      "config mounts point inside the cloud folder")
def config_outside(ctx):
    for svc in _services(ctx):
        for i, mount in enumerate(svc.config):
            src = mount.source
            normal = posixpath.normpath(src)
            if src.startswith("/") or normal == ".." or normal.startswith("../"):
                yield Hit(svc.file, ("config", i, "source"),
                          f"config source {src!r} points outside the cloud folder {ctx.cloud.folder}/",
                          "config files must live in the repository, under this cloud's folder (e.g. config/<service>/)")


@rule("semantic.config-missing", "semantic", "error",
      "config mount sources exist in the cloud folder")
def config_missing(ctx):
    for svc in _services(ctx):
        for i, mount in enumerate(svc.config):
            normal = posixpath.normpath(mount.source)
            if mount.source.startswith("/") or normal.startswith(".."):
                continue    # config-outside reports it
            if ctx.tree.kind(f"{ctx.cloud.folder}/{normal}") is None:
                yield Hit(svc.file, ("config", i, "source"),
                          f"config source {mount.source!r} does not exist in {ctx.cloud.folder}/",
                          "commit the file, or fix the path (relative to the cloud folder)")


@rule("semantic.replicas-exceed-hosts", "semantic", "error",
      "replicas fit on the service's hosts (one per host when host ports are published)")
def replicas_exceed_hosts(ctx):
    per_host_total: dict[str, int] = defaultdict(int)
    for svc in _services(ctx):
        limit = svc.per_host_limit
        for host in svc.placement:
            per_host_total[host] += 1
        if limit is not None and svc.replicas > limit * len(svc.hosts):
            why = ("it publishes host ports, so at most one replica per host"
                   if svc.max_per_host is None else f"max_per_host is {limit}")
            yield Hit(svc.file, ("replicas",),
                      f"{svc.replicas} replicas do not fit on {len(svc.hosts)} host(s): {why}",
                      f"lower replicas to {limit * len(svc.hosts)} or add hosts to the service")
    for name, count in per_host_total.items():
        host = ctx.cloud.hosts.get(name)
        if host is not None and host.max_containers is not None and count > host.max_containers:
            yield Hit(f"{ctx.cloud.folder}/cloud.yaml", ("hosts", name, "max_containers"),
                      f"host {name} would run {count} replicas, more than its max_containers {host.max_containers}",
                      "spread services over more hosts or raise max_containers")


@rule("semantic.unknown-requirement", "semantic", "error",
      "`requires` names services that exist")
def unknown_requirement(ctx):
    for svc in _services(ctx):
        for other, _spec in svc.requires:
            if other not in ctx.cloud.services:
                yield Hit(svc.file, ("requires", other), key=True,
                          message=f"requires names {other!r}, which is not a service of this cloud",
                          hint="fix the name or remove the requirement")


@rule("semantic.build-recipe-missing", "semantic", "error",
      "`build` names an image recipe in the cloud's images/ folder")
def build_recipe_missing(ctx):
    for svc in _services(ctx):
        if svc.build is None:
            continue
        base = f"{ctx.cloud.folder}/images/{svc.build}"
        if ctx.tree.kind(base + ".yaml") != "file" and ctx.tree.kind(base + "/Containerfile") != "file":
            yield Hit(svc.file, ("build",),
                      f"no image recipe {svc.build!r} (looked for images/{svc.build}.yaml and images/{svc.build}/Containerfile)",
                      "add the recipe or fix the name")


@rule("semantic.health-port", "semantic", "warning",
      "an http/tcp health check's port is one the service listens on")
def health_port(ctx):
    for svc in _services(ctx):
        h = svc.health
        if h is None or h.type == "exec" or h.port is None:
            continue
        known = set(svc.expose) | {p.container for p in svc.ports}
        if known and h.port not in known:
            yield Hit(svc.file, ("health", "port"),
                      f"health check port {h.port} is neither exposed nor published",
                      f"the service declares ports {sorted(known)}; check the health port")


@rule("semantic.no-health", "semantic", "warning",
      "services that serve traffic have a health check (a rolling upgrade is only as safe as its gate)")
def no_health(ctx):
    for svc in _services(ctx):
        if svc.health is None and svc.replicas > 0:
            yield Hit(svc.file, (),
                      "no health check: replacements count as ready as soon as they start",
                      "add health: {type: http|tcp|exec, …} so upgrades wait for real readiness")
