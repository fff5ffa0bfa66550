"""Review workflow: one read-only Claude review per new head of every open pull request."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from ..claude_runner import READ_ONLY_TOOLS, ClaudeRequest, ClaudeResult, ClaudeRunner
from ..comment_feed import CommentFeed
from ..config import Settings
from ..daemon import Job
from ..decide import (
    BASELINE_KEY,
    RETRY_AT_KEY,
    REVIEWED_KEY,
    ReviewPlan,
    ReviewStep,
    plan_reviews,
)
from ..github_http import GitHubError
from ..github_watcher import GitHubClient
from ..guidelines import guidelines, repo_guidelines_path
from ..models import WRITE_PERMISSIONS, Comment, PullRequest
from ..redact import Redactor
from ..state import StateStore, Status, WorkItem, WorkItemType, utcnow
from ..worktree_manager import GitError, WorktreeManager
from . import outbox
from .items import Items, is_transient, settle_each
from .review_text import choose_event, review_body, review_prompt

log = logging.getLogger(__name__)

BASELINE_META = "review_baseline_at"  # when the open pull requests were first remembered
MAX_ATTEMPTS = 3
RETRY_BACKOFF = 60.0  # seconds before the second attempt at a head; doubled for the third
LAST_BODY_KEY = "last_review"  # in WorkItem.data: the last review, so the next one adds to it
REQUESTED_KEY = "requested"  # in WorkItem.data: a writer asked for a review, not yet started
FORCED_KEY = "forced"  # in WorkItem.data: this attempt answers a writer's request
KEPT_KEY = "unposted_review"  # in WorkItem.data: a written review GitHub has not taken yet


@dataclass
class ReviewWorkflow:
    """Detects pull requests to review (a `WorkSource`) and reviews them, one job per head."""

    settings: Settings
    state: StateStore
    github: GitHubClient
    worktrees: WorktreeManager
    claude: ClaudeRunner
    feed: CommentFeed
    name: str = "review"
    _redactor: Redactor = field(init=False)

    def __post_init__(self) -> None:
        self._redactor = Redactor([self.settings.token])
        self._items = Items(self.state, WorkItemType.PR_REVIEW, self._redactor)
        self.feed.watch(self.settings.review_comment_trigger)
        self._outbox = outbox.Outbox(
            self.state, WorkItemType.PR_REVIEW, self.github, self._redactor
        )

    async def poll(self) -> Sequence[Job]:
        await self._outbox.send_all()  # failure comments a fault held back
        pulls = await self.github.list_open_pulls()
        requested = await self._review_requests({p.number for p in pulls})
        items = {i.number: i for i in self.state.items(WorkItemType.PR_REVIEW)}
        baseline_taken = self.state.get_meta(BASELINE_META) is not None
        plans = plan_reviews(
            pulls,
            items,
            baseline_taken=baseline_taken,
            review_on_push=self.settings.review_on_push,
            requested=requested,
            now=utcnow(),
        )
        jobs = []
        with self.state.batch():
            for plan in plans:
                if plan.step is ReviewStep.BASELINE:
                    self._remember(plan)
                else:
                    run = functools.partial(self.run, plan.number, plan.step)
                    jobs.append(Job(WorkItemType.PR_REVIEW, plan.number, run))
            if not baseline_taken:
                self.state.set_meta(BASELINE_META, utcnow().isoformat())
                log.info("remembered %d open pull request(s); new commits get reviews", len(plans))
        return jobs

    def _remember(self, plan: ReviewPlan) -> None:
        self.state.put(
            WorkItem(
                type=WorkItemType.PR_REVIEW,
                number=plan.number,
                status=Status.DONE,
                head_sha=plan.head_sha,
                data={BASELINE_KEY: True},
            )
        )

    async def _review_requests(self, open_numbers: set[int]) -> set[int]:
        """Pull requests whose review was asked for by a writer; readers get one reply.

        A writer's request is stored in the item in the same write that settles the comment,
        so no fault between here and the posted review can lose it.
        """

        async def accept(comment: Comment) -> None:
            number = comment.issue_number
            if number not in open_numbers:
                self.feed.mark_handled(comment.id)  # an issue, or a closed pull request
                return
            if await self.github.permission(comment.author) not in WRITE_PERMISSIONS:
                await self.github.create_comment(
                    number,
                    f"@{comment.author} only people with write access to this repository can "
                    f"ask for a review with `{self.settings.review_comment_trigger}`.",
                )
                self.feed.mark_handled(comment.id)
                return
            item = self.state.get(WorkItemType.PR_REVIEW, number) or WorkItem(
                type=WorkItemType.PR_REVIEW, number=number, status=Status.DONE
            )
            with self.state.batch():
                self.state.put(item.evolve(data={**item.data, REQUESTED_KEY: True}))
                self.feed.mark_handled(comment.id)
            try:
                await self.github.react_to_comment(comment.id, "eyes")
            except GitHubError as exc:  # only an acknowledgement: the review goes ahead
                log.warning("could not acknowledge %s on #%d: %s", "review", number, exc)

        await settle_each(self.feed, self.settings.review_comment_trigger, accept)
        return {
            i.number
            for i in self.state.items(WorkItemType.PR_REVIEW)
            if i.data.get(REQUESTED_KEY) and i.number in open_numbers
        }

    async def run(self, number: int, step: ReviewStep) -> None:
        try:
            pull = await self.github.get_pull(number)
        except GitHubError as exc:
            # Nothing recorded yet: the next poll plans this pull request (and a writer's
            # request for it) again.
            log.warning("pull request #%d not read, review planned again: %s", number, exc)
            return
        item = self.state.get(WorkItemType.PR_REVIEW, number) or WorkItem(
            type=WorkItemType.PR_REVIEW, number=number
        )
        if pull.state != "open":
            return
        new_head = item.head_sha != pull.head_sha or step is ReviewStep.REVIEW
        attempts = 1 if new_head else item.attempts + 1
        # A writer's request is taken up here; its retries keep it as `forced`.
        forced = bool(item.data.get(REQUESTED_KEY) or item.data.get(FORCED_KEY))
        dropped = (RETRY_AT_KEY, BASELINE_KEY, REQUESTED_KEY, FORCED_KEY)
        data = {k: v for k, v in item.data.items() if k not in dropped}
        item = item.evolve(
            status=Status.IN_PROGRESS,
            head_sha=pull.head_sha,
            attempts=attempts,
            started_at=utcnow(),
            data={**data, FORCED_KEY: True} if forced else data,
        )
        self.state.put(item)
        try:
            if not forced and await self._already_reviewed(pull):
                self._finish(number, pull.head_sha, None)
                return
            if attempts == 1:
                await self._acknowledge(number)
            if not await self._post_kept_review(pull, item):
                await self._review(pull, item)
        except (GitHubError, GitError) as exc:
            await self._failed(pull, str(exc), transient=is_transient(exc))
        except ReviewFailed as exc:
            await self._failed(pull, str(exc))

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
        return any(r.author == login and r.commit_id == pull.head_sha for r in reviews)

    async def _review(self, pull: PullRequest, item: WorkItem) -> None:
        head = await self.worktrees.fetch_pull_head(pull.number)  # works for forks too
        base = await self.worktrees.fetch_branch(pull.base_ref)
        previous = await self._previous_head(item, head)
        worktree = await self.worktrees.detached_worktree(f"pr-review-{pull.number}", head)
        try:
            diff = await self.worktrees.diff(previous or base, head, cwd=worktree)
            request = ClaudeRequest(
                prompt=review_prompt(
                    pull, diff, previous=previous, last_review=item.data.get(LAST_BODY_KEY)
                ),
                cwd=worktree,
                guidelines=await self._guidelines(base),
                tools=READ_ONLY_TOOLS,
                max_turns=self.settings.max_turns,
                timeout=self.settings.claude_timeout,
                setting_sources=(),  # the checkout is untrusted: no project settings or hooks
            )
            result = await self.claude.run(request)
        finally:
            await self.worktrees.remove(worktree)
        if not result.ok:
            raise ReviewFailed(result.error or "Claude failed")
        login = await self.github.login()
        event = choose_event(result.text, self.settings.review_event, own=pull.author == login)
        body = self._redactor.redact(review_body(result, head, previous))
        # Kept until GitHub takes it: a fault while posting costs a retry, not a new run.
        kept = {"body": body, "event": event, "commit_id": head,
                "text": self._redactor.redact(result.text)}  # fmt: skip
        self._items.update(
            pull.number,
            cost_usd=result.cost_usd,
            turns=result.turns,
            duration_s=round(result.duration_s, 1),
            data={**self._items.get(pull.number).data, KEPT_KEY: kept},
        )
        await self._post(pull.number, kept)

    async def _post_kept_review(self, pull: PullRequest, item: WorkItem) -> bool:
        """Post the review an earlier attempt wrote for this head, if a fault kept it back."""
        kept = item.data.get(KEPT_KEY)
        if not kept or kept.get("commit_id") != pull.head_sha:
            return False
        log.info("posting the review of #%d written before a fault", pull.number)
        await self._post(pull.number, kept)
        return True

    async def _post(self, number: int, kept: dict[str, str]) -> None:
        head = kept["commit_id"]
        await self.github.create_review(
            number, body=kept["body"], event=kept["event"], commit_id=head
        )
        self._finish(number, head, kept["text"])
        log.info("reviewed pull request #%d at %s (%s)", number, head[:12], kept["event"])

    async def _previous_head(self, item: WorkItem, head: str) -> str | None:
        """The last reviewed head, if the new head builds on it (else review the whole diff)."""
        reviewed = item.data.get(REVIEWED_KEY) or []
        if not reviewed or reviewed[-1] == head:
            return None
        last = str(reviewed[-1])
        return last if await self.worktrees.is_ancestor(last, head) else None

    async def _guidelines(self, base_sha: str) -> str:
        """review.md plus the repository's own, read from the base branch, never the PR."""
        path = repo_guidelines_path("review")
        custom = await self.worktrees.git("show", f"{base_sha}:{path}", check=False)
        return guidelines("review", custom)

    def _finish(
        self, number: int, head: str, body: str | None, result: ClaudeResult | None = None
    ) -> None:
        done_with = (KEPT_KEY, FORCED_KEY)
        data = {k: v for k, v in self._items.get(number).data.items() if k not in done_with}
        reviewed = [*(data.get(REVIEWED_KEY) or []), head][-20:]
        data = {**data, REVIEWED_KEY: reviewed}
        if body is not None:
            data[LAST_BODY_KEY] = body[-20_000:]
        changes: dict[str, object] = {
            "status": Status.DONE,
            "head_sha": head,
            "finished_at": utcnow(),
            "last_error": None,
            "data": data,
        }
        if result is not None:
            changes.update(
                cost_usd=result.cost_usd, turns=result.turns, duration_s=round(result.duration_s, 1)
            )
        self._items.update(number, **changes)

    async def _failed(self, pull: PullRequest, error: str, *, transient: bool = False) -> None:
        """Retry later with a growing pause; after `MAX_ATTEMPTS`, say so once. A transient
        fault (GitHub or the network) never ends the retries."""
        if not transient and KEPT_KEY in self._items.get(pull.number).data:
            # GitHub refused the written review itself: the next attempt writes a new one.
            item = self._items.get(pull.number)
            rest = {k: v for k, v in item.data.items() if k != KEPT_KEY}
            self.state.put(item.evolve(data=rest))
        item = self._items.get(pull.number)
        error = self._redactor.redact(error)  # it is also posted, not only stored
        if item.attempts < MAX_ATTEMPTS or transient:
            delay = RETRY_BACKOFF * 2 ** (min(item.attempts, MAX_ATTEMPTS) - 1)
            retry_at = (utcnow() + timedelta(seconds=delay)).isoformat()
            log.warning("review of #%d failed (%s); retrying in %gs", pull.number, error, delay)
            # GitHub's faults do not use up the attempts a failing review has.
            attempts = item.attempts - 1 if transient else item.attempts
            with self.state.batch():
                self._items.update(
                    pull.number, status=Status.PENDING, last_error=error, attempts=attempts
                )
                self._items.update_data(pull.number, **{RETRY_AT_KEY: retry_at})
            return
        log.warning("review of #%d failed %d times: %s", pull.number, item.attempts, error)
        notice = outbox.comment(
            pull.number,
            f"**Claude Orchestrator**: the automatic review of {pull.head_sha[:12]} failed "
            f"{item.attempts} times: {error}.\n\nA new push is reviewed again; a user with "
            f"write access can also comment `{self.settings.review_comment_trigger}`.",
        )
        data = {k: v for k, v in item.data.items() if k != FORCED_KEY}
        self._outbox.queue(
            item.evolve(data=data),
            [notice],
            status=Status.FAILED,
            last_error=error,
            finished_at=utcnow(),
        )
        await self._outbox.try_send(pull.number)


class ReviewFailed(Exception):
    """Claude could not produce a review."""
