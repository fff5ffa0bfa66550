"""The implement workflow's decisions, pure: which ready issues to start, resume or tidy up."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import Comment, Issue
from .work import Status, WorkItem

# What steers Claude, CI or a developer's machine: an implementation may not change it unless
# ALLOW_SENSITIVE_CHANGES says so (a hijacked run would otherwise plant a workflow that runs
# with the repository's secrets, or instructions for the next Claude run).
# The daemon's own settings and prompts for the repository are among them: a run that rewrote
# them would choose how its own pull request is reviewed and merged.
SENSITIVE_PREFIXES = (".github/workflows/", ".github/actions/", ".claude/", ".husky/", ".githooks/",
                      ".github/claude-orchestrator/")  # fmt: skip
SENSITIVE_FILES = (".mcp.json", ".gitmodules", ".pre-commit-config.yaml", "lefthook.yml",
                   ".lefthook.yml", ".github/claude-orchestrator.toml")  # fmt: skip
SENSITIVE_NAMES = ("CLAUDE.md", "CLAUDE.local.md")  # in any folder: Claude reads them all


def sensitive_paths(paths: Sequence[str]) -> list[str]:
    """The paths among `paths` that an implementation may not change by default."""
    return [
        path
        for path in paths
        if path.startswith(SENSITIVE_PREFIXES)
        or path in SENSITIVE_FILES
        or path.rsplit("/", 1)[-1] in SENSITIVE_NAMES
    ]


class IssueStep(enum.Enum):
    """What to do with an open issue that carries the ready label."""

    START = "start"  # a new attempt
    RESUME = "resume"  # an attempt that a crash or a stop interrupted
    CLEAR_LABEL = "clear_label"  # the work is over; the label is a leftover of a crash


@dataclass(frozen=True)
class IssuePlan:
    number: int
    step: IssueStep


def plan_issues(
    issues: Sequence[Issue],
    items: Mapping[int, WorkItem],
    ready_label: str,
    label_events: Mapping[int, int],
    removed: Collection[int] = (),
) -> list[IssuePlan]:
    """Plan the implement workflow.

    `label_events` holds, for issues whose item is finished, how many times the ready label
    has been applied. More than when the last attempt started means someone applied it again:
    a request for a new attempt. The same number means the label is a leftover (the daemon
    died before removing it). Counting events avoids comparing GitHub's clock with ours.

    A finished item's label is not a leftover while its own removal waits in its outbox, nor
    when that removal landed after `issues` were read (`removed`): the listing is older than
    the removal, and removing it again would be a second DELETE for nothing.
    """
    plans = []
    for issue in sorted(issues, key=lambda i: i.number):
        if issue.is_pull_request or issue.state != "open" or ready_label not in issue.labels:
            continue
        item = items.get(issue.number)
        step = _issue_step(item, label_events.get(issue.number))
        if step is IssueStep.CLEAR_LABEL and (
            issue.number in removed or _removing(item, ready_label)
        ):
            continue
        plans.append(IssuePlan(issue.number, step))
    return plans


def _removing(item: WorkItem | None, label: str) -> bool:
    return item is not None and any(w.op == "remove_label" and w.text == label for w in item.outbox)


def _issue_step(item: WorkItem | None, label_events: int | None) -> IssueStep:
    if item is None:
        return IssueStep.START
    match item.status:
        case Status.PENDING | Status.IN_PROGRESS:
            return IssueStep.RESUME
        case Status.DONE | Status.FAILED:
            if label_events is not None and label_events > item.issue.label_events:
                return IssueStep.START
            return IssueStep.CLEAR_LABEL


def needs_label_count(item: WorkItem | None) -> bool:
    """Whether planning this issue needs its label events counted (one API call)."""
    return item is not None and item.status in (Status.DONE, Status.FAILED)


def changed_since_label(
    labelled_at: datetime, edited_at: datetime | None, renamed_at: datetime | None
) -> bool:
    """Whether the issue's text may have changed after its ready label was applied: its body
    edited (GraphQL's `lastEditedAt`) or its title renamed (a `renamed` event) in the label's
    second or later. GitHub's times have whole seconds, so the same second may be either side.
    What a writer approved with the label is what Claude reads; comments and other labels are
    not the issue's text (comments are judged by their own times)."""
    return any(when is not None and when >= labelled_at for when in (edited_at, renamed_at))


def comments_as_labelled(
    comments: Sequence[Comment], labelled_at: datetime | None
) -> tuple[list[Comment], int]:
    """The comments as they stood when the label was applied (written and last edited by
    then), and how many later or edited ones are left out. Without a label time (an attempt
    from an older state), all of them."""
    if labelled_at is None:
        return list(comments), 0
    kept = [c for c in comments if c.updated_at <= labelled_at]
    return kept, len(comments) - len(kept)
