"""Follow-up workflow: a writer's `/claude <instructions>`, and a writer's review asking for
changes on the daemon's pull request, become more work on that pull request."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..config import Settings
from ..core import followup_text as text
from ..core.decide_followup import review_asks, seen_now
from ..core.errors import NotFound
from ..core.models import Comment, PullRequest, Review
from ..core.redact import Redactor
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

FIRST_WATCHED_META = "first_watched_at"  # the daemon's (`daemon.py`): reviews before it are old


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
        self.feed.watch(self.settings.followup_trigger, takes_text=True)
        self._outbox = outbox.Outbox(self.state, WorkItemType.FOLLOW_UP, self.github,
                                     self.redactor)  # fmt: skip
        self._run = FollowUpRun(self.settings, self.state, self.github, self.worktrees,
                                self.work, self._outbox, self.redactor, self.clock)  # fmt: skip

    async def poll(self) -> Sequence[Job]:
        await self._outbox.send_all()  # replies a fault held back
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
        if comment.author == await self.github.login():
            self.feed.mark_handled(comment.id)  # the daemon's own words never command it
            return
        pull = await self._pull_for(comment.issue_number)
        if pull is None:
            # Answered only for a writer: anyone's command on any issue must not buy a reply.
            if may_command(await self.github.permission(comment.author)):
                reply = text.no_pull(comment.author, trigger, self.settings.ready_label)
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
        """The open pull request a command on `number` is about: `number` itself, or the one
        the daemon opened for issue `number`."""
        try:
            return _open(await self.github.get_pull(number))
        except NotFound:
            pass  # an issue
        issue = self.state.get(WorkItemType.ISSUE, number)
        if issue is not None and issue.pr_number is not None:
            try:
                return _open(await self.github.get_pull(issue.pr_number))
            except NotFound:
                return None
        base = await self.github.default_branch()
        found = await self.github.find_pull(branch_for(number), base)
        return _open(found) if found is not None else None

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
            if pull.author != own or pull.is_fork:
                continue
            item = self.state.get(WorkItemType.FOLLOW_UP, pull.number)
            facts = item.follow_up if item is not None else FollowUpFacts()
            reviews = await self.github.list_reviews(pull.number)
            seen = facts.reviews_seen if facts.watched else self._before_watch(reviews)
            fresh = [r for r in reviews if r.id not in seen and r.submitted_at is not None]
            if facts.watched and not fresh:
                continue
            comments = await self.github.list_review_comments(pull.number) if fresh else []
            asks = review_asks(reviews, comments, seen=seen, own=own, number=pull.number)
            writers = [a for a in asks if may_command(await self.github.permission(a.author))]
            for ask in asks:
                if ask not in writers:
                    log.info("review %d on #%d by %s, who cannot write: not acted on",
                             ask.id, pull.number, ask.author)  # fmt: skip
            self._add_asks(pull.number, writers, watched=True,
                           reviews_seen=seen_now(seen, reviews))  # fmt: skip
            if writers:
                log.info("#%d: %d review(s) ask for changes", pull.number, len(writers))

    def _before_watch(self, reviews: Sequence[Review]) -> tuple[int, ...]:
        """At the first look at a pull request: the reviews from before the daemon watched the
        repository are not asks (one submitted since is, even before this first look)."""
        try:
            first = datetime.fromisoformat(self.state.get_meta(FIRST_WATCHED_META) or "")
        except ValueError:  # not watched yet, or a hand-edited state: every review is old
            first = None
        return tuple(
            r.id
            for r in reviews
            if r.submitted_at is not None and (first is None or r.submitted_at < first)
        )


def _open(pull: PullRequest) -> PullRequest | None:
    return pull if pull.state == "open" else None
