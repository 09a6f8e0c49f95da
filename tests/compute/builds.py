"""A build workload for the compute cloud's tests: while its `with` block runs, boot a
server (unpinned: the scheduler picks an enabled compute), wait until it is ACTIVE,
delete it — again and again, one at a time, bounded in count and time. Any server that
ends in ERROR or does not build in time is a failure, with its fault kept.

During a compute's replacement this is what finds a build cut by the stop: nova-compute
marks the servers it finds BUILDING on its host at start as ERROR. The computes' pre-stop
(lifecycle, config/nova/compute-drain.py) disables a compute and waits for its builds."""
from __future__ import annotations

import threading
import time

from .osclient import APIError, Client, Failed


DELETE_TIMEOUT = 300      # seconds: a compute's replacement under load, with margin


class Builds:
    def __init__(self, client: Client, flavor: str, image: str, *, limit: int = 300, prefix: str = "load"):
        self.client = Client(client.ports, client.password, client.user, client.project,   # its own token
                             client.address)
        self.flavor, self.image, self.limit, self.prefix = flavor, image, limit, prefix
        self.ok = 0
        self.failed: list[str] = []
        self.hosts: dict[str, int] = {}          # compute -> servers built there
        self.slowest_delete = 0.0                # seconds from DELETE to 404
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="builds", daemon=True)

    def __enter__(self) -> "Builds":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=500)        # the build and delete in flight end (or time out)

    def summary(self) -> str:
        return (f"{self.ok} servers built and deleted, {len(self.failed)} failed; by compute: "
                f"{dict(sorted(self.hosts.items()))}; slowest delete {self.slowest_delete:.0f} s")

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set() and n < self.limit:
            n += 1
            sid = None
            try:
                sid = self.client.boot(f"{self.prefix}-{n}", self.flavor, self.image)
                server = self.client.wait_active(sid, timeout=180)
                host = server.get("OS-EXT-SRV-ATTR:host") or "?"
                self.hosts[host] = self.hosts.get(host, 0) + 1
                self.ok += 1
            except (APIError, Failed) as err:
                self.failed.append(f"{time.strftime('%H:%M:%S')} build {n}: {err}")
            finally:
                if sid is not None:
                    t0 = time.monotonic()
                    try:
                        # A delete that reaches a compute as it stops is finished by its
                        # successor at start (it finds the server DELETING): it waits for
                        # that compute's replacement. Once, under a loaded make test, that
                        # took over 120 s; the slowest delete is in the summary.
                        self.client.delete_server(sid, timeout=DELETE_TIMEOUT)
                        self.slowest_delete = max(self.slowest_delete, time.monotonic() - t0)
                    except (APIError, Failed) as err:
                        self.failed.append(f"{time.strftime('%H:%M:%S')} delete {n}: {err}")
