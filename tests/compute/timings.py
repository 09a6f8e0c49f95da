"""Step start/end times from the executor's progress events (Controller `progress`):
how long each service's rollout took, and each host's replacement of one service."""
from __future__ import annotations

import time
from collections import defaultdict


class Timings:
    def __init__(self):
        self.started: dict[tuple, float] = {}
        self.spans: list[tuple[str, str, str, float, float]] = []    # service, host, action, start, end
        self.lines: list[str] = []          # every event, with the wall clock (shown on failure)

    def __call__(self, event, step, detail) -> None:
        key = (step.service, step.host, step.action, step.container, step.job, step.phase)
        self.lines.append(f"{time.strftime('%H:%M:%S')} {event} {step.action} {step.host} "
                          f"{step.container or step.service} {detail}".rstrip())
        if event == "start":
            self.started[key] = time.monotonic()
        elif event in ("done", "failed") and key in self.started:
            self.spans.append((step.service, step.host, step.action, self.started.pop(key), time.monotonic()))

    def clear(self) -> None:
        self.started.clear()
        self.spans.clear()
        self.lines.clear()

    def per_service(self) -> dict[str, float]:
        first, last = {}, {}
        for service, _host, _action, t0, t1 in self.spans:
            first[service] = min(first.get(service, t0), t0)
            last[service] = max(last.get(service, t1), t1)
        return {s: last[s] - first[s] for s in first}

    def per_host(self, service: str) -> dict[str, float]:
        """From the old replica's stop to the end of its successor's health gate, per host."""
        spans = defaultdict(list)
        for svc, host, action, t0, t1 in self.spans:
            if svc == service and action in ("stop", "remove", "create", "wait-healthy"):
                spans[host].append((t0, t1))
        return {h: max(t1 for _, t1 in s) - min(t0 for t0, _ in s) for h, s in sorted(spans.items())}
