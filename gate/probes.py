"""Availability probes: one client per endpoint asking it all through a phase, counting
failed requests and the longest gap between two answers that were good."""
from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

PAUSE = 0.02            # between two requests of one probe
TIMEOUT = 10.0


def request(method: str, url: str, timeout: float = TIMEOUT, headers: dict | None = None,
            body: bytes | None = None) -> tuple[int | None, str, dict, bytes]:
    """(status, error text, headers, body): status None when no HTTP answer came."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request(method, (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body,
                     headers={"User-Agent": "tidegate-gate-probe", "Connection": "close", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return response.status, "", {k.lower(): v for k, v in response.getheaders()}, data
    except (OSError, http.client.HTTPException) as err:
        return None, f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}", {}, b""
    finally:
        conn.close()


def get(url: str, timeout: float = TIMEOUT, token: "Token | None" = None) -> tuple[int | None, str]:
    """(status, error text) of a GET; with `token`, authenticated (X-Auth-Token; a `{project_id}`
    in the URL is the token's project), and asked once more with a new token after a 401."""
    if token is None:
        return request("GET", url, timeout)[:2]
    for fresh in (False, True):
        value, project, error = token.get(refresh=fresh)
        if value is None:
            return None, error
        status, error, _, _ = request("GET", url.replace("{project_id}", project), timeout,
                                      {"X-Auth-Token": value})
        if status != 401:
            break
    return status, error


@dataclass
class Token:
    """A Keystone token for probes, from the cloud's `auth` endpoint and the hooks'
    credentials (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME; the domains by OS_*_DOMAIN_ID or
    OS_*_DOMAIN_NAME, `Default` when neither is set): so an authenticated probe
    covers database-backed calls, not only an API's version document. Shared by the
    probes; a failure to get one is a failed request of the probe that asked."""
    auth_url: str                               # e.g. http://127.0.0.1:41000/v3
    env: dict
    timeout: float = TIMEOUT
    _value: str = ""
    _project: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _domain(self, prefix: str) -> dict:
        """{"id": …} from <prefix>_ID, else {"name": …} from <prefix>_NAME (default Default)."""
        if self.env.get(f"{prefix}_ID"):
            return {"id": self.env[f"{prefix}_ID"]}
        return {"name": self.env.get(f"{prefix}_NAME", "Default")}

    def get(self, refresh: bool = False) -> tuple[str | None, str, str]:
        """(token or None, project id, error text)."""
        with self._lock:
            if self._value and not refresh:
                return self._value, self._project, ""
            body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": self.env.get("OS_USERNAME", ""), "password": self.env.get("OS_PASSWORD", ""),
                "domain": self._domain("OS_USER_DOMAIN")}}},
                "scope": {"project": {"name": self.env.get("OS_PROJECT_NAME", ""),
                                      "domain": self._domain("OS_PROJECT_DOMAIN")}}}}
            status, error, headers, data = request(
                "POST", self.auth_url.rstrip("/") + "/auth/tokens", self.timeout,
                {"Content-Type": "application/json"}, json.dumps(body).encode())
            if status != 201 or not headers.get("x-subject-token"):
                self._value = ""
                return None, "", f"token: {f'HTTP {status}' if status else error}"
            try:
                project = json.loads(data)["token"]["project"]["id"]
            except (ValueError, KeyError, TypeError):
                project = ""
            self._value, self._project = headers["x-subject-token"], project
            return self._value, self._project, ""


def timed_out(error: str) -> bool:
    """Whether get()'s error text says no answer came in time (socket.timeout is TimeoutError)."""
    return error.startswith(("TimeoutError", "timeout"))


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
    timeout: float = TIMEOUT                 # seconds one request may take before it counts as failed
    token: Token | None = None               # ask with a Keystone token (gate.yaml endpoint `token: true`)
    ok: int = 0
    failed: int = 0
    timed_out: int = 0                       # of `failed`: no answer within `timeout`
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
            status, error = get(self.url, self.timeout, self.token)
            now = time.monotonic()
            if good(status, self.accepted):
                self.ok += 1
                self.longest_gap = max(self.longest_gap, now - last_good)
                last_good = now
            else:
                self.failed += 1
                if status is None and timed_out(error):
                    self.timed_out += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {f'HTTP {status}' if status else error}")
            if self.pause:
                self._stop.wait(self.pause)
        self.longest_gap = max(self.longest_gap, time.monotonic() - last_good) if self.failed else self.longest_gap

    def stop(self) -> "Probe":
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
        return self

    def summary(self) -> str:
        return (f"{self.name}: {self.ok}/{self.total} good, {self.failed} failed"
                + (f" ({self.timed_out} timed out after {self.timeout:g}s)" if self.timed_out else "")
                + f", longest gap {self.longest_gap:.2f}s")
