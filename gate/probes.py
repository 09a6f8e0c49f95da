"""Availability probes: one client per endpoint asking it all through a phase, counting
failed requests and the longest gap between two answers that were good."""
from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

PAUSE = 0.02            # between two requests of one probe
TIMEOUT = 10.0


def get(url: str, timeout: float = TIMEOUT) -> tuple[int | None, str]:
    """(status, error text): status None when no HTTP answer came."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request("GET", (u.path or "/") + (f"?{u.query}" if u.query else ""),
                     headers={"User-Agent": "tidegate-gate-probe", "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, ""
    except (OSError, http.client.HTTPException) as err:
        return None, f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}"
    finally:
        conn.close()


def good(status: int | None, accepted: tuple[int, ...]) -> bool:
    if status is None:
        return False
    return status in accepted if accepted else status < 500


@dataclass
class Probe:
    name: str
    url: str
    accepted: tuple[int, ...] = ()
    pause: float = PAUSE                     # between two requests; 0: as fast as one client goes
    ok: int = 0
    failed: int = 0
    longest_gap: float = 0.0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def start(self) -> "Probe":
        self._thread = threading.Thread(target=self._run, name=f"probe-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        last_good = time.monotonic()
        while not self._stop.is_set():
            status, error = get(self.url)
            now = time.monotonic()
            if good(status, self.accepted):
                self.ok += 1
                self.longest_gap = max(self.longest_gap, now - last_good)
                last_good = now
            else:
                self.failed += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {f'HTTP {status}' if status else error}")
            if self.pause:
                self._stop.wait(self.pause)
        self.longest_gap = max(self.longest_gap, time.monotonic() - last_good) if self.failed else self.longest_gap

    def stop(self) -> "Probe":
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT + 5)
        return self

    def summary(self) -> str:
        return (f"{self.name}: {self.ok}/{self.total} good, {self.failed} failed, longest gap "
                f"{self.longest_gap:.2f}s")
