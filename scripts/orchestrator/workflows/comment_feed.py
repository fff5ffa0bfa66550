"""New comments of the whole repository, fetched once per cycle for every trigger command."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from ..core.models import Comment
from ..core.triggers import is_command, is_request
from ..ports import GitHub, StateStore

__all__ = ["CommentFeed", "is_command"]

log = logging.getLogger(__name__)

CURSOR_META = "comments_cursor"  # GitHub's updated_at of the newest comment fetched
HANDLED_META = "comments_handled"  # ids of trigger comments already acted on
PENDING_META = "comments_pending"  # ids of trigger comments fetched but not yet settled
MAX_HANDLED = 2000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
OVERLAP = timedelta(seconds=1)  # the cursor steps back this much: see `commit`


class CommentFeed:
    """Repo-wide comments since the last cycle: one paginated call, not one per pull request.

    Exactly once, across restarts: the cursor moves only after a cycle (`commit`), and a source
    marks each trigger it settled (`mark_handled`: acted on or refused) in the same state write
    as the work item it created. A crash in between re-delivers the comment, and the handled
    mark filters it out. Never lost: the cursor stops at the oldest command of a watched trigger
    (`watch`) that no source settled, e.g. because GitHub failed while it was checked, so the
    next cycle delivers it again, even when it was written before the cursor and edited since.
    On the very first refresh the cursor is set to the newest existing comment and nothing is
    delivered: comments written before the daemon watched the repository trigger nothing.
    """

    def __init__(self, github: GitHub, state: StateStore) -> None:
        self._github = github
        self._state = state
        self._fetched: list[Comment] = []
        self._triggers: dict[str, bool] = {}  # trigger: whether instructions follow it
        self.comments: list[Comment] = []

    def watch(self, trigger: str, *, takes_text: bool = False) -> None:
        """Declare a command some source settles; the cursor never moves past an unsettled one.
        `takes_text`: instructions follow it (`/claude fix the test`), not only a head's SHA."""
        self._triggers[trigger] = takes_text

    def forget_triggers(self) -> None:
        """Watch nothing until the sources declare their commands again (the repository's
        settings renamed or turned one off: its old commands no longer hold the cursor)."""
        self._triggers.clear()

    async def refresh(self) -> None:
        """Fetch what is new since the cursor; `comments` holds it until the next refresh."""
        self._fetched, self.comments = [], []  # a failed fetch means no commands, not stale ones
        cursor_text = self._state.get_meta(CURSOR_META)
        if cursor_text is None:
            await self._start()
            return
        cursor = datetime.fromisoformat(cursor_text)
        handled = set(self._state.get_meta(HANDLED_META, []))
        pending = set(self._state.get_meta(PENDING_META, []))
        self._fetched = await self._github.list_repo_comments(since=cursor)
        # A comment written before the cursor and edited since is not a new command, unless it
        # was one already when first fetched and is still waiting to be settled.
        fresh = [
            c
            for c in self._fetched
            if c.id not in handled and (c.created_at >= cursor or c.id in pending)
        ]
        self.comments = sorted(fresh, key=lambda c: (c.created_at, c.id))

    def new(self, trigger: str) -> Sequence[Comment]:
        """This cycle's unhandled comments that are the command `trigger`."""
        return [c for c in self.comments if self._is(c.body, trigger)]

    def _is(self, body: str, trigger: str) -> bool:
        takes_text = self._triggers.get(trigger, False)
        return is_request(body, trigger) if takes_text else is_command(body, trigger)

    def mark_handled(self, comment_id: int) -> None:
        handled = [*self._state.get_meta(HANDLED_META, []), comment_id]
        self._state.set_meta(HANDLED_META, handled[-MAX_HANDLED:])

    async def commit(self) -> None:
        """After the sources have acted: move the cursor past what was fetched and settled."""
        if not self._fetched:
            return
        handled = set(self._state.get_meta(HANDLED_META, []))
        unsettled = [
            c
            for c in self.comments
            if c.id not in handled and any(self._is(c.body, t) for t in self._triggers)
        ]
        # GitHub documents `since` as "updated after", and timestamps have whole seconds: a
        # cursor one second before the oldest unsettled comment (or the newest fetched) loses
        # nothing under either reading; what comes twice is filtered by the handled marks.
        cursor = (
            min(
                (c.updated_at for c in unsettled),
                default=max(c.updated_at for c in self._fetched),
            )
            - OVERLAP
        )
        if unsettled:
            log.info("%d command(s) not settled yet; they come again next cycle", len(unsettled))
        with self._state.batch():
            self._state.set_meta(CURSOR_META, cursor.isoformat())
            self._state.set_meta(PENDING_META, [c.id for c in unsettled])

    async def _start(self) -> None:
        latest = await self._github.latest_comments()
        if not latest:
            self._state.set_meta(CURSOR_META, EPOCH.isoformat())  # every comment is new
            return
        cursor = max(c.updated_at for c in latest) - OVERLAP
        with self._state.batch():
            for comment in latest:
                if comment.updated_at >= cursor:  # returned again by `since=cursor`
                    self.mark_handled(comment.id)
            self._state.set_meta(CURSOR_META, cursor.isoformat())
