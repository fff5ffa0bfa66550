"""The decision core: given what GitHub shows and what the state remembers, what to do. Pure."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime

from .models import Issue, PullRequest
from .state import Status, WorkItem


class IssueStep(enum.Enum):
    """What to do with an open issue that carries the ready label."""

    START = "start"  # a new attempt
    RESUME = "resume"  # an attempt that a crash or a stop interrupted
    CLEAR_LABEL = "clear_label"  # the work is over; the label is a leftover of a crash


@dataclass(frozen=True)
class IssuePlan:
    number: int
    step: IssueStep


LABEL_EVENTS_KEY = "label_events"  # in WorkItem.data: `labeled` events seen at the start


def plan_issues(
    issues: Sequence[Issue],
    items: Mapping[int, WorkItem],
    ready_label: str,
    label_events: Mapping[int, int],
) -> list[IssuePlan]:
    """Plan the implement workflow.

    `label_events` holds, for issues whose item is finished, how many times the ready label
    has been applied. More than when the last attempt started means someone applied it again:
    a request for a new attempt. The same number means the label is a leftover (the daemon
    died before removing it). Counting events avoids comparing GitHub's clock with ours.
    """
    plans = []
    for issue in sorted(issues, key=lambda i: i.number):
        if issue.is_pull_request or issue.state != "open" or ready_label not in issue.labels:
            continue
        item = items.get(issue.number)
        plans.append(IssuePlan(issue.number, _issue_step(item, label_events.get(issue.number))))
    return plans


def _issue_step(item: WorkItem | None, label_events: int | None) -> IssueStep:
    if item is None:
        return IssueStep.START
    match item.status:
        case Status.PENDING | Status.IN_PROGRESS:
            return IssueStep.RESUME
        case Status.DONE | Status.FAILED:
            seen = int(item.data.get(LABEL_EVENTS_KEY, 0))
            if label_events is not None and label_events > seen:
                return IssueStep.START
            return IssueStep.CLEAR_LABEL


def needs_label_count(item: WorkItem | None) -> bool:
    """Whether planning this issue needs its label events counted (one API call)."""
    return item is not None and item.status in (Status.DONE, Status.FAILED)


class ReviewStep(enum.Enum):
    """What to do with an open pull request."""

    BASELINE = "baseline"  # open before the daemon first watched: remember its head only
    REVIEW = "review"  # review its current head (a new one, or asked for with /review)
    RETRY = "retry"  # a failed or interrupted review of the same head, due again


@dataclass(frozen=True)
class ReviewPlan:
    number: int
    step: ReviewStep
    head_sha: str


REVIEWED_KEY = "reviewed"  # in WorkItem.data: the head SHAs reviewed so far, oldest first
BASELINE_KEY = "baseline"  # in WorkItem.data: True while only the first-watch head is known
RETRY_AT_KEY = "retry_at"  # in WorkItem.data: ISO time when a failed review may run again


def plan_reviews(
    pulls: Sequence[PullRequest],
    items: Mapping[int, WorkItem],
    *,
    baseline_taken: bool,
    review_on_push: bool,
    requested: Set[int],
    now: datetime,
) -> list[ReviewPlan]:
    """Plan the review workflow: each head SHA is reviewed once, new pushes again if enabled.

    Until `baseline_taken`, every open pull request is only remembered (no flood of reviews on
    the first start in a busy repository); `requested` holds pull requests for which a user
    with write permission commented the review trigger.
    """
    plans = []
    for pull in sorted(pulls, key=lambda p: p.number):
        if pull.state != "open":
            continue
        step = _review_step(pull, items.get(pull.number), baseline_taken, review_on_push, now)
        if pull.number in requested and step is not ReviewStep.BASELINE:
            step = ReviewStep.REVIEW
        if step is not None:
            plans.append(ReviewPlan(pull.number, step, pull.head_sha))
    return plans


def _review_step(
    pull: PullRequest,
    item: WorkItem | None,
    baseline_taken: bool,
    review_on_push: bool,
    now: datetime,
) -> ReviewStep | None:
    if item is None:
        if not baseline_taken:
            return ReviewStep.BASELINE
        return None if pull.draft else ReviewStep.REVIEW
    if pull.draft:
        return None
    if item.head_sha != pull.head_sha:
        ever_reviewed = bool(item.data.get(REVIEWED_KEY))
        return ReviewStep.REVIEW if review_on_push or not ever_reviewed else None
    match item.status:
        case Status.DONE | Status.FAILED:
            return None
        case Status.IN_PROGRESS:
            return ReviewStep.RETRY  # interrupted by a crash or a stop
        case Status.PENDING:
            retry_at = item.data.get(RETRY_AT_KEY)
            due = retry_at is None or datetime.fromisoformat(retry_at) <= now
            return ReviewStep.RETRY if due else None


class AfterError(enum.Enum):
    """What a git or GitHub error during an attempt calls for."""

    RETRY = "retry"  # on the next poll, from where the attempt stopped
    GIVE_UP = "give_up"  # end the attempt and say so


def after_error(*, transient: bool, errors: int, limit: int) -> AfterError:
    """A transient fault never ends an attempt; `limit` definite errors (this one counted) do."""
    if transient or errors < limit:
        return AfterError.RETRY
    return AfterError.GIVE_UP
