"""Table tests of the review decisions: which heads of which pull requests get a review."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scripts.orchestrator.core.decide_review import (
    Hold,
    hold,
    needs_author_permission,
    plan_reviews,
    runs_within_a_day,
)
from scripts.orchestrator.core.models import PullRequest
from scripts.orchestrator.core.work import ReviewFacts, Status, WorkItem, WorkItemType

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def pull(number: int, head: str = "h1", *, draft: bool = False) -> PullRequest:
    return PullRequest(
        number, "t", "b", "dave", "open", draft, False, "topic", head, "acme/widgets",
        "main", "b0", "acme/widgets", T0,
    )  # fmt: skip


def review_item(
    number: int, status: Status, head: str = "h1", facts: ReviewFacts | None = None
) -> WorkItem:
    return WorkItem(
        type=WorkItemType.PR_REVIEW,
        number=number,
        status=status,
        head_sha=head,
        attempts=1,
        facts=facts or ReviewFacts(),
    )


REVIEWED = ReviewFacts(reviewed=("h1",))
REMEMBERED = ReviewFacts(baseline=True)
DUE = ReviewFacts(retry_at=NOW)
LATER = ReviewFacts(retry_at=datetime(2026, 6, 2, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    ("pulls", "items", "baseline_taken", "on_push", "requested", "expected"),
    [
        # First start: everything open is only remembered.
        ([pull(1), pull(2, draft=True)], {}, False, True, set(),
         [(1, "baseline"), (2, "baseline")]),
        ([pull(1)], {}, True, True, set(), [(1, "review")]),
        ([pull(1, draft=True)], {}, True, True, set(), []),
        ([pull(1)], {1: review_item(1, Status.DONE, facts=REVIEWED)}, True, True, set(), []),
        ([pull(1, "h2")], {1: review_item(1, Status.DONE, facts=REVIEWED)}, True, True, set(),
         [(1, "review")]),
        ([pull(1, "h2")], {1: review_item(1, Status.DONE, facts=REVIEWED)}, True, False, set(), []),
        # A remembered (never reviewed) pull request with a new commit: its first review.
        ([pull(1, "h2")], {1: review_item(1, Status.DONE, facts=REMEMBERED)}, True, False, set(),
         [(1, "review")]),
        ([pull(1)], {1: review_item(1, Status.DONE, facts=REMEMBERED)}, True, True, {1},
         [(1, "review")]),
        ([pull(1)], {1: review_item(1, Status.FAILED)}, True, True, set(), []),
        ([pull(1)], {1: review_item(1, Status.IN_PROGRESS)}, True, True, set(), [(1, "retry")]),
        ([pull(1)], {1: review_item(1, Status.PENDING, facts=DUE)}, True, True,
         set(), [(1, "retry")]),
        ([pull(1)], {1: review_item(1, Status.PENDING, facts=LATER)},
         True, True, set(), []),
    ],
)  # fmt: skip
def test_plan_reviews(
    pulls: list[PullRequest],
    items: dict[int, WorkItem],
    baseline_taken: bool,
    on_push: bool,
    requested: set[int],
    expected: list[tuple[int, str]],
) -> None:
    plans = plan_reviews(
        pulls,
        items,
        baseline_taken=baseline_taken,
        review_on_push=on_push,
        requested=requested,
        now=NOW,
    )
    assert [(p.number, p.step.value) for p in plans] == expected


# -- what a due review waits for ---------------------------------------------------------------

HOUR = timedelta(hours=1)
TWO_RUNS = (NOW - 23 * HOUR, NOW - HOUR)


@pytest.mark.parametrize(
    ("facts", "forced", "writes", "expected"),
    [
        (ReviewFacts(requested_head="h1"), True, None, None),  # the head the writer saw
        (ReviewFacts(requested_head="h0"), True, None, Hold.HEAD_MOVED),  # pushed since
        (ReviewFacts(requested_head="h0", runs=TWO_RUNS), True, None, Hold.HEAD_MOVED),
        (ReviewFacts(reviewed=("h0",), runs=TWO_RUNS), True, None, None),  # no cap, no gate
        (ReviewFacts(), False, False, None),  # an outsider's first head
        (ReviewFacts(reviewed=("h0",)), False, False, Hold.OUTSIDER_PUSH),
        (ReviewFacts(reviewed=("h0",)), False, True, None),  # a writer's push
        (ReviewFacts(reviewed=("h0",)), False, None, None),  # outsiders' pushes reviewed too
        (ReviewFacts(reviewed=("h0",), runs=TWO_RUNS), False, True, Hold.DAILY_CAP),
        (ReviewFacts(runs=(NOW - 25 * HOUR, NOW - HOUR)), False, True, None),  # a day ago
        (ReviewFacts(reviewed=("h0",), runs=TWO_RUNS), False, False, Hold.OUTSIDER_PUSH),
    ],
)
def test_hold(facts: ReviewFacts, forced: bool, writes: bool | None, expected: Hold | None) -> None:
    assert hold(facts, "h1", forced=forced, author_writes=writes, daily_cap=2, now=NOW) == expected


def test_only_runs_of_the_last_day_count() -> None:
    facts = ReviewFacts(runs=(NOW - 25 * HOUR, NOW - 24 * HOUR, NOW - 23 * HOUR))
    assert runs_within_a_day(facts, NOW) == (NOW - 23 * HOUR,)


@pytest.mark.parametrize(
    ("forced", "outsider_pushes", "asks"),
    [(False, False, True), (True, False, False), (False, True, False), (True, True, False)],
)
def test_the_authors_permission_is_asked_only_when_it_decides(
    forced: bool, outsider_pushes: bool, asks: bool
) -> None:
    assert needs_author_permission(forced=forced, review_outsider_pushes=outsider_pushes) is asks
