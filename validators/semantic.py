"""Layer 2: the semantics of one state — references, placement, ports, mounts."""
from __future__ import annotations

import ipaddress
import posixpath
import signal
from collections import defaultdict

from . import secrets as secret_refs
from . import topology
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
        for i, port in enumerate(svc.published):
            if port.host is None:
                continue
            where = ("ports", i) if i < len(svc.ports) else ("expose",)
            for host in sorted(hosts):
                address = _bind_address(ctx.cloud.hosts[host].address if port.on_host_address
                                        and host in ctx.cloud.hosts else port.host_ip)
                key = (host, port.host, port.protocol)
                other = next(((a, name) for a, name in owners[key]
                              if name != svc.name and _overlap(a, address)), None)
                if other is not None:
                    how = (" (exposed: a cloud of several machines publishes it on the host's address)"
                           if port.on_host_address else "")
                    yield Hit(svc.file, where,
                              f"host port {port.host}/{port.protocol} on host {host} ({_address_text(address)}) "
                              f"is also published by {other[1]} ({_address_text(other[0])}){how}",
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


# Directories every Linux image has: a config *file* mounted over one fails at container
# create ("not a directory"); a folder source's files go into it, which is fine.
SYSTEM_DIRS = frozenset({"/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt",
                         "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var"})


@rule("semantic.config-target", "semantic", "error",
      "a config file is not mounted over a directory every image has (/etc, /usr, /var…)")
def config_target(ctx):
    for svc in _services(ctx):
        for i, mount in enumerate(svc.config):
            if mount.target not in SYSTEM_DIRS:
                continue
            if ctx.tree.kind(f"{ctx.cloud.folder}/{posixpath.normpath(mount.source)}") == "file":
                yield Hit(svc.file, ("config", i, "target"),
                          f"config target {mount.target} is a directory in every image; "
                          f"the file {mount.source} cannot replace it",
                          f"name the file's path, e.g. {mount.target}/{posixpath.basename(mount.source)}")


@rule("semantic.stop-signal", "semantic", "error",
      "stop_signal names a signal (SIGTERM, SIGINT, SIGQUIT…)")
def stop_signal(ctx):
    for svc in _services(ctx):
        # the engines turn the name into a number with the same table (engines/common.py)
        if svc.stop_signal not in signal.Signals.__members__:
            yield Hit(svc.file, ("stop_signal",),
                      f"stop_signal {svc.stop_signal!r} is not a signal",
                      "use SIGTERM (the default), SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 or SIGWINCH: "
                      "the one the service's process finishes its work on")


@rule("semantic.ulimits", "semantic", "error",
      "a ulimit's soft limit is not above its hard limit")
def ulimits(ctx):
    for svc in _services(ctx):
        for name, soft, hard in svc.ulimits:
            if soft > hard:
                yield Hit(svc.file, ("ulimits", name),
                          f"ulimits.{name}: the soft limit {soft} is above the hard limit {hard}",
                          f"write [soft, hard] with soft <= hard, e.g. [{hard}, {hard}]")


MAX_SUBNET_PREFIX = 30      # a /30 holds the gateway and one container; /31 and /32 hold none


@rule("semantic.subnet", "semantic", "error",
      "network.subnet is an IPv4 network address with room for containers (e.g. 10.89.10.0/24)")
def subnet(ctx):
    text = ctx.cloud.subnet
    if text is None:
        return
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError as err:
        problem = f"subnet {text!r} is not an IPv4 network ({err})"
    else:
        if network.prefixlen > MAX_SUBNET_PREFIX:
            problem = f"subnet {text!r} leaves no room for a gateway and containers"
        elif str(network) != text:
            problem = f"subnet {text!r} has host bits set: the network is {network}"
        else:
            return
    yield Hit(f"{ctx.cloud.folder}/cloud.yaml", ("network", "subnet"), problem,
              f"write a network address in CIDR form, /{MAX_SUBNET_PREFIX} or larger, e.g. 10.89.10.0/24")


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


@rule("semantic.volume-per-machine", "semantic", "warning",
      "a named volume is one per host: replicas on several machines do not share its data")
def volume_per_machine(ctx):
    hosts = ctx.cloud.hosts
    for svc in _services(ctx):
        machines = {hosts[h].address for h in svc.placement if h in hosts}
        # an agent's volume (nova-compute's instances) belongs to its host by nature
        if svc.role == "agent" or len(machines) < 2 or not topology.spans_machines(hosts):
            continue
        for i, volume in enumerate(svc.volumes):
            yield Hit(svc.file, ("volumes", i),
                      f"volume {volume.name} exists once per host: the replicas on "
                      f"{', '.join(sorted(set(svc.placement)))} each see their own copy",
                      "keys or data every replica must share (Keystone's fernet and credential keys) "
                      "belong in the cloud's config or secrets, delivered to every replica")


# -- how the controller reaches each host (controller/engines/remote.py decides the same) --

def _host_where(ctx, name, *path):
    return f"{ctx.cloud.folder}/cloud.yaml", ("hosts", name, *path)


@rule("semantic.host-plain-tcp", "semantic", "error",
      "a tcp:// engine has TLS client certificates (docker) or says insecure: true")
def host_plain_tcp(ctx):
    for name, h in sorted(ctx.cloud.hosts.items()):
        if (h.url or "").startswith("tcp://") and not h.insecure and (not h.tls or h.engine != "docker"):
            why = ("podman serves no TLS: use ssh://" if h.engine == "podman"
                   else "give it tls: {ca, cert, key} (the engine runs with --tlsverify), or use ssh://")
            yield Hit(*_host_where(ctx, name, "url"),
                      f"host {name}: plain {h.url} is unauthenticated root access to the host", why)


@rule("semantic.host-insecure", "semantic", "warning",
      "a host marked insecure: true (plain tcp, no authentication) is reported")
def host_insecure(ctx):
    for name, h in sorted(ctx.cloud.hosts.items()):
        if h.insecure and (h.url or "").startswith("tcp://") and not h.tls:
            yield Hit(*_host_where(ctx, name, "insecure"),
                      f"host {name}: {h.url} is plain tcp: anyone on its network is root on the host",
                      "serve the engine with TLS client certificates (tls:) or reach it over ssh://")


@rule("semantic.host-access-mismatch", "semantic", "error",
      "known_hosts is given for ssh:// hosts only, tls for tcp:// docker hosts only")
def host_access_mismatch(ctx):
    for name, h in sorted(ctx.cloud.hosts.items()):
        scheme = (h.url or "unix://").split("://", 1)[0]
        if h.known_hosts and scheme != "ssh":
            yield Hit(*_host_where(ctx, name, "known_hosts"),
                      f"host {name}: known_hosts is for ssh:// engines; this one is {scheme}://",
                      "drop known_hosts, or reach the engine over ssh://")
        if h.tls and (scheme != "tcp" or h.engine != "docker"):
            yield Hit(*_host_where(ctx, name, "tls"),
                      f"host {name}: tls is for tcp:// docker engines; this one is {h.engine} over {scheme}://",
                      "drop tls, or reach a docker engine over tcp://")


@rule("semantic.host-file", "semantic", "error",
      "a host's known_hosts and tls files, when relative, are files of the cloud folder")
def host_file(ctx):
    for name, h in sorted(ctx.cloud.hosts.items()):
        read = {key for key, _ in h.files}
        for key, path in h.access_paths():
            if path.startswith("/") or key in read:
                continue
            normal = posixpath.normpath(path)
            where = "outside" if normal.startswith("..") else "not a file in"
            yield Hit(*_host_where(ctx, name, *key.split(".")),
                      f"host {name}: {key} {path!r} is {where} the cloud folder {ctx.cloud.folder}/",
                      "commit the file under the cloud folder and name it relative to it, "
                      "or give an absolute path on the controller's machine")


HOOK_PHASES = ("create", "verify", "destroy", "load")


@rule("semantic.unknown-hook-folder", "semantic", "warning",
      "a folder of gate hooks under tests/ names a service or a project (else its hooks never run)")
def unknown_hook_folder(ctx):
    folder = f"{ctx.cloud.folder}/tests"
    names = set(ctx.cloud.services) | {svc.project for svc in _services(ctx)}
    for entry in ctx.tree.listdir(folder):
        if entry in names or ctx.tree.kind(f"{folder}/{entry}") != "dir":
            continue
        hooks = [h for h in HOOK_PHASES if ctx.tree.kind(f"{folder}/{entry}/{h}") == "file"]
        if hooks:
            yield Hit(f"{folder}/{entry}/{hooks[0]}", (),
                      f"tests/{entry}/ holds gate hooks ({', '.join(hooks)}) but {entry!r} is neither a service "
                      "nor a project of this cloud: the gate never runs them",
                      f"name the folder after a service (one service) or a project (every service of it); "
                      f"services: {', '.join(sorted(ctx.cloud.services)) or 'none'}")


# -- deep readiness checks and the credentials they log in with -------------------------

@rule("semantic.check-name", "semantic", "error",
      "a service's deep checks have distinct names (status names the one that failed)")
def check_name(ctx):
    for svc in _services(ctx):
        seen = set()
        for i, c in enumerate(svc.checks):
            if c.name in seen:
                yield Hit(svc.file, ("checks", i, "name"), f"deep check {c.name!r} is named twice",
                          "give each check of the service its own name")
            seen.add(c.name)


@rule("semantic.check-port", "semantic", "error",
      "an http deep check has a port: its own, the health check's, or the service's one exposed port")
def check_port(ctx):
    for svc in _services(ctx):
        for i, c in enumerate(svc.checks):
            if c.type == "http" and c.port is None:
                yield Hit(svc.file, ("checks", i),
                          f"deep check {c.name!r} has no port (no http/tcp health check, not one exposed port)",
                          "give the check `port:` (a container port the service listens on)")


@rule("semantic.check-auth", "semantic", "error",
      "a deep check's `auth` names credentials declared under `auth` in cloud.yaml")
def check_auth(ctx):
    known = ctx.cloud.auth
    for svc in _services(ctx):
        for i, c in enumerate(svc.checks):
            if c.auth is not None and c.auth not in known:
                yield Hit(svc.file, ("checks", i, "auth"),
                          f"deep check {c.name!r}: auth {c.auth!r} is not declared in cloud.yaml",
                          (f"declared: {', '.join(sorted(known))}" if known else "no credentials are declared")
                          + f"; add auth: {{{c.auth}: {{service, port, user, password, project}}}} to cloud.yaml")
            if c.type == "exec" and c.auth is not None:
                yield Hit(svc.file, ("checks", i, "auth"),
                          f"deep check {c.name!r}: auth is for http checks; an exec check runs in the container",
                          "drop `auth`, or make it an http check")


@rule("semantic.analysis-front", "semantic", "error",
      "a service analysed after its rollout has a front for each http deep check's port: its own published "
      "port, or a service that depends on it and publishes that container port")
def analysis_front(ctx):
    cloud = ctx.cloud
    for svc in _services(ctx):
        for i, c in enumerate(svc.checks):
            if svc.analysis is None or c.type != "http" or c.port is None or cloud.front(svc.name, c.port):
                continue
            yield Hit(svc.file, ("checks", i),
                      f"deep check {c.name!r}: analysis after the rollout asks it through the cloud's front, but "
                      f"nothing publishes port {c.port} of {svc.name} (no `ports` entry of its own, no service that "
                      f"depends on {svc.name} and publishes container port {c.port})",
                      f"publish the port on the front (e.g. HAProxy: depends_on: [{svc.name}], ports: "
                      f"[\"HOST:{c.port}\"]), or set analysis: {{window: 0}} on {svc.name}")


@rule("semantic.auth-reference", "semantic", "error",
      "an `auth` of cloud.yaml names a service of the cloud, and a password that exists")
def auth_reference(ctx):
    where = f"{ctx.cloud.folder}/cloud.yaml"
    services = ctx.cloud.services

    def missing(service: str) -> bool:       # a file that did not load has its own finding
        return service not in services and not any(
            ctx.tree.kind(f"{ctx.cloud.folder}/services/{service}.{ext}") == "file" for ext in ("yaml", "yml"))
    for name, a in sorted(ctx.cloud.auth.items()):
        if missing(a.service):
            yield Hit(where, ("auth", name, "service"), f"auth {name}: service {a.service!r} is not a service of this cloud",
                      "name the service that issues tokens (keystone)")
        ref = a.password
        if ref.secret is not None:
            if ctx.tree.kind(secret_refs.path(ctx.cloud.folder, ref.secret)) != "file":
                yield Hit(where, ("auth", name, "password", "secret"),
                          f"auth {name}: password: secret {ref.secret!r} does not exist "
                          f"({secret_refs.path(ctx.cloud.folder, ref.secret)})",
                          f"add it: tidegate secrets add {ref.secret} --cloud {ctx.cloud.name}")
            continue
        if ref.service not in services:
            if not missing(ref.service):
                continue
            yield Hit(where, ("auth", name, "password", "service"),
                      f"auth {name}: password: service {ref.service!r} is not a service of this cloud",
                      "name the service whose environment holds the password")
        elif ref.env not in dict(services[ref.service].environment):
            yield Hit(where, ("auth", name, "password", "env"),
                      f"auth {name}: password: services/{ref.service}.yaml sets no environment variable {ref.env}",
                      f"set {ref.env} in its environment, or name the variable that holds the password")
