"""Layer 4: the transition from a base state to a new one — what a pull request does.

The context carries, for services whose release goes down, what the service looked
like before its last change (`history`): a downgrade is only a rollback when it restores
exactly that, and only while the contract phase of the upgrade has not run.

A change is judged by the policy that governs it: a policy is on when it is on in the
base or in the new state, so a pull request cannot switch off the policy that would block
it (validators/check.py does the same for rule severities).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import order
from .model import Policy
from .releases import steps, upgrade_allowed, upgrade_path_hint
from .rules import REGISTRY, SEVERITY_RANK, Hit, rule, severity_of

# Policies a change can loosen: (field, loosened?) — switches turned off.
_POLICY_LOOSENED = {
    "one_project_per_change": lambda base, new: base and not new,
    "require_signed": lambda base, new: base and not new,
}


@dataclass(frozen=True)
class Prior:
    """A service's state before the change that produced its base state."""
    data: dict | None               # raw YAML of the service before that change (None: it did not exist)
    commit: str                     # the change (commit id) that moved it to its base state
    contract_ran: bool = False      # a contract phase ran since (the service's own, or its project's)
    contract_by: str = ""           # the service whose contract ran (another one of the same project)


@dataclass
class TransitionContext:
    base: object                    # validators.model.Cloud
    new: object                     # validators.model.Cloud
    new_data: dict                  # service -> raw YAML data in the new state
    history: dict = field(default_factory=dict)   # service -> Prior
    base_rules: dict = field(default_factory=dict)  # rules.yaml data of the base
    new_rules: dict = field(default_factory=dict)   # rules.yaml data of the new state

    @property
    def policy(self) -> Policy:
        return governing_policy(self.base.policy, self.new.policy)


def governing_policy(base: Policy, new: Policy) -> Policy:
    """The policy a change base → new is judged by: a switch is on if it is on in either."""
    return dataclasses.replace(
        new,
        one_project_per_change=base.one_project_per_change or new.one_project_per_change,
        require_signed=base.require_signed or new.require_signed,
    )


def image_tag(ref: str) -> str | None:
    ref = ref.split("@", 1)[0]
    name = ref.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def pairs(base, new, new_data: dict | None = None) -> list[tuple[object, object]]:
    """(base service, new service) pairs a change moves from one to the other: the same
    name, or — for a service that is new by name — the base services it replaces: the one
    its `renamed_from` names, else those of the same project that the change removes and
    that mount one of its named volumes, else every removed service of its project. A
    rename is judged as a transition, so renaming `keystone.yaml` while jumping releases
    does not escape the upgrade-path and downgrade rules."""
    new_data = new_data or {}
    removed = [old for name, old in base.services.items() if name not in new.services]
    found = []
    for name, svc in new.services.items():
        old = base.services.get(name)
        if old is not None:
            found.append((old, svc))
            continue
        named = (new_data.get(name) or {}).get("renamed_from")
        candidates = [o for o in removed if o.name == named]
        if not candidates:
            same_project = [o for o in removed if o.project == svc.project]
            volumes = {v.name for v in svc.volumes}
            candidates = [o for o in same_project if volumes & {v.name for v in o.volumes}] or same_project
        found += [(o, svc) for o in candidates]
    return found


def _changed(ctx):
    yield from pairs(ctx.base, ctx.new, ctx.new_data)


@rule("transition.upgrade-path", "transition", "error",
      "a release goes up by N→N+1, or SLURP→next SLURP; nothing else")
def upgrade_path(ctx):
    for old, new in _changed(ctx):
        if new.release > old.release and not upgrade_allowed(old.release, new.release):
            yield Hit(new.file, ("release",),
                      f"{new.name}: {old.release.label()} → {new.release.label()} is not a supported "
                      f"upgrade ({steps(old.release, new.release)} series at once)",
                      upgrade_path_hint(old.release, new.release))


@rule("transition.downgrade", "transition", "error",
      "a release goes down only as a revert of its last upgrade, before that upgrade's contract phase ran")
def downgrade(ctx):
    for old, new in _changed(ctx):
        if new.release >= old.release:
            continue
        prior = ctx.history.get(new.name)
        what = f"{new.name}: {old.release} → {new.release} is a downgrade" + (
            f" (renamed from {old.name})" if old.name != new.name else "")
        if prior is None or prior.data is None or prior.data != ctx.new_data.get(new.name):
            yield Hit(new.file, ("release",),
                      f"{what} that does not restore the service's previous state",
                      "roll back with `git revert` of the upgrade commit (or `tidegate rollback`), "
                      "which restores the service file exactly")
        elif (facts := order.of_project(new.project)) is not None and facts.no_downgrade:
            yield Hit(new.file, ("release",),
                      f"{what}: {new.project} has no rollback once {old.release} ran — {facts.no_downgrade}",
                      f"fix forward with a newer commit; a revert applies only while the controller's last "
                      f"applied commit still runs {new.release} (the upgrade never ran: `tidegate status`)")
        elif prior.contract_ran:
            whose = (f" of {prior.contract_by} (project {new.project}: its services share a database)"
                     if prior.contract_by and prior.contract_by != new.name else "")
            yield Hit(new.file, ("release",),
                      f"{what} after the contract phase{whose} ran (upgrade {prior.commit[:12]}): the database "
                      f"no longer has what {new.release} needs",
                      "roll forward with a fix instead, or restore the database backup taken before contract")


@rule("transition.release-without-image-change", "transition", "error",
      "a release change comes with an image change")
def release_without_image_change(ctx):
    for old, new in _changed(ctx):
        if new.release != old.release and new.image == old.image and new.build == old.build:
            yield Hit(new.file, ("release",),
                      f"{new.name}: release {old.release} → {new.release} but the image is still {new.image}",
                      "point `image` (and `build`) at an image of the new release")


@rule("transition.image-without-tag-change", "transition", "warning",
      "an image change without a release or tag change is flagged (same tag, different content)")
def image_without_tag_change(ctx):
    for old, new in _changed(ctx):
        if (new.image != old.image and new.release == old.release
                and image_tag(new.image) == image_tag(old.image)):
            yield Hit(new.file, ("image",),
                      f"{new.name}: image changes from {old.image} to {new.image} with the same tag "
                      f"{image_tag(new.image)!r} and the same release",
                      "tag images by release and build (e.g. :2025.1-3) so the change is visible and revertible")


@rule("transition.one-project", "transition", "error",
      "with policy one_project_per_change, a change upgrades services of one project only")
def one_project(ctx):
    if not ctx.policy.one_project_per_change:
        return
    changed = {}
    for old, new in _changed(ctx):
        if new.release != old.release:
            changed.setdefault(new.project, new)
    if len(changed) > 1:
        projects = sorted(changed)
        for project in projects[1:]:
            svc = changed[project]
            yield Hit(svc.file, ("release",),
                      f"this change moves releases of {len(projects)} projects ({', '.join(projects)}); "
                      "the cloud's policy allows one per change",
                      f"split the change: one pull request per project, {projects[0]} first")


@rule("transition.service-removed", "transition", "warning",
      "removing a service removes its containers (its named volumes are kept)")
def service_removed(ctx):
    for name, old in ctx.base.services.items():
        if name not in ctx.new.services:
            yield Hit(f"{ctx.new.folder}/cloud.yaml", (),
                      f"service {name} is removed by this change: its containers will be stopped and removed",
                      "its named volumes are kept; remove them by hand once you are sure")


@rule("transition.rules-loosened", "transition", "info",
      "a change that loosens rules.yaml or the policy is still judged by the base's stricter ones; "
      "the looser ones apply after it merges")
def rules_loosened(ctx):
    rules_file = f"{ctx.new.folder}/rules.yaml"
    after_merge = "it applies to the changes after this one merges, not to this one"
    base_severity = ctx.base_rules.get("severity") or {}
    new_severity = ctx.new_rules.get("severity") or {}
    for r in REGISTRY.values():
        if not r.tunable:
            continue
        before, after = severity_of(r.id, base_severity), severity_of(r.id, new_severity)
        if SEVERITY_RANK[after] < SEVERITY_RANK[before]:
            yield Hit(rules_file, ("severity", r.id), key=True,
                      message=f"this change lowers {r.id} from {before} to {after}; this change is "
                              f"still checked at {before}",
                      hint=f"{after_merge}; to loosen a rule, merge the rules.yaml change on its own first")
    new_custom = ctx.new_rules.get("rules") or []
    new_ids = [r.get("id") for r in new_custom]
    for base_rule in ctx.base_rules.get("rules") or ():
        if base_rule in new_custom:
            continue
        rule_id = base_rule.get("id")
        if rule_id in new_ids:
            path, what = ("rules", new_ids.index(rule_id)), "changes"
        else:
            path, what = ("rules",), "removes"
        yield Hit(rules_file, path, key=what == "removes",
                  message=f"this change {what} the cloud rule {rule_id}; the base's version still "
                          "applies to this change",
                  hint=after_merge)
    cloud_file = f"{ctx.new.folder}/cloud.yaml"
    for name, loosened in _POLICY_LOOSENED.items():
        before, after = getattr(ctx.base.policy, name), getattr(ctx.new.policy, name)
        if loosened(before, after):
            yield Hit(cloud_file, ("policy", name),
                      message=f"this change loosens policy {name} from {_policy_text(before)} to "
                              f"{_policy_text(after)}; this change is still held to {_policy_text(before)}",
                      hint=after_merge)


def _policy_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
