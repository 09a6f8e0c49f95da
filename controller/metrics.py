"""Prometheus metrics: /metrics in the text exposition format (0.0.4), rendered from the
controller's Status at each scrape.

A tiny http.server on a daemon thread: no client library, nothing cached — a scrape reads
the status (the JSON file the controller writes, so a rollout in progress shows as
reconciling) and renders it. Every sample carries cloud="…", so several controllers can
be scraped into one Prometheus without relabelling.

    tidegate_ready{cloud}                        1 when the last applied revision runs as desired
    tidegate_reconciling{cloud}                  1 during a rollout (or a retry after an engine error)
    tidegate_stalled{cloud}                      1 when the last attempted revision was rejected or failed
    tidegate_last_applied_timestamp_seconds      when the last applied revision was applied (absent: never)
    tidegate_last_convergence_duration_seconds   how long the last rollout took
    tidegate_errors_total                        rejected and failed revisions, engine errors (counter)
    tidegate_drift_repairs_total                 reconciles that repaired drift (counter)
    tidegate_service_replicas_desired{service}
    tidegate_service_replicas_ready{service}     replicas running the desired spec, healthy
    tidegate_revision_info{applied,attempted}    1, with the revisions as labels
plus what the service itself knows (source fetch errors, last fetch time).
"""
from __future__ import annotations

import calendar
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from .status import Status

log = logging.getLogger("tidegate.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def ready_replicas(service: dict) -> int:
    """Replicas running the desired spec and passing its health check at the last
    observation (what `tidegate status` shows as READY)."""
    return sum(1 for r in service.get("running", [])
               if r.get("current") and r.get("state") == "running" and r.get("healthy", True))


class _Family:
    def __init__(self, name: str, kind: str, help_text: str):
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[dict, object]] = []


def render(status: Status, extra: dict[str, tuple[str, str, float]] | None = None) -> str:
    """The exposition text for one cloud's status. `extra`: name -> (type, help, value),
    more per-cloud samples (the service's own counters)."""
    cloud = {"cloud": status.cloud}
    families: list[_Family] = []

    def family(name, kind, help_text, value=None, **labels):
        fam = next((f for f in families if f.name == name), None)
        if fam is None:
            fam = _Family(name, kind, help_text)
            families.append(fam)
        if value is not None:
            fam.samples.append(({**cloud, **labels}, value))
        return fam

    condition = status.condition()
    family("tidegate_ready", "gauge", "1 when the cloud runs its last applied revision as desired",
           condition == "Ready")
    family("tidegate_reconciling", "gauge", "1 while a rollout (or a retry) is in progress",
           bool(status.reconciling))
    family("tidegate_stalled", "gauge", "1 when the last attempted revision was rejected or failed",
           bool(status.stalled))
    family("tidegate_last_applied_timestamp_seconds", "gauge",
           "Unix time the last applied revision was applied", _timestamp(status.last_applied_at))
    family("tidegate_last_convergence_duration_seconds", "gauge", "Seconds the last rollout took",
           None if status.last_duration is None else float(status.last_duration))
    family("tidegate_errors_total", "counter", "Rejected or failed revisions and engine errors",
           int(status.errors_total))
    family("tidegate_drift_repairs_total", "counter", "Reconciles that repaired drift (a changed or missing container)",
           int(status.drift_repairs))
    family("tidegate_revision_info", "gauge", "The last applied and last attempted revisions, as labels", 1,
           applied=status.last_applied_revision or "", attempted=status.last_attempted_revision or "")
    desired = family("tidegate_service_replicas_desired", "gauge", "Replicas the service should run")
    ready = family("tidegate_service_replicas_ready", "gauge", "Replicas running the desired spec and healthy")
    for name, svc in sorted(status.services.items()):
        desired.samples.append(({**cloud, "service": name}, int(svc.get("replicas", 0))))
        ready.samples.append(({**cloud, "service": name}, ready_replicas(svc)))
    for name, (kind, help_text, value) in sorted((extra or {}).items()):
        family(name, kind, help_text, value)

    lines = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            lines.append(f"{fam.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves /metrics on (address, port) from a daemon thread. port 0 binds a free port
    (see .port); `status` is called at each scrape."""

    def __init__(self, status: Callable[[], Status], port: int = 0, address: str = "",
                 extra: Callable[[], dict] | None = None):
        self.status = status
        self.extra = extra or (lambda: {})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.split("?", 1)[0] not in ("/metrics", "/metrics/"):
                    self.send_error(404, "only /metrics is served here")
                    return
                try:
                    body = render(outer.status(), outer.extra()).encode()
                except Exception as err:  # noqa: BLE001 — a scrape must fail visibly, not kill the thread
                    log.exception("rendering metrics failed")
                    self.send_error(500, f"rendering metrics failed: {err}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("metrics %s: " + fmt, self.client_address[0], *args)

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "MetricsServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="tidegate-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
