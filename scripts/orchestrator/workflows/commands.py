"""Trigger commands from the comment feed: settled one by one, given only by writers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ..core import triggers
from ..core.errors import GitHubError, is_transient
from ..core.models import Comment, PullRequest
from ..ports import GitHub, StateStore
from .comment_feed import CommentFeed
from .pull_heads import PullHeads

log = logging.getLogger(__name__)

REPLY_EVERY = timedelta(hours=1)  # one reply per author, pull request and hour
REPLIES_META = "refusal_replies"


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
    github: GitHub,
    feed: CommentFeed,
    state: StateStore,
    comment: Comment,
    trigger: str,
    action: str,
) -> bool:
    """True if the command's author has write access. Otherwise the command is settled and
    False comes back: a reader never gains a writer's power. The author gets one reply per
    pull request and hour (GitHub's clock); a command repeated within the hour gets a 👎 only,
    so a flood of commands cannot make the daemon flood the thread."""
    if triggers.may_command(await github.permission(comment.author)):
        return True
    replies = _replies(state, comment.created_at)
    key = f"{comment.author}#{comment.issue_number}"
    if key in replies:
        log.info("%s by %s on #%d refused again: a reaction only",
                 trigger, comment.author, comment.issue_number)  # fmt: skip
        await github.react_to_comment(comment.id, "-1")
    else:
        await github.create_comment(
            comment.issue_number, triggers.not_allowed(comment.author, trigger, action)
        )
        replies[key] = comment.created_at.isoformat()
    with state.batch():
        state.set_meta(REPLIES_META, replies)
        feed.mark_handled(comment.id)
    return False


def _replies(state: StateStore, now: datetime) -> dict[str, str]:
    """The refusals replied to within the hour before `now`: {"author#number": ISO time}."""
    kept = {}
    for key, when in (state.get_meta(REPLIES_META) or {}).items():
        try:
            if now - datetime.fromisoformat(when) < REPLY_EVERY:
                kept[key] = when
        except (TypeError, ValueError):  # a hand-edited state: that record is dropped
            log.warning("ignoring an unreadable refusal record %r", key)
    return kept


async def acknowledge(github: GitHub, comment: Comment, what: str) -> None:
    """👀 on the command: only a courtesy, so a failure is logged and the work goes on."""
    try:
        await github.react_to_comment(comment.id, "eyes")
    except GitHubError as exc:
        log.warning("could not acknowledge %s on #%d: %s", what, comment.issue_number, exc)


_courtesies: set[asyncio.Task[None]] = set()  # held here: the loop keeps only weak references


async def courtesies_sent() -> None:
    """Wait for the acknowledgements started so far (tests; a cycle never waits for them)."""
    while _courtesies:
        await asyncio.gather(*_courtesies, return_exceptions=True)


def acknowledge_soon(github: GitHub, comment: Comment, what: str) -> None:
    """`acknowledge`, without waiting for it: the 👀 waits its turn in GitHub's
    one-write-a-second queue while the cycle goes on and the work starts."""
    task = asyncio.ensure_future(acknowledge(github, comment, what))
    _courtesies.add(task)
    task.add_done_callback(_courtesies.discard)
    task.add_done_callback(_said_if_failed)


def _said_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("an acknowledgement failed: %s", exc)


async def pin_head(
    github: GitHub,
    feed: CommentFeed,
    heads: PullHeads,
    comment: Comment,
    pull: PullRequest,
    trigger: str,
    verb: str,
) -> str | None:
    """The head a writer's command acts on: the one they named, or the one the daemon saw
    before they wrote. None when nobody can tell which head they saw: then the command is
    settled with one reply asking them to name the head (`verb` says what was not done)."""
    command = triggers.parse_command(comment.body, trigger)
    named = command.sha if command is not None else None
    pinned = triggers.pinned_head(
        named, pull.head_sha, heads.sighting(pull.number), comment.created_at
    )
    if pinned is None:
        log.warning("%s of #%d by %s: the head it saw is not known",
                    verb, pull.number, comment.author)  # fmt: skip
        reply = triggers.head_unknown(comment.author, pull.head_sha, named, trigger, verb)
        await github.create_comment(pull.number, reply)
        feed.mark_handled(comment.id)
    return pinned


async def join(task: asyncio.Task[None]) -> None:
    """Wait for a courtesy started beside the work; if this wait is cancelled (a stop), cancel
    the courtesy too."""
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        raise
    except Exception as exc:  # noqa: BLE001  (a courtesy's failure never costs the work beside it)
        log.warning("an acknowledgement failed: %s", exc)
