"""Tests for the workflows' item helper: redacted errors, bounded retries, outages forgiven."""

from __future__ import annotations

from pathlib import Path

from scripts.orchestrator.core.errors import GitHubError
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.state import State, Status, WorkItem, WorkItemType
from scripts.orchestrator.workflows.items import MAX_INFRASTRUCTURE_ERRORS, Items

TOKEN = "configured-secret-token-1"


def test_stored_errors_are_redacted_and_retries_bounded(tmp_path: Path) -> None:
    with State(tmp_path / "s.json") as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=4, status=Status.IN_PROGRESS))
        items = Items(state, WorkItemType.ISSUE, Redactor([TOKEN]))
        error = RuntimeError(f"push to https://x-access-token:{TOKEN}@host failed")
        outcomes = [items.retry_later(4, error) for _ in range(MAX_INFRASTRUCTURE_ERRORS)]
        assert outcomes == [True] * (MAX_INFRASTRUCTURE_ERRORS - 1) + [False]
        item = items.get(4)
        assert item.status is Status.PENDING
        assert item.last_error and TOKEN not in item.last_error and "[REDACTED]" in item.last_error
    assert TOKEN not in (tmp_path / "s.json").read_text()


def test_a_transient_fault_never_fails_an_item(tmp_path: Path) -> None:
    with State(tmp_path / "s.json") as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=4, status=Status.IN_PROGRESS))
        items = Items(state, WorkItemType.ISSUE, Redactor([TOKEN]))
        outage = GitHubError(502, "Server Error")
        assert all(items.retry_later(4, outage) for _ in range(5 * MAX_INFRASTRUCTURE_ERRORS))
        assert items.get(4).status is Status.PENDING
