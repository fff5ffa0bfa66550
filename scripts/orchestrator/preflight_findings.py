"""`check`'s findings: each thing the daemon needs, ok, a warning or a problem with its fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Level(Enum):
    OK = "ok"
    WARNING = "warning"  # works, but the user should know
    PROBLEM = "problem"  # the daemon would refuse to start, or fail on its first item


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    name: str
    level: Level
    detail: str
    fix: str = ""


def report(findings: list[Finding]) -> str:
    """The report as printed: one line per finding, and its fix under it if it has one."""
    width = max(len(f.name) for f in findings)
    lines = []
    for finding in findings:
        lines.append(f"{finding.level.value:8} {finding.name:{width}}  {finding.detail}")
        if finding.fix:
            lines.append(f"{'':8} {'':{width}}  fix: {finding.fix}")
    return "\n".join(lines)
