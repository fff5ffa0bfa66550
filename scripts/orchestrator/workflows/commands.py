"""Trigger commands from the comment feed: settled one by one, given only by writers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..core import triggers
from ..core.errors import GitHubError, is_transient
from ..core.models import Comment
from ..ports import GitHub
from .comment_feed import CommentFeed

log = logging.getLogger(__name__)


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


async def authorised(
    github: GitHub, feed: CommentFeed, comment: Comment, trigger: str, action: str
) -> bool:
    """True if the command's author has write access. Otherwise the author gets one reply,
    the command is settled, and False comes back: a reader never gains a writer's power."""
    if triggers.may_command(await github.permission(comment.author)):
        return True
    await github.create_comment(
        comment.issue_number, triggers.not_allowed(comment.author, trigger, action)
    )
    feed.mark_handled(comment.id)
    return False


async def acknowledge(github: GitHub, comment: Comment, what: str) -> None:
    """👀 on the command: only a courtesy, so a failure is logged and the work goes on."""
    try:
        await github.react_to_comment(comment.id, "eyes")
    except GitHubError as exc:
        log.warning("could not acknowledge %s on #%d: %s", what, comment.issue_number, exc)
