"""Merge workflow: `/merge` by a writer tests the PR merged onto the latest base, then lands it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Settings
from ..core import ci as ci_rules
from ..core import decide_merge as decide
from ..core import merge_text as text
from ..core.errors import Conflict, GitError, GitHubError, NotFound, NotMergeable
from ..core.models import CommandResult, Comment, PullRequest
from ..core.redact import Redactor
from ..core.text import cut
from ..core.triggers import may_command
from ..core.work import MergeFacts, PassedCommand, Status, WorkItem, WorkItemType
from ..ports import Checks, Clock, Git, GitHub, Job, StateStore
from . import outbox
from .branch_work import BranchWork
from .commands import acknowledge_soon, authorised, pin_head, settle_each
from .comment_feed import CommentFeed
from .items import MAX_INFRASTRUCTURE_ERRORS, Items
from .merge_cleanup import clean_up
from .merge_fix import MergeFixes
from .pull_heads import PullHeads

log = logging.getLogger(__name__)

CI_POLL = 15.0  # seconds between looks at pending GitHub CI
MAX_STORED_ERROR = 500  # characters of a stop's comment kept as the item's last error


@dataclass(frozen=True)
class Stopped:
    """The attempt ends without a merge; `comment` says why on the pull request. `failure`
    is the report of a failed check or CI, which Claude may fix on the daemon's own branch."""

    comment: str
    failure: str | None = None


@dataclass(frozen=True)
class Tested:
    """What passed: the head, the base it was merged onto, the commands and CI."""

    head_sha: str
    base_sha: str
    results: tuple[PassedCommand, ...]
    ci: str


@dataclass
class MergeWorkflow:
    """Turns `/merge` comments into merge items and merges them, one per base branch at a
    time, so each pull request is tested on the base the previous merge produced."""

    settings: Settings
    state: StateStore
    github: GitHub
    worktrees: Git
    checks: Checks
    feed: CommentFeed
    heads: PullHeads
    redactor: Redactor
    clock: Clock
    name: str = "merge"
    fixer: BranchWork | None = None  # Claude's fixes for failing checks (AUTO_FIX_ATTEMPTS)
    # One lock per base branch, kept by whoever rebuilds the workflow (a repository's settings
    # changed) so a merge running under the old one still holds the base.
    base_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._items = Items(self.state, WorkItemType.MERGE, self.redactor)
        self._fixes = (
            MergeFixes(self.settings, self.github, self.fixer, self._items, self.clock)
            if self.fixer is not None
            else None
        )
        self._outbox = outbox.Outbox(self.state, WorkItemType.MERGE, self.github, self.redactor)
        if self.settings.auto_merge_enabled:
            self.feed.watch(self.settings.merge_comment_trigger)

    # -- detection ----------------------------------------------------------------------------

    async def poll(self) -> Sequence[Job]:
        await self._outbox.send_all()  # summaries and refusals a fault held back
        if not self.settings.auto_merge_enabled:
            return []  # triggers are ignored; the feed moves past them
        await settle_each(self.feed, self.settings.merge_comment_trigger, self._accept)
        items = self.state.items(WorkItemType.MERGE)
        waiting = [i for i in items if i.status in (Status.PENDING, Status.IN_PROGRESS)]
        # In trigger order, so the per-base lock (first come, first served) keeps that order.
        waiting.sort(key=lambda i: (i.merge.trigger_comment_id, i.number))
        return [
            Job(WorkItemType.MERGE, i.number, functools.partial(self.run, i.number))
            for i in waiting
        ]

    async def _accept(self, comment: Comment) -> None:
        trigger = self.settings.merge_comment_trigger
        try:
            pull: PullRequest | None = await self.github.get_pull(comment.issue_number)
        except NotFound:
            pull = None  # a comment on an issue
        if pull is None or pull.state != "open":
            # Answered only for a writer: anyone's command on any issue must not buy a reply.
            if may_command(await self.github.permission(comment.author)):
                await self.github.create_comment(comment.issue_number, text.not_a_pull(trigger))
            self.feed.mark_handled(comment.id)
            return
        if not await authorised(self.github, self.feed, self.state, comment, trigger, "merge"):
            return
        pinned = await pin_head(self.github, self.feed, self.heads, comment, pull, trigger, "merge")
        if pinned is None:
            return
        known = self.state.get(WorkItemType.MERGE, pull.number)
        with self.state.batch():  # the item and the handled mark land in one write
            if known is not None and known.status is Status.PENDING:
                # Asked again before the attempt ran: the head the writer sees now is what
                # lands. The base stays the one first asked for: a retarget still stops.
                facts = known.merge.but(
                    requested_head=pinned,
                    requested_by=comment.author,
                    rerequested_head=None,
                )
                self.state.put(known.evolve(facts=facts))
            elif known is not None and known.status is Status.IN_PROGRESS:
                if pinned != known.merge.requested_head:  # the next attempt's head
                    self.state.put(known.with_facts(rerequested_head=pinned))
            else:
                base = known or WorkItem(type=WorkItemType.MERGE, number=pull.number)
                facts = MergeFacts(
                    trigger_comment_id=comment.id,
                    requested_by=comment.author,
                    base_ref=pull.base_ref,
                    # The head the writer saw: the only one to land.
                    requested_head=pinned,
                )
                self.state.put(
                    base.evolve(
                        status=Status.PENDING,
                        attempts=base.attempts + 1,
                        errors=0,
                        last_error=None,
                        head_sha=None,
                        facts=facts,
                    )
                )
            self.feed.mark_handled(comment.id)
        log.info("merge of #%d requested by %s", pull.number, comment.author)
        acknowledge_soon(self.github, comment, "merge")

    # -- one merge ----------------------------------------------------------------------------

    async def run(self, number: int) -> None:
        # The lock is taken before any await: jobs start in trigger order and must queue in
        # that order. It is the base recorded with the trigger; `_merge` stops on a retarget.
        base_ref = self._items.get(number).merge.base_ref or ""
        lock = self.base_locks.setdefault(base_ref, asyncio.Lock())
        while True:
            async with lock:
                self._items.update(number, status=Status.IN_PROGRESS, started_at=self.clock.now())
                try:
                    pull = await self.github.get_pull(number)
                    stopped = await self._merge(pull)
                except (GitHubError, GitError) as exc:
                    await self._infrastructure_error(number, exc)
                    return
            if stopped is None:
                return
            if stopped.failure is not None and self._fixes is not None:
                # Claude's fix runs outside the lock: merges into the same base go on, and the
                # fix is then tested on the base they made.
                try:
                    fixed = await self._fixes.fix(pull, stopped.comment, stopped.failure)
                except (GitHubError, GitError) as exc:
                    await self._infrastructure_error(number, exc)
                    return
                if not isinstance(fixed, str):
                    continue  # test the fix, in the queue again
                stopped = Stopped(fixed)
            await self._stop(number, stopped.comment)
            return

    async def _merge(self, pull: PullRequest) -> Stopped | None:
        if self._fixes is not None:
            self._fixes.adopt(pull)
        facts = self._items.get(pull.number).merge
        if facts.rerequested_head is not None:
            # A writer asked again, for a newer head, while an earlier attempt ran (and then
            # stopped, met a fault or was interrupted): the newest request is the one served.
            facts = facts.but(requested_head=facts.rerequested_head, rerequested_head=None)
            self._items.update(pull.number, facts=facts)
        start = decide.on_start(
            pull,
            requested_base=facts.base_ref,
            requested_head=facts.requested_head,
            merged_by_us=decide.merged_by_us(facts, pull.head_sha),
        )
        match start.step:
            case decide.Start.ALREADY_MERGED:
                await self._end(pull.number, Status.DONE, text.ALREADY_MERGED)
                return None
            case decide.Start.FINISH:
                await self._clean_up(pull)  # a restart after the merge itself
                return None
            case decide.Start.STOP:
                assert start.stop is not None
                return self._stopped(start.stop, pull)
            case decide.Start.TEST:
                pass
        tested = await self._tested_before(pull, facts) or await self._test(pull, facts)
        if isinstance(tested, Stopped):
            return tested
        # Before the call: a lost answer and an outage after it must not read as "merged by
        # someone else" on the next attempt.
        self._items.update(
            pull.number,
            head_sha=tested.head_sha,
            facts=self._items.get(pull.number).merge.but(  # fresh: a re-request may be in it
                merging_head=tested.head_sha,
                tested_base=tested.base_sha,
                results=tested.results,
                ci=tested.ci,
            ),
        )
        try:
            outcome = await self.github.merge_pull(
                pull.number,
                sha=tested.head_sha,
                title=f"{pull.title} (#{pull.number})",
                message=pull.body,
            )
            merge_sha: str | None = outcome.sha
        except GitHubError as exc:
            landed = await self._merged_meanwhile(pull, tested, exc)
            if isinstance(landed, Stopped):
                return landed
            merge_sha = landed
        self._items.update_facts(pull.number, merge_sha=merge_sha)
        log.info("merged #%d as %s", pull.number, (merge_sha or "?")[:12])
        await self._clean_up(pull)
        return None

    async def _merged_meanwhile(
        self, pull: PullRequest, tested: Tested, exc: GitHubError
    ) -> str | Stopped:
        """After a refused or unanswered merge: did our merge land anyway (a lost answer)?"""
        current = await self.github.get_pull(pull.number)
        refusal = (
            decide.Refusal.CONFLICT
            if isinstance(exc, Conflict)
            else decide.Refusal.NOT_MERGEABLE
            if isinstance(exc, NotMergeable)
            else decide.Refusal.OTHER
        )
        after = decide.after_refusal(
            refusal,
            merged_now=current.merged,
            head_now=current.head_sha,
            tested_head=tested.head_sha,
        )
        match after.step:
            case decide.AfterRefusal.MERGED:
                return await self.worktrees.fetch_branch(pull.base_ref)
            case decide.AfterRefusal.STOP:
                assert after.stop is not None
                return self._stopped(after.stop, pull, tested.head_sha, exc.message)
            case decide.AfterRefusal.RETRY:
                raise exc

    def _stopped(
        self, stop: decide.Stop, pull: PullRequest, head: str = "", message: str = ""
    ) -> Stopped:
        return Stopped(
            text.stop_text(
                stop,
                base_ref=pull.base_ref,
                head=head or pull.head_sha,
                message=message,
                trigger=self.settings.merge_comment_trigger,
            )
        )

    async def _tested_before(self, pull: PullRequest, facts: MergeFacts) -> Tested | Stopped | None:
        """What an attempt stopped by a fault after its checks passed tested, if it still is
        what would land (same head, base not moved): the checks are not run again."""
        if facts.merging_head != pull.head_sha or facts.tested_base is None:
            return None
        base_tip = await self.worktrees.fetch_branch(pull.base_ref)
        if not decide.already_tested(facts, head=pull.head_sha, base_tip=base_tip):
            return None
        log.info("#%d: %s was tested on %s before a fault; merging it", pull.number,
                 pull.head_sha[:12], base_tip[:12])  # fmt: skip
        ci = await self._ci(pull.head_sha, wait=True)  # still green: a re-run may have turned it
        if isinstance(ci, Stopped):
            return ci
        return Tested(pull.head_sha, base_tip, facts.results, ci)

    async def _test(self, pull: PullRequest, facts: MergeFacts) -> Tested | Stopped:
        """Test the head merged onto the base's tip; again if the base moved meanwhile."""
        rounds = 0
        while True:
            rounds += 1
            head = await self.worktrees.fetch_pull_head(pull.number)
            if decide.pushed_since_request(facts.requested_head, head):
                return self._stopped(decide.Stop.PUSHED_SINCE_REQUEST, pull, head)
            base = await self.worktrees.fetch_branch(pull.base_ref)
            early = await self._ci(head, wait=False)  # red already: fail before the long part
            if isinstance(early, Stopped):
                return early
            results = await self._run_commands(pull, head, base)
            if isinstance(results, Stopped):
                return results
            ci = await self._ci(head, wait=True)
            if isinstance(ci, Stopped):
                return ci
            base_now = await self.worktrees.fetch_branch(pull.base_ref)
            match decide.after_round(tested_base=base, base_now=base_now, rounds=rounds):
                case decide.Round.MERGE:
                    passed = tuple(PassedCommand(command=r.command, duration_s=r.duration_s)
                                   for r in results)  # fmt: skip
                    return Tested(head, base, passed, ci)
                case decide.Round.RETEST:
                    log.info("#%d: %s moved during the checks; again", pull.number, pull.base_ref)
                case decide.Round.STOP:
                    return self._stopped(decide.Stop.BASE_KEPT_MOVING, pull)

    async def _run_commands(
        self, pull: PullRequest, head: str, base: str
    ) -> list[CommandResult] | Stopped:
        merged = await self.worktrees.merge_worktree(f"merge-{pull.number}", base, head)
        try:
            if merged.conflicts:
                trigger = self.settings.merge_comment_trigger
                return Stopped(text.conflict(pull.base_ref, base, merged.conflicts, trigger))
            results = await self.checks.run(
                self.settings.pre_merge_commands,
                cwd=merged.path,
                timeout=self.settings.check_timeout,
            )
        finally:
            await self.worktrees.remove(merged.path)
        failed = ci_rules.first_failure(results)
        if failed is not None:
            report = ci_rules.format_failure(failed, self.redactor)
            return Stopped(text.check_failed(report), failure=report)
        return results

    async def _ci(self, sha: str, *, wait: bool) -> str | Stopped:
        """GitHub CI of `sha`: a description when green (or pending, without `wait`); a stop
        when red, or still pending after `CI_WAIT_TIMEOUT` with `wait`."""
        started = self.clock.monotonic()
        timeout = self.settings.ci_wait_timeout
        while True:
            runs = await self.github.check_runs(sha)
            result = ci_rules.evaluate_ci(runs, await self.github.statuses(sha))
            waited = self.clock.monotonic() - started
            match decide.on_ci(result.verdict, wait=wait, waited_s=waited, timeout_s=timeout):
                case decide.Ci.RED:
                    report = ci_rules.format_ci_failure(result, sha)
                    said = ci_rules.failing_outputs(result, runs)  # for a fix, not the comment
                    failure = f"{report}\n\n{said}" if said else report
                    return Stopped(text.ci_stopped(report), failure=failure)
                case decide.Ci.TIMED_OUT:
                    report = ci_rules.format_ci_pending(result, sha, waited_s=waited)
                    return Stopped(text.ci_stopped(report))
                case decide.Ci.PASSED:
                    return "passed"
                case decide.Ci.PENDING:
                    return "pending"
                case decide.Ci.WAIT:
                    await self.clock.sleep(min(CI_POLL, timeout - waited))

    async def _clean_up(self, pull: PullRequest) -> None:
        """Delete the branch, close linked issues, post the one summary."""
        closed = await clean_up(self.github, pull)
        item = self._items.get(pull.number)
        facts = item.merge
        body = text.summary(
            head_sha=item.head_sha or "",
            base_ref=pull.base_ref,
            base_sha=facts.tested_base or "",
            merge_sha=facts.merge_sha,
            results=[_passed(r) for r in facts.results],
            ci=facts.ci or "passed",
            closed=closed,
        )
        await self._end(pull.number, Status.DONE, body)

    # -- endings ------------------------------------------------------------------------------

    async def _stop(self, number: int, comment: str) -> None:
        log.warning("merge of #%d stopped: %s", number, comment.splitlines()[0])
        error = self.redactor.redact(cut(comment, MAX_STORED_ERROR, ""))
        again = self._items.get(number).merge.rerequested_head
        if again is None:
            await self._end(number, Status.FAILED, comment, last_error=error)
            return
        # A writer asked again for a newer head while this attempt ran: say why this one
        # stopped, and test that head next, as a new attempt (`_merge` takes it up).
        log.info("merge of #%d asked again for %s; testing it next", number, again[:12])
        item = self._items.get(number)
        await self._end(
            number, Status.PENDING, comment, last_error=error, errors=0, attempts=item.attempts + 1
        )

    async def _end(self, number: int, status: Status, comment: str, **changes: object) -> None:
        """Record the outcome and the comment that tells it in one state write, then post the
        comment: a fault delays it to a later cycle, never loses or doubles it."""
        item = self._items.get(number)
        writes = [outbox.comment(number, comment)]
        self._outbox.queue(item, writes, status=status, finished_at=self.clock.now(), **changes)
        await self._outbox.try_send(number)

    async def _infrastructure_error(self, number: int, exc: Exception) -> None:
        if self._items.retry_later(number, exc):
            return
        trigger = self.settings.merge_comment_trigger
        await self._stop(number, text.gave_up(str(exc), MAX_INFRASTRUCTURE_ERRORS, trigger))


def _passed(command: PassedCommand) -> CommandResult:
    """A passed command recorded before a restart, for the summary."""
    return CommandResult(command.command, 0, False, command.duration_s, 0.0, "")
