"""The documented upgrade order inside a project (upgrade_order.yaml): which component a
service is, and which step of its project's order that component belongs to.

Read by the validators (compat.upgrade-order: a later component never runs a newer
release than an earlier one) and by the planner (one commit that changes several of a
project's services rolls the earlier steps first).
"""
from __future__ import annotations

import functools
import posixpath
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class ProjectOrder:
    project: str
    steps: tuple[tuple[str, ...], ...]       # components, step by step
    said: str                                # the order as the project's guide says it
    agents: str | None                       # the component a service of role agent is
    programs: tuple[tuple[str, str], ...]    # (program name, component)
    no_downgrade: str = ""                   # why a release of this project never goes down once it ran

    def step(self, component: str) -> int:
        return next(i for i, group in enumerate(self.steps) if component in group)


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, ProjectOrder]:
    data = yaml.safe_load(Path(__file__).with_name("upgrade_order.yaml").read_text())
    out = {}
    for project, p in data["projects"].items():
        out[project] = ProjectOrder(project, tuple(tuple(g) for g in p["steps"]), p["said"], p.get("agents"),
                                    tuple((prog, comp) for comp, progs in p["components"].items() for prog in progs),
                                    p.get("no_downgrade", ""))
    return out


def of_project(project: str) -> ProjectOrder | None:
    return _table().get(project)


def component(svc) -> str | None:
    """The component `svc` (a validators.model.Service) is in its project's order, or None
    (no order known for the project, or a service the order does not name)."""
    order = of_project(svc.project)
    if order is None:
        return None
    if svc.role == "agent" and order.agents:
        return order.agents
    programs = dict(order.programs)
    for item in svc.command or ():
        for word in str(item).split():
            found = programs.get(posixpath.basename(word))
            if found:
                return found
    return programs.get(svc.name)


def step(svc) -> int | None:
    """The step of `svc` in its project's order (0 first), or None."""
    found = component(svc)
    return None if found is None else of_project(svc.project).step(found)
