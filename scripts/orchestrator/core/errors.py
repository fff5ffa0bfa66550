"""The errors the ports raise, and the one rule that tells a passing fault from a refusal."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .models import Completed


class ExternalError(Exception):
    """GitHub or git failed under the daemon. `transient` faults may pass by themselves (no
    answer, a 5xx, a rate limit, an unreachable remote); anything else is a definite answer."""

    @property
    def transient(self) -> bool:
        raise NotImplementedError


class GitHubError(ExternalError):
    """A GitHub API call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, status: int, message: str, method: str = "", url: str = "") -> None:
        said = f"answered {status}" if status else "gave no answer"
        super().__init__(" ".join(f"GitHub {method} {url} {said}: {message}".split()))
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        limited = self.status in (403, 429) and "rate limit" in self.message.lower()
        return self.status == 0 or self.status >= 500 or self.status == 429 or limited


class NotFound(GitHubError):
    """404."""


class Conflict(GitHubError):
    """409: e.g. the merge `sha` no longer matches the head."""


class NotMergeable(GitHubError):
    """405: GitHub refuses the merge (conflicts, branch protection, ...)."""


class Unprocessable(GitHubError):
    """422: validation failed, e.g. a pull request for this head already exists."""


class RateLimited(GitHubError):
    """A rate limit that lasts longer than the daemon is willing to wait inside a call."""

    @property
    def transient(self) -> bool:
        return True


class MalformedAnswer(GitHubError):
    """GitHub answered, but a field the daemon reads is missing or of another type.

    `status` is the answer's (2xx); `field` is the JSON path, e.g. `[3].user.login`.
    """

    def __init__(self, status: int, method: str, url: str, field: str, problem: str) -> None:
        super().__init__(status, f"unreadable answer: {field} {problem}", method, url)
        self.field = field


# git's words when the remote refused (a definite answer) or could not be reached (transient).
_GIT_REFUSED = re.compile(
    r"\[(remote )?rejected\]|returned error: 4(?!29)[0-9][0-9]|permission denied"
    r"|authentication failed|repository not found|could not read username",
    re.IGNORECASE,
)
_GIT_UNREACHABLE = re.compile(
    r"could not resolve host|connection (refused|timed out|reset)|unable to access"
    r"|returned error: (5[0-9][0-9]|429)|early eof|remote end hung up|could not read from remote"
    r"|operation timed out|failed to connect",
    re.IGNORECASE,
)


class GitError(ExternalError):
    """A git command failed; the message holds the command and git's own words."""

    def __init__(self, args: Sequence[str], result: Completed) -> None:
        what = "timed out" if result.timed_out else f"exited {result.returncode}"
        detail = result.stderr.strip() or result.stdout.strip()
        super().__init__(f"git {' '.join(args)} {what}: {detail}")
        self.result = result

    @property
    def transient(self) -> bool:
        words = str(self)
        if _GIT_REFUSED.search(words):
            return False
        return self.result.timed_out or _GIT_UNREACHABLE.search(words) is not None


def is_transient(exc: Exception) -> bool:
    """A fault that may pass by itself; anything that is not an `ExternalError` is not."""
    return isinstance(exc, ExternalError) and exc.transient
