"""New comments of the whole repository, fetched once per cycle for every trigger command."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

from .github_watcher import GitHubClient
from .models import Comment
from .state import StateStore

log = logging.getLogger(__name__)

CURSOR_META = "comments_cursor"  # GitHub's updated_at of the newest comment seen
SEEN_META = "comments_seen"  # ids already delivered, so a `since` overlap is not new again
MAX_SEEN = 2000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def is_command(body: str, trigger: str) -> bool:
    """True if the comment's first line is exactly `trigger` (trailing whitespace allowed).

    A trigger quoted in prose ("please don't /merge yet") or on a later line is not a command.
    """
    first_line = body.lstrip("\ufeff").split("\n", 1)[0]
    return first_line.rstrip() == trigger


class CommentFeed:
    """Repo-wide comments since the last cycle: one paginated call, not one per pull request.

    On the very first refresh the cursor is set to the newest existing comment and nothing is
    delivered: comments written before the daemon watched the repository trigger nothing.
    """

    def __init__(self, github: GitHubClient, state: StateStore) -> None:
        self._github = github
        self._state = state
        self.comments: list[Comment] = []

    async def refresh(self) -> None:
        """Fetch what is new since the cursor; `comments` holds it until the next refresh."""
        self.comments = []  # if the fetch fails, this cycle sees no commands, not stale ones
        cursor_text = self._state.get_meta(CURSOR_META)
        if cursor_text is None:
            await self._start()
            return
        cursor = datetime.fromisoformat(cursor_text)
        seen = set(self._state.get_meta(SEEN_META, []))
        fetched = await self._github.list_repo_comments(since=cursor)
        # Comments written before the cursor that were edited since are not new commands.
        fresh = [c for c in fetched if c.id not in seen and c.created_at >= cursor]
        self.comments = sorted(fresh, key=lambda c: (c.created_at, c.id))
        self._advance(fetched, seen)
        if self.comments:
            log.debug("%d new comment(s)", len(self.comments))

    def new(self, trigger: str) -> Sequence[Comment]:
        """This cycle's new comments that are the command `trigger`."""
        return [c for c in self.comments if is_command(c.body, trigger)]

    async def _start(self) -> None:
        latest = await self._github.latest_comments()
        if not latest:
            # An empty repository: every comment from now on is new.
            self._state.set_meta(CURSOR_META, EPOCH.isoformat())
            return
        newest = max(c.updated_at for c in latest)
        with_cursor = [c.id for c in latest if c.updated_at == newest]
        self._state.set_meta(SEEN_META, with_cursor)
        self._state.set_meta(CURSOR_META, newest.isoformat())

    def _advance(self, fetched: Sequence[Comment], seen: set[int]) -> None:
        if not fetched:
            return
        newest = max(c.updated_at for c in fetched)
        ids = [*self._state.get_meta(SEEN_META, []), *(c.id for c in fetched if c.id not in seen)]
        self._state.set_meta(SEEN_META, ids[-MAX_SEEN:])
        self._state.set_meta(CURSOR_META, newest.isoformat())
