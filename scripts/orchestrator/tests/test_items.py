"""Tests for the workflows' item helper: redacted errors, transient faults told from refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.orchestrator.core.errors import GitError, is_transient
from scripts.orchestrator.core.models import Completed
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.github_http import GitHubError, NotFound, RateLimited, Unprocessable
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


def _git_error(stderr: str, *, timed_out: bool = False) -> GitError:
    result = Completed(("git", "push"), None if timed_out else 128, "", stderr, 1.0, timed_out)
    return GitError(["push"], result)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (GitHubError(0, "no answer"), True),
        (GitHubError(502, "Server Error"), True),
        (GitHubError(503, "Unavailable"), True),
        (GitHubError(429, "Too Many Requests"), True),
        (GitHubError(403, "You have exceeded a secondary rate limit"), True),
        (RateLimited(403, "rate limited for 900s"), True),
        (GitHubError(403, "Resource not accessible by integration"), False),
        (NotFound(404, "Not Found"), False),
        (Unprocessable(422, "Validation Failed"), False),
        (GitHubError(401, "Bad credentials"), False),
        (_git_error("fatal: unable to access 'https://github.com/a/b/': Could not resolve host"),
         True),
        (_git_error("fatal: unable to access 'https://github.com/a/b/': The requested URL "
                    "returned error: 502"), True),
        (_git_error("fatal: the remote end hung up unexpectedly"), True),
        (_git_error("", timed_out=True), True),
        (_git_error("fatal: unable to access 'https://github.com/a/b/': The requested URL "
                    "returned error: 403"), False),
        (_git_error(" ! [remote rejected] feature/issue-1 (pre-receive hook declined)"), False),
        (_git_error(" ! [rejected] feature/issue-1 (stale info)"), False),
        (_git_error("fatal: invalid reference: main"), False),
        (RuntimeError("anything else"), False),
    ],
)  # fmt: skip
def test_transient_faults_are_told_from_definite_answers(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_transient_fault_never_fails_an_item(tmp_path: Path) -> None:
    with State(tmp_path / "s.json") as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=4, status=Status.IN_PROGRESS))
        items = Items(state, WorkItemType.ISSUE, Redactor([TOKEN]))
        outage = GitHubError(502, "Server Error")
        assert all(items.retry_later(4, outage) for _ in range(5 * MAX_INFRASTRUCTURE_ERRORS))
        assert items.get(4).status is Status.PENDING
