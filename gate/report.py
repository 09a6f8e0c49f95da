"""The gate's report: phases of cases (one per step, hook and probe budget), the verdict
as an exit code, and the JSON document (`--json`); JUnit XML is made from it (junit.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    name: str
    ok: bool | None                  # None: skipped
    seconds: float = 0.0
    message: str = ""
    output: str = ""


@dataclass
class Phase:
    name: str
    ok: bool | None = None           # None: skipped / not reached
    seconds: float = 0.0
    message: str = ""
    cases: list[Case] = field(default_factory=list)

    def case(self, name: str, ok: bool | None, seconds: float = 0.0, message: str = "", output: str = "") -> Case:
        c = Case(name, ok, seconds, message, output)
        self.cases.append(c)
        return c


@dataclass
class Report:
    cloud: str
    base: str
    head: str
    test_cloud: str = ""
    engine: str = ""
    phases: list[Phase] = field(default_factory=list)
    probes: dict = field(default_factory=dict)
    seconds: float = 0.0
    kept: dict | None = None
    error: str = ""                  # why the gate could not run (exit 2)

    @property
    def exit_code(self) -> int:
        """0 pass; 1 the change must not merge; 2 the gate could not run, or could not
        clean up after a change that passed (infrastructure, not a verdict)."""
        if self.error:
            return 2
        failed = self.failure()
        if failed is None:
            return 0
        return 2 if failed.name == "teardown" else 1

    def failure(self) -> Phase | None:
        return next((p for p in self.phases if p.ok is False), None)

    def as_dict(self) -> dict:
        return {"cloud": self.cloud, "base": self.base, "head": self.head, "test_cloud": self.test_cloud,
                "engine": self.engine, "result": {0: "pass", 1: "fail", 2: "error"}[self.exit_code],
                "exit_code": self.exit_code, "seconds": round(self.seconds, 2), "error": self.error or None,
                "probes": self.probes, "kept": self.kept,
                "phases": [{"name": p.name, "result": _result(p.ok), "seconds": round(p.seconds, 2),
                            "message": p.message,
                            "cases": [{"name": c.name, "result": _result(c.ok), "seconds": round(c.seconds, 2),
                                       "message": c.message, "output": c.output[-4000:]} for c in p.cases]}
                           for p in self.phases]}


def _result(ok: bool | None) -> str:
    return "pass" if ok else ("skip" if ok is None else "fail")


def write_json(report: Report, path: str) -> None:
    Path(path).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
