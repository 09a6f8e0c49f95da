"""Layer 3: compatibility inside one state — version skew and declared requirements.

"One release" of lag means one supported upgrade step: N-1, or the previous SLURP when
the control plane sits on a SLURP release (skip-level upgrades leave agents there until
they are upgraded in turn — OpenStack's SLURP contract). Lag is measured against the
newest control service of the project (a control service mid-rollout already speaks the
new release), leading against the oldest (an agent must not be newer than any of them).

Where a project's upgrade guide orders its components (upgrade_order.yaml: Nova's
conductor, then scheduler and api, then computes), `compat.upgrade-order` holds every
component to it, in the guide's words; `compat.agent-leads-control` leaves the pairs that
rule judges to it (one finding per problem).
"""
from __future__ import annotations

import operator
import re
from collections import defaultdict

from . import order
from .releases import Release, upgrade_allowed
from .rules import Hit, rule

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
        ">": operator.gt, "<": operator.lt}
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(20\d\d\.[12])\s*$")


def requirement_holds(spec: str, release: Release) -> bool:
    for clause in spec.split(","):
        m = _CLAUSE.match(clause)
        if not m:
            raise ValueError(f"bad release requirement {spec!r}")
        if not _OPS[m.group(1)](release, Release.parse(m.group(2))):
            return False
    return True


def _by_project(cloud):
    projects = defaultdict(lambda: {"control": [], "agent": []})
    for svc in cloud.services.values():
        projects[svc.project][svc.role].append(svc)
    return projects


def _within_one_step(old: Release, new: Release) -> bool:
    return old == new or upgrade_allowed(old, new)


@rule("compat.agent-leads-control", "compat", "error",
      "inside a project, agents/computes never run a newer release than any control service")
def agent_leads_control(ctx):
    for project, roles in _by_project(ctx.cloud).items():
        if not roles["control"]:
            continue
        for agent in roles["agent"]:
            judged = [s for s in roles["control"] if not _ordered_pair(s, agent)]
            if not judged:
                continue
            oldest = min(judged, key=lambda s: s.release)
            if agent.release > oldest.release:
                yield Hit(agent.file, ("release",),
                          f"agent {agent.name} runs {agent.release}, newer than {project}'s control service "
                          f"{oldest.name} at {oldest.release}",
                          "upgrade the control services first (keystone, then APIs and conductors, then agents)")


def _ordered_pair(earlier, later) -> bool:
    """Whether compat.upgrade-order judges `later` against `earlier` (both components of a
    known order, `earlier` at an earlier step)."""
    a, b = order.step(earlier), order.step(later)
    return a is not None and b is not None and a < b


@rule("compat.upgrade-order", "compat", "error",
      "inside a project with a documented upgrade order (Nova: conductor, then scheduler and api, then "
      "computes), no component runs a newer release than one of an earlier step")
def upgrade_order(ctx):
    services = list(ctx.cloud.services.values())
    for later in services:
        earlier = [s for s in services if s.project == later.project and _ordered_pair(s, later)
                   and later.release > s.release]
        if not earlier:
            continue
        # one finding per service, against its oldest predecessor (the first to upgrade)
        first = min(earlier, key=lambda s: (s.release, order.step(s), s.name))
        known = order.of_project(later.project)
        title = later.project.capitalize()
        yield Hit(later.file, ("release",),
                  f"{later.name} ({order.component(later)}) runs {later.release}, newer than {first.name} "
                  f"({order.component(first)}) at {first.release}: {title} upgrades {known.said}",
                  f"upgrade {first.name} first ({title}'s order: {known.said})")


@rule("compat.agent-lag", "compat", "error",
      "inside a project, agents/computes lag the newest control service by at most one upgrade step")
def agent_lag(ctx):
    for project, roles in _by_project(ctx.cloud).items():
        if not roles["control"]:
            continue
        newest = max(roles["control"], key=lambda s: s.release)
        for agent in roles["agent"]:
            if agent.release < newest.release and not upgrade_allowed(agent.release, newest.release):
                yield Hit(agent.file, ("release",),
                          f"agent {agent.name} at {agent.release} lags {project}'s control service "
                          f"{newest.name} at {newest.release} by more than one supported upgrade step",
                          f"upgrade {agent.name} before moving the control services further")


@rule("compat.control-skew", "compat", "warning",
      "inside a project, control services run the same release (a one-step skew is a rollout in progress)")
def control_skew(ctx):
    for project, roles in _by_project(ctx.cloud).items():
        controls = roles["control"]
        if len({s.release for s in controls}) <= 1:
            continue
        oldest = min(s.release for s in controls)
        newest = max(s.release for s in controls)
        severity = None if _within_one_step(oldest, newest) else "error"
        for svc in controls:
            if svc.release != newest:
                yield Hit(svc.file, ("release",), severity=severity,
                          message=f"{project} control services run mixed releases: {svc.name} at "
                                  f"{svc.release}, others up to {newest}",
                          hint=f"upgrade {svc.name} to {newest} in a following change to finish the rollout")


@rule("compat.requires", "compat", "error",
      "declared cross-service release requirements (`requires`) hold")
def requires(ctx):
    services = ctx.cloud.services
    for svc in services.values():
        for other, spec in svc.requires:
            target = services.get(other)
            if target is None:
                continue  # semantic.unknown-requirement
            if not requirement_holds(spec, target.release):
                yield Hit(svc.file, ("requires", other),
                          f"{svc.name} requires {other} {spec.strip()}, but {other} runs {target.release}",
                          f"upgrade {other} first, in its own change, then this one")
