"""A finding: what a validator says about one place in the cloud repository."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import total_ordering

SEVERITIES = ("error", "warning", "info")


@total_ordering
@dataclass(frozen=True)
class Finding:
    file: str                  # repository-relative path, e.g. clouds/demo/services/keystone.yaml
    line: int | None           # 1-based, None when the finding is about a whole file/state
    column: int | None         # 1-based
    severity: str              # error | warning | info
    rule: str                  # stable rule id, e.g. transition.upgrade-path
    message: str
    hint: str = ""             # what the operator should do

    def _key(self) -> tuple:
        # a finding about a whole file (no line) sorts before the file's lines, never a TypeError
        return (self.file, self.line or 0, self.column or 0, self.severity, self.rule, self.message, self.hint)

    def __lt__(self, other: "Finding") -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return self._key() < other._key()

    def as_dict(self) -> dict:
        return asdict(self)

    def location(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def render(self) -> str:
        text = f"{self.location()}: {self.severity}: {self.message} [{self.rule}]"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


def has_errors(findings) -> bool:
    return any(f.severity == "error" for f in findings)
