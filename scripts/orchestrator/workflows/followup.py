"""Follow-up workflow: a writer's `/claude <instructions>`, and a writer's review asking for
changes on the daemon's pull request, become more work on that pull request."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import Settings
from ..core import followup_text as text
from ..core.decide_followup import daemons, looked, review_asks
from ..core.errors import NotFound
from ..core.models import Comment, PullRequest
from ..core.redact import Redactor
from ..core.text import PREFIX
from ..core.triggers import may_command, parse_instructions
from ..core.work import Ask, FollowUpFacts, Status, WorkItem, WorkItemType
from ..ports import Clock, Git, GitHub, Job, StateStore
from . import outbox
from .branch_work import BranchWork
from .commands import acknowledge_soon, authorised, settle_each
from .comment_feed import CommentFeed
from .followup_run import FollowUpRun
from .implement import branch_for

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FIRST_WATCHED_META = "first_watched_at"  # the daemon's (`daemon.py`): reviews before it are old
# Since when follow-ups are on (set again when they are turned back on, or a pull request's
# follow-up item is cleared): reviews from before it are old too, never replayed.
FOLLOWUPS_SINCE_META = "followups_since"


@dataclass
class FollowUpWorkflow:
    """Collects the asks on pull requests and runs one job per pull request for them."""

    settings: Settings
    state: StateStore
    github: GitHub
    worktrees: Git
    work: BranchWork
    feed: CommentFeed
    redactor: Redactor
    clock: Clock
    name: str = "follow-up"

    def __post_init__(self) -> None:
        if self.settings.followups_enabled:
            self.feed.watch(self.settings.followup_trigger, takes_text=True)
        self._outbox = outbox.Outbox(self.state, WorkItemType.FOLLOW_UP, self.github,
                                     self.redactor)  # fmt: skip
        self._run = FollowUpRun(self.settings, self.state, self.github, self.worktrees,
                                self.work, self._outbox, self.redactor, self.clock)  # fmt: skip

    async def poll(self) -> Sequence[Job]:
        await self._outbox.send_all()  # replies a fault held back
        if not self.settings.followups_enabled:
            if self.state.get_meta(FOLLOWUPS_SINCE_META) is not None:
                self.state.set_meta(FOLLOWUPS_SINCE_META, None)
            return []  # the commands are ignored; the feed moves past them
        if self.state.get_meta(FOLLOWUPS_SINCE_META) is None:
            self.state.set_meta(FOLLOWUPS_SINCE_META, self.clock.now().isoformat())
        await settle_each(self.feed, self.settings.followup_trigger, self._accept)
        await self._reviews()
        jobs = []
        for item in self.state.items(WorkItemType.FOLLOW_UP):
            facts = item.follow_up
            due = item.status is Status.IN_PROGRESS or (
                item.status is Status.PENDING and bool(facts.asks or facts.doing)
            )
            if due:
                run = functools.partial(self._run.run, item.number)
                jobs.append(Job(WorkItemType.FOLLOW_UP, item.number, run))
        return jobs

    # -- `/claude <instructions>` -------------------------------------------------------------

    async def _accept(self, comment: Comment) -> None:
        trigger = self.settings.followup_trigger
        if comment.author == await self.github.login() and _written_by_the_daemon(comment.body):
            self.feed.mark_handled(comment.id)  # the daemon's own words never command it
            return
        pull = await self._pull_for(comment.issue_number)
        if pull is None or pull.state != "open":
            # Answered only for a writer: anyone's command on any issue must not buy a reply.
            if may_command(await self.github.permission(comment.author)):
                reply = (
                    text.no_pull(comment.author, trigger, self.settings.ready_label)
                    if pull is None
                    else text.not_done(comment.author, text.closed(pull.number))
                )
                await self.github.create_comment(comment.issue_number, reply)
            self.feed.mark_handled(comment.id)
            return
        action = "ask Claude for changes"
        if not await authorised(self.github, self.feed, self.state, comment, trigger, action):
            return
        instructions = parse_instructions(comment.body, trigger) or ""
        if not instructions:
            reply = text.no_instructions(comment.author, trigger)
            await self.github.create_comment(comment.issue_number, reply)
            self.feed.mark_handled(comment.id)
            return
        ask = Ask(source="comment", id=comment.id, author=comment.author,
                  where=comment.issue_number, text=instructions)  # fmt: skip
        with self.state.batch():  # the ask and the handled mark land in one write
            self._add_asks(pull.number, [ask])
            self.feed.mark_handled(comment.id)
        log.info("follow-up on #%d asked by %s", pull.number, comment.author)
        acknowledge_soon(self.github, comment, "follow-up")

    async def _pull_for(self, number: int) -> PullRequest | None:
        """The pull request a command on `number` is about (open or not): `number` itself, or
        the one the daemon opened for issue `number`."""
        try:
            return await self.github.get_pull(number)
        except NotFound:
            pass  # an issue
        issue = self.state.get(WorkItemType.ISSUE, number)
        if issue is not None and issue.pr_number is not None:
            try:
                return await self.github.get_pull(issue.pr_number)
            except NotFound:
                return None
        base = await self.github.default_branch()
        return await self.github.find_pull(branch_for(number), base)

    def _add_asks(self, number: int, asks: Sequence[Ask], **facts: object) -> None:
        item = self.state.get(WorkItemType.FOLLOW_UP, number) or WorkItem(
            type=WorkItemType.FOLLOW_UP, number=number, status=Status.DONE
        )
        waiting = item.follow_up.but(asks=(*item.follow_up.asks, *asks), **facts)
        if asks and item.status is not Status.IN_PROGRESS:  # a running one takes them next
            item = item.evolve(status=Status.PENDING, last_error=None)
        self.state.put(item.evolve(facts=waiting))

    # -- reviews ------------------------------------------------------------------------------

    async def _reviews(self) -> None:
        """New reviews on the daemon's own open pull requests that ask for changes: a writer's
        becomes an ask; a reader's is not acted on."""
        own = await self.github.login()
        if own is None:
            return  # unknown identity: its own pull requests cannot be told apart
        for pull in await self.github.list_open_pulls():
            if not daemons(pull, own):
                continue
            item = self.state.get(WorkItemType.FOLLOW_UP, pull.number)
            facts = item.follow_up if item is not None else FollowUpFacts()
            # At the first look, the reviews from before the daemon watched the repository are
            # old; one submitted since is an ask, even before this first look. From then on
            # the floor is on GitHub's clock only (`looked`).
            floor = facts.reviews_floor or self._first_watched()
            reviews = await self.github.list_reviews(pull.number)
            fresh = [
                r
                for r in reviews
                if r.submitted_at is not None
                and r.submitted_at >= floor
                and r.id not in facts.reviews_seen
            ]
            now = looked(reviews, seen=facts.reviews_seen, floor=facts.reviews_floor or EPOCH)
            if not fresh and facts.reviews_floor is not None:
                if (now.seen, now.floor) != (facts.reviews_seen, facts.reviews_floor):
                    self._add_asks(pull.number, [], reviews_seen=now.seen, reviews_floor=now.floor)
                continue
            comments = await self.github.list_review_comments(pull.number) if fresh else []
            asks = review_asks(reviews, comments, seen=facts.reviews_seen, floor=floor, own=own,
                               number=pull.number)  # fmt: skip
            writers = [a for a in asks if may_command(await self.github.permission(a.author))]
            for ask in asks:
                if ask not in writers:
                    log.info("review %d on #%d by %s, who cannot write: not acted on",
                             ask.id, pull.number, ask.author)  # fmt: skip
            self._add_asks(pull.number, writers, reviews_seen=now.seen, reviews_floor=now.floor)
            if writers:
                log.info("#%d: %d review(s) ask for changes", pull.number, len(writers))

    def _first_watched(self) -> datetime:
        """The first look's floor: when the daemon first watched the repository, or when
        follow-ups were last turned on, whichever is later."""
        try:
            return max(
                datetime.fromisoformat(self.state.get_meta(key) or "")
                for key in (FIRST_WATCHED_META, FOLLOWUPS_SINCE_META)
            )
        except ValueError:  # not watched yet, or a hand-edited state: every review is old
            return self.clock.now()


def _written_by_the_daemon(body: str) -> bool:
    """The daemon signs what it writes; a person sharing its account (a personal token) does
    not, and their commands count as anyone's with write access."""
    return body.startswith(PREFIX) or outbox.MARKER_PREFIX in body
