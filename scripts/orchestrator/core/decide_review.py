"""The review workflow's decisions, pure: which heads of which pull requests to review."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import PullRequest
from .work import ReviewFacts, Status, WorkItem

DAY = timedelta(days=1)


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
        ever_reviewed = bool(item.review.reviewed)
        return ReviewStep.REVIEW if review_on_push or not ever_reviewed else None
    match item.status:
        case Status.DONE | Status.FAILED:
            return None
        case Status.IN_PROGRESS:
            return ReviewStep.RETRY  # interrupted by a crash or a stop
        case Status.PENDING:
            retry_at = item.review.retry_at
            due = retry_at is None or retry_at <= now
            return ReviewStep.RETRY if due else None


class Hold(enum.Enum):
    """Why a review that is due runs no Claude."""

    HEAD_MOVED = "head_moved"  # a writer's `/review` pinned a head that is no longer the head
    OUTSIDER_PUSH = "outsider_push"  # a later head of an author without write access
    DAILY_CAP = "daily_cap"  # this pull request had its automatic reviews for the day


def runs_within_a_day(facts: ReviewFacts, now: datetime) -> tuple[datetime, ...]:
    """The starts of this pull request's Claude runs in the 24 hours before `now`."""
    return tuple(r for r in facts.runs if now - r < DAY)


def needs_author_permission(*, forced: bool, review_outsider_pushes: bool) -> bool:
    """Whether the review's gate needs to know if the author has write access (one request)."""
    return not forced and not review_outsider_pushes


def hold(
    facts: ReviewFacts,
    head: str,
    *,
    forced: bool,
    author_writes: bool | None,
    daily_cap: int,
    now: datetime,
) -> Hold | None:
    """Whether a review of `head`, due now, waits instead of running Claude.

    A writer's request reviews the head it pinned and only that one: the writer vouched for
    what they saw, not for a push that followed. Anything else is automatic, and its cost is
    bounded by the author: an author without write access (`author_writes` False) gets their
    first head reviewed, later ones only on a writer's request; and no pull request gets more
    than `daily_cap` automatic runs in 24 hours, retries included.
    """
    if forced:
        pinned = facts.requested_head
        return Hold.HEAD_MOVED if pinned is not None and pinned != head else None
    # A failed first review is the first review too: its failures do not reopen the door.
    if author_writes is False and (facts.reviewed or facts.first_head not in (None, head)):
        return Hold.OUTSIDER_PUSH
    if len(runs_within_a_day(facts, now)) >= daily_cap:
        return Hold.DAILY_CAP
    return None
