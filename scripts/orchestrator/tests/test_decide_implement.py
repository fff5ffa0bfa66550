"""Table tests of the implement decisions: which ready issues start, resume or lose the label."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from scripts.orchestrator.core.decide_implement import (
    IssuePlan,
    IssueStep,
    needs_label_count,
    plan_issues,
    sensitive_paths,
)
from scripts.orchestrator.core.models import Issue
from scripts.orchestrator.core.work import IssueFacts, Status, WorkItem, WorkItemType
from scripts.orchestrator.workflows.outbox import remove_label

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def issue(number: int, *labels: str, pr: bool = False, state: str = "open") -> Issue:
    return Issue(number, "t", "b", "alice", labels, state, pr, T0)


def item(number: int, status: Status, seen: int | None = None) -> WorkItem:
    facts = IssueFacts() if seen is None else IssueFacts(label_events=seen)
    return WorkItem(type=WorkItemType.ISSUE, number=number, status=status, facts=facts)


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


def test_a_finished_items_label_is_not_removed_twice() -> None:
    done = item(1, Status.DONE, 1)
    removing = done.evolve(outbox=(remove_label(1, "ready"),))
    other = done.evolve(outbox=(remove_label(1, "claude-failed"),))
    listed = [issue(1, "ready")]
    clear = [IssuePlan(1, IssueStep.CLEAR_LABEL)]
    assert plan_issues(listed, {1: done}, "ready", {1: 1}) == clear
    assert plan_issues(listed, {1: removing}, "ready", {1: 1}) == []  # its own, on its way
    assert plan_issues(listed, {1: done}, "ready", {1: 1}, removed={1}) == []  # landed since
    assert plan_issues(listed, {1: other}, "ready", {1: 1}) == clear
    # A new label event is a new request, whatever the outbox holds.
    assert plan_issues(listed, {1: removing}, "ready", {1: 2}, removed={1}) == [
        IssuePlan(1, IssueStep.START)
    ]


def test_label_counts_are_needed_only_for_finished_items() -> None:
    assert not needs_label_count(None)
    assert not needs_label_count(item(1, Status.IN_PROGRESS))
    assert needs_label_count(item(1, Status.DONE))
    assert needs_label_count(item(1, Status.FAILED))


@pytest.mark.parametrize(
    ("path", "sensitive"),
    [
        (".github/workflows/ci.yml", True),
        (".github/actions/setup/action.yml", True),
        (".claude/settings.json", True),
        ("CLAUDE.md", True),
        ("pkg/CLAUDE.md", True),
        ("CLAUDE.local.md", True),
        (".mcp.json", True),
        (".husky/pre-commit", True),
        (".githooks/post-checkout", True),
        (".gitmodules", True),
        (".pre-commit-config.yaml", True),
        # The daemon's own settings and prompts for the repository (found by an outside review)
        (".github/claude-orchestrator.toml", True),
        (".github/claude-orchestrator/implement.md", True),
        ("src/app.py", False),
        (".github/ISSUE_TEMPLATE/bug.md", False),
        ("docs/claude.md", False),
        ("pkg/.mcp.json.example", False),
    ],
)
def test_sensitive_paths(path: str, sensitive: bool) -> None:
    assert sensitive_paths([path]) == ([path] if sensitive else [])
