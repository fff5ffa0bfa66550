"""Review workflow: one read-only Claude review per new head of every open pull request."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Settings
from ..core import review_text as text
from ..core.decide_review import (
    DAY,
    Hold,
    ReviewPlan,
    ReviewStep,
    hold,
    needs_author_permission,
    plan_reviews,
    runs_within_a_day,
)
from ..core.errors import GitError, GitHubError, is_transient
from ..core.models import READ_ONLY_TOOLS, ClaudeRequest, Comment, PullRequest, ReviewEvent
from ..core.redact import Redactor
from ..core.retry import GiveUp, after_failure
from ..core.text import tail
from ..core.triggers import may_command
from ..core.work import KeptReview, ReviewFacts, Status, WorkItem, WorkItemType
from ..guidelines import guidelines, repo_guidelines_path
from ..ports import Claude, Clock, Git, GitHub, Job, StateStore
from . import outbox
from .commands import acknowledge_soon, authorised, join, pin_head, settle_each
from .comment_feed import CommentFeed
from .items import Items
from .pull_heads import PullHeads

log = logging.getLogger(__name__)

BASELINE_META = "review_baseline_at"  # when the open pull requests were first remembered
MAX_ATTEMPTS = 3
RETRY_BACKOFF = 60.0  # seconds before the second attempt at a head; doubled for the third
MAX_REVIEWED = 20  # reviewed heads remembered per pull request
MAX_LAST_REVIEW = 20_000  # characters of the last review kept for the next one


@dataclass(frozen=True)
class NotReviewed:
    """Claude could not produce a review; `error` says why."""

    error: str
    transient: bool = False  # not the review's fault: the attempt is not counted


@dataclass
class ReviewWorkflow:
    """Detects pull requests to review and reviews them, one job per head."""

    settings: Settings
    state: StateStore
    github: GitHub
    worktrees: Git
    claude: Claude
    feed: CommentFeed
    heads: PullHeads
    redactor: Redactor
    clock: Clock
    name: str = "review"

    def __post_init__(self) -> None:
        self._items = Items(self.state, WorkItemType.PR_REVIEW, self.redactor)
        self.feed.watch(self.settings.review_comment_trigger)
        self._outbox = outbox.Outbox(self.state, WorkItemType.PR_REVIEW, self.github, self.redactor)

    async def poll(self) -> Sequence[Job]:
        await self._outbox.send_all()  # failure comments a fault held back
        pulls = await self.github.list_open_pulls()
        requested = await self._review_requests({p.number: p for p in pulls})
        items = {i.number: i for i in self.state.items(WorkItemType.PR_REVIEW)}
        baseline_taken = self.state.get_meta(BASELINE_META) is not None
        plans = plan_reviews(
            pulls,
            items,
            baseline_taken=baseline_taken,
            review_on_push=self.settings.review_on_push,
            requested=requested,
            now=self.clock.now(),
        )
        jobs = []
        with self.state.batch():
            for plan in plans:
                match plan.step:
                    case ReviewStep.BASELINE:
                        self._remember(plan)
                    case ReviewStep.REVIEW | ReviewStep.RETRY:
                        run = functools.partial(self.run, plan.number, plan.step)
                        jobs.append(Job(WorkItemType.PR_REVIEW, plan.number, run))
            if not baseline_taken:
                self.state.set_meta(BASELINE_META, self.clock.now().isoformat())
                log.info("remembered %d open pull request(s); new commits get reviews", len(plans))
        return jobs

    def _remember(self, plan: ReviewPlan) -> None:
        self.state.put(
            WorkItem(
                type=WorkItemType.PR_REVIEW,
                number=plan.number,
                status=Status.DONE,
                head_sha=plan.head_sha,
                facts=ReviewFacts(baseline=True),
            )
        )

    async def _review_requests(self, open_pulls: dict[int, PullRequest]) -> set[int]:
        """Pull requests whose review was asked for by a writer; readers get one reply.

        A request pins the head its writer saw (or named), as `/merge` does, and reviews only
        that one. It is stored in the item in the same write that settles the comment, so no
        fault between here and the posted review can lose it.
        """
        trigger = self.settings.review_comment_trigger

        async def accept(comment: Comment) -> None:
            number = comment.issue_number
            pull = open_pulls.get(number)
            if pull is None:
                self.feed.mark_handled(comment.id)  # an issue, or a closed pull request
                return
            if not await authorised(
                self.github, self.feed, self.state, comment, trigger, "ask for a review"
            ):
                return
            pinned = await pin_head(
                self.github, self.feed, self.heads, comment, pull, trigger, "review"
            )
            if pinned is None:
                return
            item = self.state.get(WorkItemType.PR_REVIEW, number) or WorkItem(
                type=WorkItemType.PR_REVIEW, number=number, status=Status.DONE
            )
            with self.state.batch():
                self.state.put(item.with_facts(requested=True, requested_head=pinned))
                self.feed.mark_handled(comment.id)
            acknowledge_soon(self.github, comment, "review")

        await settle_each(self.feed, trigger, accept)
        return {
            i.number
            for i in self.state.items(WorkItemType.PR_REVIEW)
            if i.review.requested and i.number in open_pulls
        }

    async def run(self, number: int, step: ReviewStep) -> None:
        try:
            pull = await self.github.get_pull(number)
        except GitHubError as exc:
            # Nothing recorded yet: the next poll plans this pull request (and a writer's
            # request for it) again.
            log.warning("pull request #%d not read, review planned again: %s", number, exc)
            return
        if pull.state != "open":
            return
        before = self._item(number)
        new_head = before.head_sha != pull.head_sha or step is ReviewStep.REVIEW
        writes: bool | None = None
        if new_head and needs_author_permission(
            forced=before.review.requested or before.review.forced,
            review_outsider_pushes=self.settings.review_outsider_pushes,
        ):
            try:
                writes = may_command(await self.github.permission(pull.author))
            except GitHubError as exc:
                log.warning("review of #%d planned again: %s", number, exc)
                return
        # Read again after the await, and no await until it is written back: a writer's
        # request accepted meanwhile (with the head it pinned) is neither lost nor unpinned.
        item = self._item(number)
        # A writer's request is taken up here; its retries keep it as `forced`.
        facts = item.review
        forced = facts.requested or facts.forced
        # Retries too: they count against the day's cap (their author was gated before).
        held = hold(
            facts,
            pull.head_sha,
            forced=forced,
            author_writes=writes,
            daily_cap=self.settings.max_reviews_per_day,
            now=self.clock.now(),
        )
        if held is not None:
            await self._hold(item, pull, held)
            return
        item = item.evolve(
            status=Status.IN_PROGRESS,
            head_sha=pull.head_sha,
            attempts=1 if new_head else item.attempts + 1,
            started_at=self.clock.now(),
            facts=facts.but(retry_at=None, baseline=False, requested=False, forced=forced),
        )
        self.state.put(item)
        acknowledged: asyncio.Task[None] | None = None
        try:
            if not forced and await self._already_reviewed(pull):
                self._finish(number, pull.head_sha, None)
                return
            if item.attempts == 1:  # beside the review, joined before it is posted
                acknowledged = asyncio.create_task(self._acknowledge(number))
            kept = item.review.unposted
            if kept is not None and kept.commit_id == pull.head_sha:
                log.info("posting the review of #%d written before a fault", pull.number)
                await self._post(pull.number, kept)
                return
            outcome = await self._review(pull, item, writes, acknowledged)
            if isinstance(outcome, NotReviewed):
                await self._failed(pull, outcome.error, transient=outcome.transient)
        except (GitHubError, GitError) as exc:
            await self._failed(pull, str(exc), transient=is_transient(exc))
        finally:
            if acknowledged is not None:
                await join(acknowledged)

    def _item(self, number: int) -> WorkItem:
        return self.state.get(WorkItemType.PR_REVIEW, number) or WorkItem(
            type=WorkItemType.PR_REVIEW, number=number
        )

    async def _acknowledge(self, number: int) -> None:
        try:
            await self.github.react_to_issue(number, "eyes")
        except GitHubError as exc:  # only an acknowledgement: the review goes ahead
            log.warning("could not acknowledge the review of #%d: %s", number, exc)

    async def _already_reviewed(self, pull: PullRequest) -> bool:
        """True if the daemon's account already reviewed this head (even with a lost state)."""
        login = await self.github.login()
        if login is None:
            return False  # unknown identity: the state alone prevents repeats
        reviews = await self.github.list_reviews(pull.number)
        # Bodiless reviews of its account are its replies in review threads (GitHub files each
        # reply as a review of the head it was written on), not reviews of that head.
        return any(
            r.author == login and r.commit_id == pull.head_sha and r.body.strip() for r in reviews
        )

    async def _hold(self, item: WorkItem, pull: PullRequest, held: Hold) -> None:
        """A due review runs no Claude (`decide_review.hold`): say so where someone must act."""
        trigger = self.settings.review_comment_trigger
        facts = item.review
        head = pull.head_sha
        log.info("review of #%d at %s not run: %s", pull.number, head[:12], held.value)
        match held:
            case Hold.HEAD_MOVED:
                # The writer's request ends; the new head is planned as any push is.
                notice = text.head_moved(facts.requested_head or "", head, trigger)
                done = facts.but(requested=False, forced=False, requested_head=None)
                self._outbox.queue(
                    item, [outbox.comment(pull.number, notice)], status=Status.DONE, facts=done
                )
            case Hold.OUTSIDER_PUSH:  # their first review said how to ask for more
                self.state.put(item.evolve(status=Status.DONE, head_sha=head))
            case Hold.DAILY_CAP:
                now = self.clock.now()
                if facts.capped_at is not None and now - facts.capped_at < DAY:
                    self.state.put(item.evolve(status=Status.DONE, head_sha=head))
                    return  # said once a day is enough
                cap = self.settings.max_reviews_per_day
                notice = text.capped(head, cap, trigger)
                self._outbox.queue(
                    item,
                    [outbox.comment(pull.number, notice)],
                    status=Status.DONE,
                    head_sha=head,
                    facts=facts.but(capped_at=now),
                )
        await self._outbox.try_send(pull.number)

    async def _review(
        self,
        pull: PullRequest,
        item: WorkItem,
        author_writes: bool | None,
        acknowledged: asyncio.Task[None] | None = None,
    ) -> NotReviewed | None:
        spend = self._items.allowance(pull.number, self.settings)
        if spend.refused is not None:
            return NotReviewed(f"no review: {spend.refused}")
        head = await self.worktrees.fetch_pull_head(pull.number)  # works for forks too
        if head != pull.head_sha:
            # Pushed since the pull request was read: that head was not let through (pinned by
            # a writer, or gated as an outsider's push). The next poll plans it.
            return NotReviewed(f"the head moved to {head[:12]} during the review", transient=True)
        base = await self.worktrees.fetch_branch(pull.base_ref)
        previous = await self._previous_head(item, head)
        worktree = await self.worktrees.detached_worktree(f"pr-review-{pull.number}", head)
        try:
            diff = await self.worktrees.diff(
                previous or base, head, cwd=worktree, limit=text.MAX_DIFF
            )
            # After the diff (which shows the PR's own changes to them): what steers Claude in
            # the checkout is the base's.
            await self.worktrees.restore_steering(worktree, base)
            # The repository's own guidelines come from the base branch, never the PR.
            own = await self.worktrees.read_file(base, repo_guidelines_path("review"))
            request = ClaudeRequest(
                prompt=text.review_prompt(
                    pull, diff, previous=previous, last_review=item.review.last_review
                ),
                cwd=worktree,
                guidelines=guidelines("review", own),
                tools=READ_ONLY_TOOLS,
                max_turns=self.settings.max_turns,
                timeout=self.settings.claude_timeout,
                setting_sources=(),  # the checkout is untrusted: no project settings or hooks
                max_budget_usd=spend.cap,
            )
            facts = item.review
            if not facts.forced:  # counted against the daily cap of automatic runs
                now = self.clock.now()
                runs = (*runs_within_a_day(facts, now), now)
                self._items.update_facts(
                    pull.number, runs=runs, first_head=facts.first_head or head
                )
            result = await self.claude.run(request)
            self._items.spend(pull.number, result)
        finally:
            await self.worktrees.remove(worktree)
        if result.limit == "day":  # it never ran: the next day's first cycles plan it again
            self._items.update_facts(pull.number, runs=item.review.runs)  # not one of the day's
            return NotReviewed(result.error or "the day's budget is spent", transient=True)
        if result.limit == "day_rest":  # the day's budget ran out mid-review: tried again later
            return NotReviewed(result.error or "the day's budget ran out", transient=True)
        if not result.ok:
            return NotReviewed(result.error or "Claude failed")
        login = await self.github.login()
        self_authored = pull.author == login
        # Asked only when an approval is possible: one request, not one per review.
        writes = (
            not self_authored
            and self.settings.review_event == ReviewEvent.APPROVE
            and text.parse_verdict(result.text) == ReviewEvent.APPROVE
            and (
                author_writes
                if author_writes is not None
                else may_command(await self.github.permission(pull.author))
            )
        )
        event = text.choose_event(
            result.text, self.settings.review_event, own=self_authored, author_writes=writes
        )
        # An outsider learns, in their first review, how later pushes get reviewed.
        later = self.settings.review_comment_trigger if author_writes is False else None
        kept = KeptReview(
            body=self.redactor.redact(text.review_body(result, head, previous, later=later)),
            event=event,
            commit_id=head,
            text=self.redactor.redact(result.text),
        )
        # Kept until GitHub takes it: a fault while posting costs a retry, not a new run.
        self._items.update_facts(pull.number, unposted=kept)
        if acknowledged is not None:
            await join(acknowledged)  # the 👀 comes before the review
        await self._post(pull.number, kept)
        return None

    async def _post(self, number: int, kept: KeptReview) -> None:
        await self.github.create_review(
            number, body=kept.body, event=kept.event, commit_id=kept.commit_id
        )
        self._finish(number, kept.commit_id, kept.text)
        log.info("reviewed pull request #%d at %s (%s)", number, kept.commit_id[:12], kept.event)

    async def _previous_head(self, item: WorkItem, head: str) -> str | None:
        """The last reviewed head, if the new head builds on it (else review the whole diff)."""
        reviewed = item.review.reviewed
        if not reviewed or reviewed[-1] == head:
            return None
        last = reviewed[-1]
        return last if await self.worktrees.is_ancestor(last, head) else None

    def _finish(self, number: int, head: str, body: str | None) -> None:
        facts = self._items.get(number).review
        facts = facts.but(
            unposted=None,
            forced=False,
            requested_head=_pin_left(facts),
            reviewed=(*facts.reviewed, head)[-MAX_REVIEWED:],
            last_review=facts.last_review if body is None else tail(body, MAX_LAST_REVIEW),
        )
        self._items.update(
            number,
            status=Status.DONE,
            head_sha=head,
            finished_at=self.clock.now(),
            last_error=None,
            facts=facts,
        )

    async def _failed(self, pull: PullRequest, error: str, *, transient: bool = False) -> None:
        """Retry later with a growing pause; after `MAX_ATTEMPTS`, say so once. A transient
        fault (GitHub or the network) never ends the retries."""
        item = self._items.get(pull.number)
        if not transient and item.review.unposted is not None:
            # GitHub refused the written review itself: the next attempt writes a new one.
            item = item.with_facts(unposted=None)
        error = self.redactor.redact(error)  # it is also posted, not only stored
        step = after_failure(
            transient=transient,
            failures=item.attempts - 1,
            limit=MAX_ATTEMPTS,
            now=self.clock.now(),
            backoff_s=RETRY_BACKOFF,
        )
        if not isinstance(step, GiveUp):
            log.warning("review of #%d failed (%s); retrying at %s", pull.number, error,
                        step.at.isoformat() if step.at else "the next poll")  # fmt: skip
            # GitHub's faults do not use up the attempts a failing review has.
            self.state.put(
                item.evolve(
                    status=Status.PENDING,
                    last_error=error,
                    attempts=step.failures,
                    facts=item.review.but(retry_at=step.at),
                )
            )
            return
        log.warning("review of #%d failed %d times: %s", pull.number, item.attempts, error)
        notice = text.failed_notice(
            pull.head_sha, item.attempts, error, self.settings.review_comment_trigger
        )
        self._outbox.queue(
            item.with_facts(forced=False, requested_head=_pin_left(item.review)),
            [outbox.comment(pull.number, notice)],
            status=Status.FAILED,
            last_error=error,
            finished_at=self.clock.now(),
        )
        await self._outbox.try_send(pull.number)


def _pin_left(facts: ReviewFacts) -> str | None:
    """The pinned head once an attempt ends: a request accepted while it ran keeps its own."""
    return facts.requested_head if facts.requested else None
