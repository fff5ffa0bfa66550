"""A workflow's work items in the state: the small updates every workflow makes."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from ..comment_feed import CommentFeed
from ..decide import AfterError, after_error
from ..github_http import GitHubError, RateLimited
from ..models import Comment
from ..redact import Redactor
from ..state import StateStore, Status, WorkItem, WorkItemType
from ..worktree_manager import GitError

log = logging.getLogger(__name__)

MAX_INFRASTRUCTURE_ERRORS = 3  # definite git or GitHub errors before an attempt fails
ERRORS_KEY = "infrastructure_errors"

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


def is_transient(exc: Exception) -> bool:
    """A fault that may pass by itself: GitHub gave no answer, a 5xx or a rate limit, or git
    could not reach the remote. Anything else (a 4xx, a refused push) is a definite answer."""
    if isinstance(exc, RateLimited):
        return True
    if isinstance(exc, GitHubError):
        limited = exc.status in (403, 429) and "rate limit" in exc.message.lower()
        return exc.status == 0 or exc.status >= 500 or exc.status == 429 or limited
    if isinstance(exc, GitError):
        words = str(exc)
        if _GIT_REFUSED.search(words):
            return False
        return exc.result.timed_out or _GIT_UNREACHABLE.search(words) is not None
    return False


class Items:
    """Read and update one kind of work item; every stored error text is redacted."""

    def __init__(self, state: StateStore, kind: WorkItemType, redactor: Redactor) -> None:
        self._state = state
        self._kind = kind
        self._redactor = redactor

    def get(self, number: int) -> WorkItem:
        item = self._state.get(self._kind, number)
        assert item is not None, f"{self._kind.value} item #{number} vanished from the state"
        return item

    def update(self, number: int, **changes: object) -> None:
        error = changes.get("last_error")
        if isinstance(error, str):
            changes["last_error"] = self._redactor.redact(error)
        self._state.put(self.get(number).evolve(**changes))

    def update_data(self, number: int, **data: object) -> None:
        item = self.get(number)
        self._state.put(item.evolve(data={**item.data, **data}))

    def retry_later(self, number: int, exc: Exception) -> bool:
        """Count a git or GitHub failure; True if the item waits for the next poll, False
        once definite errors are used up (the caller then reports the failure). A transient
        fault never fails an item: what was done so far is kept and the rest is retried."""
        transient = is_transient(exc)
        data = self.get(number).data
        errors = int(data.get(ERRORS_KEY, 0)) + (0 if transient else 1)
        counted = {**data, ERRORS_KEY: errors}
        step = after_error(transient=transient, errors=errors, limit=MAX_INFRASTRUCTURE_ERRORS)
        if step is AfterError.GIVE_UP:
            self.update(number, data=counted)
            return False
        kind = (
            "a transient fault" if transient else f"error {errors} of {MAX_INFRASTRUCTURE_ERRORS}"
        )
        log.warning("#%d: %s (%s); will retry on the next poll", number, exc, kind)
        # One state write: the count, the status and the error together.
        self.update(number, status=Status.PENDING, last_error=str(exc), data=counted)
        return True


async def settle_each(
    feed: CommentFeed, trigger: str, accept: Callable[[Comment], Awaitable[None]]
) -> None:
    """Hand each new `trigger` command to `accept`, which settles it (`feed.mark_handled`).

    Each on its own: a transient fault leaves that command for the next cycle (the feed keeps
    it), a definite refusal from GitHub drops it with a log line, and neither holds back the
    commands after it.
    """
    for comment in feed.new(trigger):
        try:
            await accept(comment)
        except GitHubError as exc:
            if is_transient(exc):
                log.warning("%s on #%d waits for the next cycle: %s",
                            trigger, comment.issue_number, exc)  # fmt: skip
                continue
            log.warning("%s on #%d dropped, GitHub refused: %s",
                        trigger, comment.issue_number, exc)  # fmt: skip
            feed.mark_handled(comment.id)
