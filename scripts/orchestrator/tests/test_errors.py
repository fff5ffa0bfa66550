"""The one rule that tells a passing fault (retry) from a definite answer (fail), as a table."""

from __future__ import annotations

import pytest

from scripts.orchestrator.core.errors import (
    GitError,
    GitHubError,
    NotFound,
    RateLimited,
    Unprocessable,
    is_transient,
)
from scripts.orchestrator.core.models import Completed


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
