"""Table tests of the decision core."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from scripts.orchestrator.decide import (
    BASELINE_KEY,
    LABEL_EVENTS_KEY,
    RETRY_AT_KEY,
    REVIEWED_KEY,
    IssuePlan,
    IssueStep,
    needs_label_count,
    plan_issues,
    plan_reviews,
)
from scripts.orchestrator.models import Issue, PullRequest
from scripts.orchestrator.state import Status, WorkItem, WorkItemType

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def issue(number: int, *labels: str, pr: bool = False, state: str = "open") -> Issue:
    return Issue(number, "t", "b", "alice", labels, state, pr, T0)


def item(number: int, status: Status, seen: int | None = None) -> WorkItem:
    data = {} if seen is None else {LABEL_EVENTS_KEY: seen}
    return WorkItem(type=WorkItemType.ISSUE, number=number, status=status, data=data)


@pytest.mark.parametrize(
    ("issues", "items", "counts", "expected"),
    [
        ([issue(1, "ready")], {}, {}, [IssuePlan(1, IssueStep.START)]),
        ([issue(1, "bug")], {}, {}, []),
        ([issue(1, "ready", pr=True)], {}, {}, []),
        ([issue(1, "ready", state="closed")], {}, {}, []),
        (
            [issue(1, "ready")],
            {1: item(1, Status.IN_PROGRESS)},
            {},
            [IssuePlan(1, IssueStep.RESUME)],
        ),
        ([issue(1, "ready")], {1: item(1, Status.PENDING)}, {}, [IssuePlan(1, IssueStep.RESUME)]),
        # Finished, and the label was applied again since: a new attempt.
        (
            [issue(1, "ready")],
            {1: item(1, Status.DONE, 1)},
            {1: 2},
            [IssuePlan(1, IssueStep.START)],
        ),
        (
            [issue(1, "ready")],
            {1: item(1, Status.FAILED, 1)},
            {1: 2},
            [IssuePlan(1, IssueStep.START)],
        ),
        # Finished, same label application: a leftover to clear, not a request.
        (
            [issue(1, "ready")],
            {1: item(1, Status.DONE, 1)},
            {1: 1},
            [IssuePlan(1, IssueStep.CLEAR_LABEL)],
        ),
        (
            [issue(1, "ready")],
            {1: item(1, Status.FAILED, 3)},
            {},
            [IssuePlan(1, IssueStep.CLEAR_LABEL)],
        ),
        # Ordered by number, whatever GitHub's order.
        (
            [issue(3, "ready"), issue(2, "ready")],
            {},
            {},
            [IssuePlan(2, IssueStep.START), IssuePlan(3, IssueStep.START)],
        ),
    ],
)
def test_plan_issues(
    issues: list[Issue],
    items: dict[int, WorkItem],
    counts: dict[int, int],
    expected: list[IssuePlan],
) -> None:
    assert plan_issues(issues, items, "ready", counts) == expected


def test_label_counts_are_needed_only_for_finished_items() -> None:
    assert not needs_label_count(None)
    assert not needs_label_count(item(1, Status.IN_PROGRESS))
    assert needs_label_count(item(1, Status.DONE))
    assert needs_label_count(item(1, Status.FAILED))


NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def pull(number: int, head: str = "h1", *, draft: bool = False) -> PullRequest:
    return PullRequest(
        number, "t", "b", "dave", "open", draft, False, "topic", head, "acme/widgets",
        "main", "b0", "acme/widgets", T0,
    )  # fmt: skip


def review_item(
    number: int, status: Status, head: str = "h1", data: dict[str, object] | None = None
) -> WorkItem:
    return WorkItem(
        type=WorkItemType.PR_REVIEW,
        number=number,
        status=status,
        head_sha=head,
        attempts=1,
        data=data or {},
    )


REVIEWED: dict[str, object] = {REVIEWED_KEY: ["h1"]}
REMEMBERED: dict[str, object] = {BASELINE_KEY: True}
DUE: dict[str, object] = {RETRY_AT_KEY: NOW.isoformat()}
LATER: dict[str, object] = {RETRY_AT_KEY: "2026-06-02T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("pulls", "items", "baseline_taken", "on_push", "requested", "expected"),
    [
        # First start: everything open is only remembered.
        ([pull(1), pull(2, draft=True)], {}, False, True, set(),
         [(1, "baseline"), (2, "baseline")]),
        ([pull(1)], {}, True, True, set(), [(1, "review")]),
        ([pull(1, draft=True)], {}, True, True, set(), []),
        ([pull(1)], {1: review_item(1, Status.DONE, data=REVIEWED)}, True, True, set(), []),
        ([pull(1, "h2")], {1: review_item(1, Status.DONE, data=REVIEWED)}, True, True, set(),
         [(1, "review")]),
        ([pull(1, "h2")], {1: review_item(1, Status.DONE, data=REVIEWED)}, True, False, set(), []),
        # A remembered (never reviewed) pull request with a new commit: its first review.
        ([pull(1, "h2")], {1: review_item(1, Status.DONE, data=REMEMBERED)}, True, False, set(),
         [(1, "review")]),
        ([pull(1)], {1: review_item(1, Status.DONE, data=REMEMBERED)}, True, True, {1},
         [(1, "review")]),
        ([pull(1)], {1: review_item(1, Status.FAILED)}, True, True, set(), []),
        ([pull(1)], {1: review_item(1, Status.IN_PROGRESS)}, True, True, set(), [(1, "retry")]),
        ([pull(1)], {1: review_item(1, Status.PENDING, data=DUE)}, True, True,
         set(), [(1, "retry")]),
        ([pull(1)], {1: review_item(1, Status.PENDING, data=LATER)},
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
