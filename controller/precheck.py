"""What a pre-upgrade check's exit code and output mean — pure, no engine.

The upgrade-check tools of OpenStack (`nova-status`, `placement-status`, `keystone-status`
… `upgrade check`, all built on oslo.upgradecheck) exit 0 when every check succeeded,
1 when one only warns, 2 when one fails (and 255 on an error of the tool itself). A
precheck job keeps that meaning whatever its command: 0 ok, 1 a warning the rollout goes
on with, anything else blocks the rollout.

Their output is a table of `Check: …` / `Result: …` / `Details: …` rows, the worst one
anywhere in it; what status and the gate show is the rows that did not succeed (a
bounded excerpt), else the output's last lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

OK, WARNING, FAILURE = "ok", "warning", "failure"
MESSAGE_CHARS = 300          # the one-line summary in status and JUnit messages
EXCERPT_LINES = 20           # the lines kept as the failure's "logs"
LINE_CHARS = 200

_ROW = re.compile(r"^\s*\|?\s*(Check|Result|Details)\s*:\s*(.*?)\s*\|?\s*$")


@dataclass(frozen=True)
class Verdict:
    result: str                  # ok | warning | failure
    summary: str                 # one line, at most MESSAGE_CHARS
    excerpt: str                 # at most EXCERPT_LINES lines of at most LINE_CHARS


def verdict(exit_code: int, output: str) -> Verdict:
    result = OK if exit_code == 0 else WARNING if exit_code == 1 else FAILURE
    rows = _failing_rows(output)
    if rows:
        summary = "; ".join(f"{check}: {res}" + (f" ({details})" if details else "") for check, res, details in rows)
        excerpt = [f"{check}: {res}" + (f": {details}" if details else "") for check, res, details in rows]
    else:
        lines = [line.rstrip() for line in output.splitlines() if line.strip()]
        summary = lines[-1].strip() if lines else "(no output)"
        excerpt = lines[-EXCERPT_LINES:]
    return Verdict(result, _cut(summary, MESSAGE_CHARS),
                   "\n".join(_cut(line, LINE_CHARS) for line in excerpt[:EXCERPT_LINES]))


def _failing_rows(output: str) -> list[tuple[str, str, str]]:
    """(check, result, details) of every row of an upgrade-check table whose result is
    not Success; details run on over the table's continuation lines."""
    rows: list[list[str]] = []
    field = None
    for line in output.splitlines():
        m = _ROW.match(line)
        if m:
            field = m.group(1)
            if field == "Check":
                rows.append([m.group(2), "", ""])
            elif rows:
                rows[-1][1 if field == "Result" else 2] = m.group(2)
            continue
        text = line.strip().strip("|").strip()
        if set(text) <= set("+-="):          # a rule or an empty line ends a row
            field = None
        elif field == "Details" and rows:
            rows[-1][2] = f"{rows[-1][2]} {text}".strip()
    out = []
    for check, res, details in rows:
        if res and res.lower() != "success":
            out.append((check, res, "" if details in ("None", "") else details))
    return out


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
