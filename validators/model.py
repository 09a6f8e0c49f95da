"""The state model: a cloud and its services as plain, immutable values.

Built from YAML that already passed the JSON Schema, with the cloud's defaults merged
in, so every consumer (rules, planner, gate) sees one resolved spec per service.
`Service.spec_hash` is what the container labels carry: a service whose hash did not
change is never touched.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from . import topology
from .releases import Release

DEFAULT_STOP_GRACE = 10.0
DEFAULT_HEALTH = {"interval": 2.0, "timeout": 2.0, "retries": 3, "start_period": 60.0}
DEFAULT_UPGRADE = {"strategy": "rolling", "max_unavailable": 1, "min_ready": 2.0}
PHASES = ("precheck", "expand", "migrate", "contract")


@dataclass(frozen=True)
class Host:
    name: str
    engine: str                     # podman | docker
    url: str | None = None          # None: the local engine
    address: str = "127.0.0.1"
    max_containers: int | None = None
    known_hosts: str | None = None  # ssh: file host keys are checked against
    tls: tuple[str, str, str] | None = None     # tcp: (ca, cert, key)
    insecure: bool = False          # tcp: plain tcp accepted
    # contents of the relative files above, read from the commit: (field, bytes)
    files: tuple[tuple[str, bytes], ...] = field(default=(), compare=False, repr=False)

    def access_paths(self) -> tuple[tuple[str, str], ...]:
        """(field, path) of every credential file the host names: known_hosts, tls.ca…"""
        out = [("known_hosts", self.known_hosts)] if self.known_hosts else []
        if self.tls:
            out += [(f"tls.{f}", p) for f, p in zip(("ca", "cert", "key"), self.tls)]
        return tuple(out)


@dataclass(frozen=True)
class Port:
    container: int
    host: int | None = None
    protocol: str = "tcp"
    host_ip: str = ""
    on_host_address: bool = False   # derived from `expose` on a cloud of several machines:
                                    # published on the address of the replica's host


@dataclass(frozen=True)
class Volume:
    name: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ConfigMount:
    source: str                     # relative to the cloud folder
    target: str
    template: bool = False          # ${secret:NAME} references are rendered
    owner: str | None = None        # of a file that holds secrets (None: the service's user, else root)
    mode: int = 0o440               # of a file that holds secrets


@dataclass(frozen=True)
class SecretFile:
    """One of the cloud's secrets as a file (or, layout key-repository, a folder of keys)."""
    name: str
    target: str
    owner: str | None = None
    mode: int = 0o440
    layout: str = "file"            # file | key-repository


@dataclass(frozen=True)
class SecretRef:
    """`{secret: NAME}` in an environment value: the cloud's secret secrets/NAME.age."""
    secret: str


@dataclass(frozen=True)
class Job:
    name: str
    command: tuple[str, ...]
    timeout: float = 600.0


@dataclass(frozen=True)
class Health:
    type: str                       # http | tcp | exec
    port: int | None = None
    path: str = "/"
    status: tuple[int, ...] = ()    # () = 200..399
    body: str | None = None
    command: tuple[str, ...] | None = None
    interval: float = DEFAULT_HEALTH["interval"]
    timeout: float = DEFAULT_HEALTH["timeout"]
    retries: int = DEFAULT_HEALTH["retries"]
    start_period: float = DEFAULT_HEALTH["start_period"]


@dataclass(frozen=True)
class Check:
    """A deep readiness check (`checks:` of a service): real work a successor must do
    before it joins its alias and before an old replica goes."""
    name: str
    type: str                       # http | exec
    port: int | None = None         # http: the check's, else the health check's, else the one exposed port
    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    status: tuple[int, ...] = ()    # () = 200..299
    body: str | None = None
    auth: str | None = None         # a name of Cloud.auth
    command: tuple[str, ...] | None = None
    timeout: float = 10.0
    retries: int = 3
    interval: float = 1.0


@dataclass(frozen=True)
class Analysis:
    """Analysis after the rollout (`analysis:` of a service or of the cloud's defaults):
    the service's http deep checks asked through the cloud's front for `window` seconds
    once its last replica is replaced; more than `max_failures` failures converge back."""
    window: float
    max_failures: int = 0
    interval: float = 2.0


@dataclass(frozen=True)
class PasswordRef:
    """Where an auth's password is: a secret of the cloud (`secret`), or the value of
    `env` in service `service`'s environment."""
    service: str | None = None
    env: str | None = None
    secret: str | None = None


@dataclass(frozen=True)
class Auth:
    """Credentials deep checks log in with (cloud.yaml `auth:`): a Keystone v3 password
    login asked of a serving replica of `service` on container port `port`."""
    name: str
    service: str
    port: int
    user: str
    password: PasswordRef
    project: str
    path: str = "/v3"
    user_domain: str = "Default"
    project_domain: str = "Default"


@dataclass(frozen=True)
class Hook:
    """A command run in a replica's own container at a point of its life (`lifecycle:`)."""
    command: tuple[str, ...]
    timeout: float = 60.0


@dataclass(frozen=True)
class Lifecycle:
    """`lifecycle:` of a service. `pre_stop` runs in a replica before its stop signal: it
    takes the replica out of service and waits until its work in flight is done (a Nova
    compute: disabled, its builds finished); a failure keeps the replica running and runs
    its `post_ready` to put it back. `post_ready` runs in a replica that passed its health
    gate and deep checks, before it joins its service's alias: it puts the replica (back)
    in service. Each container keeps the hooks it was created with (labels), so an old
    replica runs its own, with its own files."""
    pre_stop: Hook | None = None
    post_ready: Hook | None = None


@dataclass(frozen=True)
class Upgrade:
    strategy: str = "rolling"
    max_unavailable: int = 1
    min_ready: float = 2.0       # seconds a successor stays healthy before an old replica goes
    jobs: tuple[tuple[str, tuple[Job, ...]], ...] = ()   # ((phase, jobs), ...)

    def phase(self, name: str) -> tuple[Job, ...]:
        return dict(self.jobs).get(name, ())


@dataclass(frozen=True)
class Service:
    name: str
    project: str
    release: Release
    image: str
    role: str = "control"
    build: str | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    user: str | None = None
    replicas: int = 1
    hosts: tuple[str, ...] = ()
    max_per_host: int | None = None
    ports: tuple[Port, ...] = ()
    expose: tuple[int, ...] = ()
    # Derived (topology.py): what the engine publishes — `ports`, plus on a cloud of
    # several machines the exposed ports on the host's address; and the names this
    # service resolves to other hosts' addresses ((name, address), /etc/hosts lines).
    published: tuple[Port, ...] = ()
    reach: tuple[tuple[str, str], ...] = ()
    environment: tuple[tuple[str, str | SecretRef], ...] = ()
    volumes: tuple[Volume, ...] = ()
    config: tuple[ConfigMount, ...] = ()
    secret_files: tuple[SecretFile, ...] = ()
    depends_on: tuple[str, ...] = ()
    requires: tuple[tuple[str, str], ...] = ()
    health: Health | None = None
    checks: tuple[Check, ...] = ()
    analysis: Analysis | None = None    # None, or a window of 0: no analysis after the rollout
    stop_signal: str = "SIGTERM"
    stop_grace: float = DEFAULT_STOP_GRACE
    ulimits: tuple[tuple[str, int, int], ...] = ()
    lifecycle: Lifecycle = Lifecycle()
    upgrade: Upgrade = Upgrade()
    bootstrap: tuple[Job, ...] = ()
    file: str = field(default="", compare=False)           # repo path of its YAML file

    @property
    def placement(self) -> tuple[str, ...]:
        """Host of each replica, in replica order: round-robin over `hosts`."""
        if not self.hosts:
            return ()
        return tuple(self.hosts[i % len(self.hosts)] for i in range(self.replicas))

    @property
    def per_host_limit(self) -> int | None:
        if self.max_per_host is not None:
            return self.max_per_host
        return 1 if any(p.host is not None for p in self.published) else None

    def spec(self) -> dict:
        """The resolved spec as JSON-able data (what the hash covers)."""
        data = asdict(self)
        data.pop("file")
        data["release"] = str(self.release)
        return data

    @property
    def spec_hash(self) -> str:
        blob = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Policy:
    one_project_per_change: bool = False
    contract: str = "after-rollout"     # after-rollout | manual
    require_signed: bool = False
    secrets: str = "optional"           # optional | required (plain-text passwords are errors)


@dataclass(frozen=True)
class Cloud:
    name: str
    hosts: dict                         # name -> Host (insertion-ordered)
    services: dict                      # name -> Service
    network: str
    subnet: str | None = None
    policy: Policy = Policy()
    folder: str = ""                    # clouds/<name>
    recipients: tuple[tuple[str, str], ...] = ()   # (name, age public key) of the cloud's secrets
    auth: dict = field(default_factory=dict)   # name -> Auth (deep checks' credentials)

    def service_file(self, name: str) -> str:
        return f"{self.folder}/services/{name}.yaml"

    def front(self, service: str, port: int) -> tuple[str, Port] | None:
        """Where clients reach container port `port` of `service`: the service's own
        declared `ports` entry for it, else that of a service that depends on it and
        publishes the same container port (a balancer such as HAProxy), by name order."""
        own = self.services.get(service)
        if own is not None:
            for p in own.ports:
                if p.container == port and p.protocol == "tcp":
                    return service, p
        for name, svc in sorted(self.services.items()):
            if name == service or service not in svc.depends_on:
                continue
            for p in svc.ports:
                if p.container == port and p.protocol == "tcp":
                    return name, p
        return None

    def analysed_checks(self, service: str) -> tuple[Check, ...]:
        """The http deep checks of `service` that analysis asks through the front."""
        svc = self.services.get(service)
        if svc is None or svc.analysis is None:
            return ()
        return tuple(c for c in svc.checks if c.type == "http")


# -- building from validated YAML data -----------------------------------------

def _command(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    return tuple(str(v) for v in value)


def _jobs(items, default_prefix: str) -> tuple[Job, ...]:
    jobs = []
    for i, item in enumerate(items or ()):
        jobs.append(Job(name=item.get("name") or f"{default_prefix}-{i + 1}",
                        command=_command(item["command"]),
                        timeout=float(item.get("timeout", 600))))
    return tuple(jobs)


def _port(value) -> Port:
    if isinstance(value, str):
        spec, _, proto = value.partition("/")
        host, _, container = spec.partition(":")
        return Port(container=int(container), host=int(host), protocol=proto or "tcp")
    return Port(container=value["container"], host=value.get("host"),
                protocol=value.get("protocol", "tcp"), host_ip=value.get("host_ip", ""))


def _env(mapping) -> tuple[tuple[str, str], ...]:
    def text(v):
        if isinstance(v, dict):
            return SecretRef(v["secret"])
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return tuple(sorted((k, text(v)) for k, v in (mapping or {}).items()))


def _checks(items, health: Health | None, expose) -> tuple[Check, ...]:
    default_port = (health.port if health is not None and health.type != "exec" else None) or \
        (expose[0] if len(expose) == 1 else None)
    out = []
    for c in items or ():
        out.append(Check(name=c["name"], type=c["type"], port=c.get("port", default_port),
                         method=c.get("method", "GET"), path=c.get("path", "/"),
                         headers=tuple(sorted((c.get("headers") or {}).items())),
                         status=tuple(c.get("status") or ()), body=c.get("body"), auth=c.get("auth"),
                         command=_command(c.get("command")), timeout=float(c.get("timeout", 10)),
                         retries=int(c.get("retries", 3)), interval=float(c.get("interval", 1))))
    return tuple(out)


def _analysis(own, defaults) -> Analysis | None:
    """The service's `analysis`, each key over the cloud's defaults; None when off."""
    merged = {**(defaults or {}), **(own or {})}
    if not merged or not merged.get("window"):
        return None
    return Analysis(window=float(merged["window"]), max_failures=int(merged.get("max_failures", 0)),
                    interval=float(merged.get("interval", 2)))


def build_auth(name: str, data: dict) -> Auth:
    pw = data["password"]
    return Auth(name=name, service=data["service"], port=data["port"], user=data["user"],
                password=PasswordRef(secret=pw["secret"]) if "secret" in pw else PasswordRef(pw["service"], pw["env"]),
                project=data["project"],
                path=data.get("path", "/v3"), user_domain=data.get("user_domain", "Default"),
                project_domain=data.get("project_domain", "Default"))


def build_host(name: str, data: dict) -> Host:
    tls = data.get("tls")
    return Host(name=name, engine=data["engine"], url=data.get("url"),
                address=data.get("address", "127.0.0.1"),
                max_containers=data.get("max_containers"),
                known_hosts=data.get("known_hosts"),
                tls=(tls["ca"], tls["cert"], tls["key"]) if tls else None,
                insecure=bool(data.get("insecure", False)))


def build_service(name: str, data: dict, defaults: dict, all_hosts: tuple[str, ...],
                  file: str = "") -> Service:
    upgrade_defaults = {**DEFAULT_UPGRADE, **(defaults.get("upgrade") or {})}
    upgrade = data.get("upgrade") or {}
    health = None
    if data.get("health"):
        h = {**DEFAULT_HEALTH, **(defaults.get("health") or {}), **data["health"]}
        health = Health(type=h["type"], port=h.get("port"), path=h.get("path", "/"),
                        status=tuple(h.get("status") or ()), body=h.get("body"),
                        command=_command(h.get("command")),
                        interval=float(h["interval"]), timeout=float(h["timeout"]),
                        retries=int(h["retries"]), start_period=float(h["start_period"]))
    ulimits = []
    for key, value in sorted((data.get("ulimits") or {}).items()):
        soft, hard = (value, value) if isinstance(value, int) else value
        ulimits.append((key, soft, hard))
    env = {**(defaults.get("environment") or {}), **(data.get("environment") or {})}
    return Service(
        name=name,
        project=data["project"],
        release=Release.parse(data["release"]),
        image=data["image"],
        role=data.get("role", "control"),
        build=data.get("build"),
        command=_command(data.get("command")),
        entrypoint=_command(data.get("entrypoint")),
        user=data.get("user"),
        replicas=data.get("replicas", 1),
        hosts=tuple(data.get("hosts") or all_hosts),
        max_per_host=data.get("max_per_host"),
        ports=tuple(_port(p) for p in data.get("ports") or ()),
        published=tuple(_port(p) for p in data.get("ports") or ()),
        expose=tuple(data.get("expose") or ()),
        environment=_env(env),
        volumes=tuple(Volume(v["name"], v["path"], v.get("read_only", False))
                      for v in data.get("volumes") or ()),
        config=tuple(ConfigMount(c["source"], c["target"], c.get("template", False), c.get("owner"),
                                 int(c.get("mode", "0440"), 8))
                     for c in data.get("config") or ()),
        secret_files=tuple(SecretFile(s["name"], s["target"], s.get("owner"), int(s.get("mode", "0440"), 8),
                                      s.get("layout", "file")) for s in data.get("secrets") or ()),
        depends_on=tuple(data.get("depends_on") or ()),
        requires=tuple(sorted((data.get("requires") or {}).items())),
        health=health,
        checks=_checks(data.get("checks"), health, tuple(data.get("expose") or ())),
        analysis=_analysis(data.get("analysis"), defaults.get("analysis")),
        stop_signal=data.get("stop_signal", "SIGTERM"),
        stop_grace=float(data.get("stop_grace", defaults.get("stop_grace", DEFAULT_STOP_GRACE))),
        ulimits=tuple(ulimits),
        lifecycle=Lifecycle(**{k: Hook(_command(v["command"]), float(v.get("timeout", 60)))
                               for k, v in (data.get("lifecycle") or {}).items()}),
        upgrade=Upgrade(
            strategy=upgrade.get("strategy", upgrade_defaults["strategy"]),
            max_unavailable=upgrade.get("max_unavailable", upgrade_defaults["max_unavailable"]),
            min_ready=float(upgrade.get("min_ready", upgrade_defaults["min_ready"])),
            jobs=tuple((phase, _jobs(upgrade.get("jobs", {}).get(phase), phase))
                       for phase in PHASES if (upgrade.get("jobs") or {}).get(phase)),
        ),
        bootstrap=_jobs(data.get("bootstrap"), "bootstrap"),
        file=file,
    )


def build_cloud(folder: str, cloud_data: dict, services: dict[str, tuple[dict, str]]) -> Cloud:
    """`services`: name -> (validated data, file path)."""
    hosts = {name: build_host(name, h) for name, h in cloud_data["hosts"].items()}
    defaults = cloud_data.get("defaults") or {}
    policy = Policy(**(cloud_data.get("policy") or {}))
    network = cloud_data.get("network") or {}
    built = {name: build_service(name, data, defaults, tuple(hosts), file)
             for name, (data, file) in sorted(services.items())}
    return Cloud(
        name=cloud_data["name"],
        hosts=hosts,
        services=topology.derive(hosts, built),
        network=network.get("name") or f"tidegate-{cloud_data['name']}",
        subnet=network.get("subnet"),
        policy=policy,
        folder=folder,
        recipients=tuple(((cloud_data.get("secrets") or {}).get("recipients") or {}).items()),
        auth={name: build_auth(name, a) for name, a in (cloud_data.get("auth") or {}).items()},
    )
