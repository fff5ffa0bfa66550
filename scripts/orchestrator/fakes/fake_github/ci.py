"""CI results on commits: check runs (GitHub Actions) and commit statuses; callers hold the lock."""

from __future__ import annotations

from .model import CheckRun, CommitStatus
from .store import Store

RUN_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CONCLUSIONS = (
    "success",
    "failure",
    "neutral",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
)
GREEN = {"success", "neutral", "skipped"}


def add_check_run(
    store: Store,
    sha: str,
    name: str,
    status: str,
    conclusion: str | None,
    *,
    title: str | None = None,
    summary: str | None = None,
) -> CheckRun:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown check run status {status!r}")
    if conclusion is not None and conclusion not in CONCLUSIONS:
        raise ValueError(f"unknown check run conclusion {conclusion!r}")
    if (status == "completed") != (conclusion is not None):
        raise ValueError("a conclusion goes with status 'completed', and only with it")
    now = store.now()
    run = CheckRun(
        id=store.next_id("check"),
        head_sha=sha,
        name=name,
        status=status,
        conclusion=conclusion,
        started_at=now,
        completed_at=now if status == "completed" else None,
        suite_id=store.next_id("suite"),
        title=title,
        summary=summary,
    )
    store.check_runs.append(run)
    return run


def add_status(
    store: Store,
    sha: str,
    context: str,
    state: str,
    creator: str,
    description: str | None = None,
    target_url: str | None = None,
) -> CommitStatus:
    if state not in ("error", "failure", "pending", "success"):
        raise ValueError(f"unknown commit status state {state!r}")
    store.user_id(creator)
    now = store.now()
    item = CommitStatus(
        store.next_id("status"), sha, context, state, description, target_url, creator, now, now
    )
    store.statuses.append(item)
    return item


def latest_check_runs(store: Store, sha: str) -> list[CheckRun]:
    """The newest run per check name, as `filter=latest` (the default) shows them."""
    latest: dict[str, CheckRun] = {}
    for run in store.check_runs:
        if run.head_sha == sha:
            latest[run.name] = run
    return sorted(latest.values(), key=lambda r: r.id, reverse=True)


def latest_statuses(store: Store, sha: str) -> list[CommitStatus]:
    """The newest status per context; older ones with the same context are superseded."""
    latest: dict[str, CommitStatus] = {}
    for item in store.statuses:
        if item.sha == sha:
            latest[item.context] = item
    return sorted(latest.values(), key=lambda s: s.id, reverse=True)


def all_green(store: Store, sha: str) -> bool:
    """Whether every latest check run and status on `sha` has passed (none at all counts)."""
    runs_ok = all(r.conclusion in GREEN for r in latest_check_runs(store, sha))
    statuses_ok = all(s.state == "success" for s in latest_statuses(store, sha))
    return runs_ok and statuses_ok
