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

from .releases import Release

DEFAULT_STOP_GRACE = 10.0
DEFAULT_HEALTH = {"interval": 2.0, "timeout": 2.0, "retries": 3, "start_period": 60.0}
DEFAULT_UPGRADE = {"strategy": "rolling", "max_unavailable": 1, "min_ready": 2.0}
PHASES = ("expand", "migrate", "contract")


@dataclass(frozen=True)
class Host:
    name: str
    engine: str                     # podman | docker
    url: str | None = None          # None: the local engine
    address: str = "127.0.0.1"
    max_containers: int | None = None


@dataclass(frozen=True)
class Port:
    container: int
    host: int | None = None
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class Volume:
    name: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ConfigMount:
    source: str                     # relative to the cloud folder
    target: str


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
    environment: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    config: tuple[ConfigMount, ...] = ()
    depends_on: tuple[str, ...] = ()
    requires: tuple[tuple[str, str], ...] = ()
    health: Health | None = None
    stop_signal: str = "SIGTERM"
    stop_grace: float = DEFAULT_STOP_GRACE
    ulimits: tuple[tuple[str, int, int], ...] = ()
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
        return 1 if any(p.host is not None for p in self.ports) else None

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


@dataclass(frozen=True)
class Cloud:
    name: str
    hosts: dict                         # name -> Host (insertion-ordered)
    services: dict                      # name -> Service
    network: str
    subnet: str | None = None
    policy: Policy = Policy()
    folder: str = ""                    # clouds/<name>

    def service_file(self, name: str) -> str:
        return f"{self.folder}/services/{name}.yaml"


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
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return tuple(sorted((k, text(v)) for k, v in (mapping or {}).items()))


def build_host(name: str, data: dict) -> Host:
    return Host(name=name, engine=data["engine"], url=data.get("url"),
                address=data.get("address", "127.0.0.1"),
                max_containers=data.get("max_containers"))


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
        expose=tuple(data.get("expose") or ()),
        environment=_env(env),
        volumes=tuple(Volume(v["name"], v["path"], v.get("read_only", False))
                      for v in data.get("volumes") or ()),
        config=tuple(ConfigMount(c["source"], c["target"]) for c in data.get("config") or ()),
        depends_on=tuple(data.get("depends_on") or ()),
        requires=tuple(sorted((data.get("requires") or {}).items())),
        health=health,
        stop_signal=data.get("stop_signal", "SIGTERM"),
        stop_grace=float(data.get("stop_grace", defaults.get("stop_grace", DEFAULT_STOP_GRACE))),
        ulimits=tuple(ulimits),
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
    return Cloud(
        name=cloud_data["name"],
        hosts=hosts,
        services={name: build_service(name, data, defaults, tuple(hosts), file)
                  for name, (data, file) in sorted(services.items())},
        network=network.get("name") or f"tidegate-{cloud_data['name']}",
        subnet=network.get("subnet"),
        policy=policy,
        folder=folder,
    )
