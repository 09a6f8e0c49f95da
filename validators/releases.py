"""OpenStack release series and the upgrade paths between them.

Facts come from releases.yaml (one table); the arithmetic here knows only that a year
has two series, YYYY.1 and YYYY.2.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

_SERIES = re.compile(r"^(20\d\d)\.([12])$")


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return yaml.safe_load((Path(__file__).with_name("releases.yaml")).read_text())


@functools.total_ordering
@dataclass(frozen=True)
class Release:
    year: int
    half: int  # 1 or 2

    @classmethod
    def parse(cls, text: str) -> "Release":
        m = _SERIES.match(str(text).strip())
        if not m:
            raise ValueError(f"not an OpenStack release series: {text!r} (expected YYYY.1 or YYYY.2)")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.year}.{self.half}"

    def __lt__(self, other: "Release") -> bool:
        return (self.year, self.half) < (other.year, other.half)

    @property
    def index(self) -> int:
        """Position on the release line: consecutive series differ by 1."""
        return self.year * 2 + self.half - 1

    @property
    def name(self) -> str | None:
        entry = _table()["series"].get(str(self))
        return entry["name"] if entry else None

    @property
    def slurp(self) -> bool:
        entry = _table()["series"].get(str(self))
        if entry is not None:
            return bool(entry["slurp"])
        return self.half == 1 and self >= Release.parse(_table()["first_slurp"])

    def label(self) -> str:
        parts = [str(self)]
        if self.name:
            parts.append(self.name)
        if self.slurp:
            parts.append("SLURP")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def next(self) -> "Release":
        return Release(self.year, 2) if self.half == 1 else Release(self.year + 1, 1)

    def next_slurp(self) -> "Release | None":
        """The SLURP after this one (None when this is not a SLURP)."""
        if not self.slurp:
            return None
        candidate = self.next()
        while not candidate.slurp:
            candidate = candidate.next()
        return candidate


def upgrade_allowed(old: Release, new: Release) -> bool:
    """N -> N+1 always; SLURP -> next SLURP (skip-level); nothing else upgrades."""
    return new == old.next() or (old.slurp and new == old.next_slurp())


def steps(old: Release, new: Release) -> int:
    """Signed distance in series (2025.1 -> 2026.1 is 2)."""
    return new.index - old.index


def upgrade_path_hint(old: Release, new: Release) -> str:
    """A sentence telling the operator which upgrades would be allowed from `old`."""
    targets = [old.next()]
    if old.slurp:
        targets.append(old.next_slurp())
    allowed = " or ".join(r.label() for r in targets)
    return (f"from {old.label()} the next upgrade must go to {allowed}; "
            f"reach {new} through intermediate changes, one merged pull request each")
