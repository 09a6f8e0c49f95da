"""One controller per cloud, across machines: a lease held in the engines of the cloud's hosts.

The state directory's flock (`service.ControllerLock`) keeps two controllers on one
machine apart; it cannot see a controller on another machine, nor one started with
another (or a deleted) state directory. The lease lives where the cloud lives: on each
host's engine, as a volume labelled with its holder (machine id, pid, state directory),
its last heartbeat and its expiry. No image and no exec is needed, on podman or docker.

Engines cannot change a volume's labels, so the lease is a chain of generations,
`tidegate.lease_<cloud>_<n>`: the highest one present is the lease. Taking or renewing it
creates generation n+1 and reads it back: creating a volume that exists keeps the first
creator's labels (docker answers with the existing volume, podman refuses), so of two
controllers racing for n+1 exactly one finds its own holder on it. Older generations are
removed afterwards. The name cannot be a data volume's (`.` before the first `_`).

A lease may be taken when it is free, expired, held by this very holder, or held by a
process of this machine that is gone (a restart after kill -9 need not wait for the
expiry; a live one is refused even when its state directory was deleted), or when the
operator breaks it (`--break-lease`). Clocks of the controllers' machines must agree to well
within the lease's time to live (NTP).

`may_take` decides (pure); `Lease` acquires on every host, renews in a thread while it is
held (`run`, and long `apply`s alike), and releases.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .desired import LABEL_CLOUD, LABEL_MANAGED, LABEL_ROLE
from .engines.base import Engine, EngineError, EngineUnreachable
from .engines.common import pid_alive

log = logging.getLogger("tidegate.lease")

DEFAULT_TTL = 60.0                   # seconds; renewed every TTL / 4
LABEL_HOLDER = "tidegate.lease.holder"
LABEL_HEARTBEAT = "tidegate.lease.heartbeat"
LABEL_EXPIRES = "tidegate.lease.expires"
LABEL_GENERATION = "tidegate.lease.generation"


@dataclass(frozen=True)
class Holder:
    machine: str
    pid: int
    state_dir: str

    def __str__(self) -> str:
        return f"{self.machine}:{self.pid}:{self.state_dir}"

    @staticmethod
    def parse(text: str) -> "Holder":
        machine, _, rest = text.partition(":")
        pid, _, state_dir = rest.partition(":")
        return Holder(machine, int(pid) if pid.isdigit() else 0, state_dir)

    @staticmethod
    def me(state_dir: str | os.PathLike) -> "Holder":
        try:
            machine_id = Path("/etc/machine-id").read_text().strip()[:12]
        except OSError:
            machine_id = ""
        # the host name too: containers on one machine may share an image's machine id
        machine = f"{socket.gethostname()}/{machine_id}" if machine_id else socket.gethostname()
        return Holder(machine, os.getpid(), str(Path(state_dir).resolve()))


@dataclass(frozen=True)
class Record:
    """One generation of a host's lease, as the engine holds it."""
    volume: str
    holder: str
    generation: int
    heartbeat: float
    expires: float


class LeaseHeld(Exception):
    """Another controller holds the cloud on a host (the message says who, until when, and
    how to break it)."""


class LeaseLost(Exception):
    """Our lease was taken over (after it expired, or broken by an operator)."""


def ttl_from_environment(environ=os.environ) -> float:
    """$TIDEGATE_LEASE_TTL (seconds), else DEFAULT_TTL; ValueError names the variable."""
    text = environ.get("TIDEGATE_LEASE_TTL", "")
    if not text:
        return DEFAULT_TTL
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ValueError(f"TIDEGATE_LEASE_TTL={text!r}: expected a number of seconds above 0 (and below a day)")
    return value


def lease_volume(cloud: str, generation: int) -> str:
    return f"tidegate.lease_{cloud}_{generation}"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def may_take(current: Record | None, me: Holder, now: float, *, force: bool = False,
             alive: Callable[[int], bool] = pid_alive) -> bool:
    if current is None or current.holder == str(me) or force or now >= current.expires:
        return True
    other = Holder.parse(current.holder)
    return other.machine == me.machine and not alive(other.pid)


def held_message(cloud: str, host: str, record: Record) -> str:
    return (f"cloud {cloud}: host {host} is held by the controller {record.holder} (machine:pid:state dir) "
            f"until {_when(record.expires)} (last heartbeat {_when(record.heartbeat)}); wait for it to stop "
            f"or its lease to expire, or, if it is gone for good, pass --break-lease")


def read(engine: Engine, cloud: str) -> list[Record]:
    """The host's lease generations, oldest first (several only briefly, or after a crash)."""
    records = []
    for name in engine.list_volumes({LABEL_MANAGED: "tidegate", LABEL_CLOUD: cloud, LABEL_ROLE: "lease"}):
        labels = engine.volume_labels(name) or {}
        try:
            records.append(Record(name, labels[LABEL_HOLDER], int(labels[LABEL_GENERATION]),
                                  float(labels[LABEL_HEARTBEAT]), float(labels[LABEL_EXPIRES])))
        except (KeyError, ValueError):
            continue                         # not one of ours after all (made by hand)
    return sorted(records, key=lambda r: r.generation)


def take(engine: Engine, cloud: str, me: Holder, *, ttl: float, now: float, force: bool = False,
         renew: bool = False) -> Record:
    """Take (or, `renew`, keep) the lease on one host: the next generation, made ours.
    Raises LeaseHeld (not ours to take) or LeaseLost (`renew`: no longer ours)."""
    records = read(engine, cloud)
    current = records[-1] if records else None
    if renew and current is not None and current.holder != str(me):
        raise LeaseLost(f"cloud {cloud}: host {engine.host}: the lease passed to {current.holder}")
    if not may_take(current, me, now, force=force):
        raise LeaseHeld(held_message(cloud, engine.host, current))
    generation = current.generation + 1 if current else 1
    name = lease_volume(cloud, generation)
    engine.ensure_volume(name, {LABEL_MANAGED: "tidegate", LABEL_CLOUD: cloud, LABEL_ROLE: "lease",
                                LABEL_HOLDER: str(me), LABEL_GENERATION: str(generation),
                                LABEL_HEARTBEAT: f"{now:.3f}", LABEL_EXPIRES: f"{now + ttl:.3f}"})
    mine = next((r for r in read(engine, cloud) if r.volume == name), None)
    if mine is None or mine.holder != str(me):          # another controller made this generation first
        if renew:
            raise LeaseLost(f"cloud {cloud}: host {engine.host}: the lease passed to "
                            f"{mine.holder if mine else 'nobody'}")
        raise LeaseHeld(held_message(cloud, engine.host, mine) if mine else
                        f"cloud {cloud}: host {engine.host}: lost the race for lease {name}; try again")
    for old in records:
        try:
            engine.remove_volume(old.volume)
        except EngineError as err:
            log.warning("host %s: could not remove the old lease %s: %s", engine.host, old.volume, err)
    return mine


class Lease:
    """The cloud's lease on every one of `engines` (host -> Engine), for as long as it is held.

    A host whose engine does not answer is skipped (nothing can converge it either) and
    tried again at each renewal; another controller needs every host, so it is still kept
    out by the others. `on_lost` is called (once, from the renewal thread) when the lease
    passes to someone else."""

    def __init__(self, engines: dict[str, Engine], cloud: str, state_dir: str | os.PathLike, *,
                 ttl: float | None = None, force: bool = False, on_lost: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.engines, self.cloud, self.force = engines, cloud, force
        self.ttl = ttl_from_environment() if ttl is None else ttl
        self.me = Holder.me(state_dir)
        self.on_lost = on_lost or (lambda message: None)
        self.clock = clock
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "Lease":
        """Take the lease on every host that answers; raise LeaseHeld (holding nothing) when
        another controller holds any of them."""
        try:
            for host in sorted(self.engines):
                self._take(host, renew=False)
        except BaseException:
            self.release()
            raise
        return self

    def _take(self, host: str, *, renew: bool) -> None:
        try:
            take(self.engines[host], self.cloud, self.me, ttl=self.ttl, now=self.clock(),
                 force=self.force and not renew, renew=renew and host in self.held)
            self.held.add(host)
        except EngineUnreachable as err:
            log.warning("lease: %s; trying again at the next renewal", err)

    def renew(self) -> bool:
        """Renew on every host (and take it on hosts that answer again); False once lost."""
        try:
            for host in sorted(self.engines):
                self._take(host, renew=True)
        except (LeaseLost, LeaseHeld) as err:
            self.held.discard(host)
            self.on_lost(str(err))
            return False
        except EngineError as err:
            log.warning("lease: %s; trying again at the next renewal", err)
        return True

    def start(self) -> "Lease":
        """Renew every ttl/4 in a thread until `release`."""
        def loop():
            while not self._stop.wait(self.ttl / 4):
                if not self.renew():
                    return
        self._thread = threading.Thread(target=loop, name="tidegate-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop renewing and give the lease up on every host where it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for host in sorted(self.held):
            engine = self.engines[host]
            try:
                for record in read(engine, self.cloud):
                    if record.holder == str(self.me):
                        engine.remove_volume(record.volume)
            except EngineError as err:
                log.warning("lease: could not release %s on host %s: %s (it expires by itself)",
                            self.cloud, host, err)
        self.held.clear()

    def __enter__(self) -> "Lease":
        return self.acquire().start()

    def __exit__(self, *exc) -> None:
        self.release()
