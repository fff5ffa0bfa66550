"""What the dashboard shows of each item: its group, its row, and times said for people."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .core.work import Status, WorkItem, WorkItemType, said
from .ports import JobView

ERROR_CHARS = 160  # of an error in the table; the item's page has it whole


class Group(str, Enum):
    """How the dashboard sorts an item: what it does now, not only its stored status."""

    RUNNING = "running"
    WAITING = "waiting"
    FAILED = "failed"
    DONE = "done"


@dataclass(frozen=True)
class Row:
    """One item as a line of the table, every value ready to show."""

    kind: WorkItemType
    number: int
    group: Group
    what: str
    title: str
    github: str
    pull: str  # the pull request an issue's work opened, "" if none
    since: str
    duration: str
    cost: str
    turns: str
    attempts: str
    error: str
    item: WorkItem | None


def table(
    items: Iterable[WorkItem], jobs: Iterable[JobView], html_url: str, at: datetime
) -> dict[Group, list[Row]]:
    """Every item (and every job not yet an item) by group, each group in the order shown:
    running longest first, waiting in queue order, failed and done newest first."""
    running = {job.key: job for job in jobs}
    rows: dict[Group, list[tuple[Any, Row]]] = {g: [] for g in Group}
    seen: set[str] = set()
    for item in items:
        seen.add(item.key)
        row = _row(html_url, item, running.get(item.key), at)
        rows[row.group].append((_order(row, item, running.get(item.key)), row))
    for key, job in running.items():
        if key not in seen:
            row = _job_row(html_url, job, at)
            rows[row.group].append(((job.started_at or at).timestamp(), row))
    return {g: [r for _, r in sorted(rows[g], key=lambda pair: pair[0])] for g in Group}


def _order(row: Row, item: WorkItem, job: JobView | None) -> float:
    match row.group:
        case Group.RUNNING:
            return ((job and job.started_at) or item.started_at or item.updated_at).timestamp()
        case Group.WAITING:
            return item.created_at.timestamp()
        case Group.FAILED | Group.DONE:
            return -(item.finished_at or item.updated_at).timestamp()


def _group(item: WorkItem, job: JobView | None) -> Group:
    if job is not None:
        return Group.RUNNING if job.started_at is not None else Group.WAITING
    match item.status:
        case Status.IN_PROGRESS:
            return Group.RUNNING
        case Status.PENDING:
            return Group.WAITING
        case Status.FAILED:
            return Group.FAILED
        case Status.DONE:
            return Group.DONE


def _row(html_url: str, item: WorkItem, job: JobView | None, at: datetime) -> Row:
    group = _group(item, job)
    started = (job.started_at if job else None) or item.started_at
    if group is Group.RUNNING:
        since, duration = when(started), span((at - started).total_seconds() if started else None)
    elif group is Group.WAITING:
        since, duration = when(item.created_at), ""
    else:
        since = when(item.finished_at or item.updated_at)
        took = item.duration_s
        if took is None and item.started_at and item.finished_at:
            took = (item.finished_at - item.started_at).total_seconds()
        duration = span(took)
    error = item.last_error or ""
    return Row(
        kind=item.type, number=item.number, group=group, what=said(item.type, item.number),
        title=(item.issue.title or "") if item.type is WorkItemType.ISSUE else "",
        github=github_link(html_url, item.type, item.number),
        pull=f"{html_url}/pull/{item.pr_number}" if item.pr_number else "",
        since=since, duration=duration,
        cost=_cost(item),
        turns=str(item.turns) if item.turns is not None else "", attempts=str(item.attempts),
        error=error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…",
        item=item,
    )  # fmt: skip


def _job_row(html_url: str, job: JobView, at: datetime) -> Row:
    running = job.started_at is not None
    return Row(
        kind=job.kind, number=job.number, group=Group.RUNNING if running else Group.WAITING,
        what=said(job.kind, job.number), title="",
        github=github_link(html_url, job.kind, job.number), pull="", since=when(job.started_at),
        duration=span((at - job.started_at).total_seconds()) if job.started_at else "",
        cost="", turns="", attempts="", error="", item=None,
    )  # fmt: skip


def _cost(item: WorkItem) -> str:
    """Every Claude run's cost for the item (the last run's, in a state from before the ledger)."""
    if item.runs:
        return f"${item.spent_usd:,.2f}" + (f" ({item.runs} runs)" if item.runs > 1 else "")
    return f"${item.cost_usd:,.2f}" if item.cost_usd is not None else ""


def github_link(html_url: str, kind: WorkItemType, number: int) -> str:
    return f"{html_url}/{'issues' if kind is WorkItemType.ISSUE else 'pull'}/{number}"


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else ""


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "not yet"
    return f"{span(max(0.0, (now - at).total_seconds()))} ago"


def until(at: datetime | None, now: datetime) -> str:
    if at is None:
        return ""
    return f"in {span(max(0.0, (at - now).total_seconds()))}"


def span(seconds: float | None) -> str:
    """A duration for people: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
