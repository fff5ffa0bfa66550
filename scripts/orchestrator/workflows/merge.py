"""Merge workflow: `/merge` by a writer tests the PR merged onto the latest base, then lands it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import checks
from .. import decide_merge as decide
from ..comment_feed import CommentFeed
from ..config import Settings
from ..daemon import Job
from ..github_http import Conflict, GitHubError, NotFound, NotMergeable
from ..github_watcher import GitHubClient
from ..models import WRITE_PERMISSIONS, Comment, PullRequest
from ..redact import Redactor
from ..state import StateStore, Status, WorkItem, WorkItemType, utcnow
from ..worktree_manager import GitError, WorktreeManager
from . import merge_text as text
from . import outbox
from .items import MAX_INFRASTRUCTURE_ERRORS, Items, settle_each

log = logging.getLogger(__name__)

CI_POLL = 15.0  # seconds between looks at pending GitHub CI
TRIGGER_KEY = "trigger_comment_id"
BASE_KEY = "base_ref"
HEAD_KEY = "requested_head"  # the head when the trigger was accepted
MERGING_KEY = "merging_head"  # the head the merge call was sent for


class Stop(Exception):
    """The attempt ends without a merge; `comment` says why on the pull request."""

    def __init__(self, comment: str) -> None:
        super().__init__(comment)
        self.comment = comment


@dataclass
class Tested:
    """What passed: the head, the base it was merged onto, the commands and CI."""

    head_sha: str
    base_sha: str
    results: list[checks.CommandResult]
    ci: str


@dataclass
class MergeWorkflow:
    """Turns `/merge` comments into merge items (a `WorkSource`) and merges them, one per base
    branch at a time, so each pull request is tested on the base the previous merge produced."""

    settings: Settings
    state: StateStore
    github: GitHubClient
    worktrees: WorktreeManager
    feed: CommentFeed
    name: str = "merge"
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)
    _redactor: Redactor = field(init=False)

    def __post_init__(self) -> None:
        self._redactor = Redactor([self.settings.token])
        self._items = Items(self.state, WorkItemType.MERGE, self._redactor)
        self._outbox = outbox.Outbox(self.state, WorkItemType.MERGE, self.github, self._redactor)
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
        waiting.sort(key=lambda i: (i.data.get(TRIGGER_KEY, 0), i.number))
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
            await self.github.create_comment(
                comment.issue_number,
                f"{text.PREFIX} `{trigger}` works on open pull requests only; nothing was done.",
            )
            self.feed.mark_handled(comment.id)
            return
        if await self.github.permission(comment.author) not in WRITE_PERMISSIONS:
            await self.github.create_comment(pull.number, text.not_allowed(comment.author, trigger))
            self.feed.mark_handled(comment.id)
            return
        await self.github.react_to_comment(comment.id, "eyes")
        known = self.state.get(WorkItemType.MERGE, pull.number)
        with self.state.batch():  # the item and the handled mark land in one write
            if known is None or known.status in (Status.DONE, Status.FAILED):
                base = known or WorkItem(type=WorkItemType.MERGE, number=pull.number)
                self.state.put(
                    base.evolve(
                        status=Status.PENDING,
                        attempts=base.attempts + 1,
                        last_error=None,
                        head_sha=None,
                        data={
                            TRIGGER_KEY: comment.id,
                            BASE_KEY: pull.base_ref,
                            # The head the writer saw (or could have): the only one to land.
                            HEAD_KEY: pull.head_sha,
                            "requested_by": comment.author,
                            **outbox.carried(known),
                        },
                    )
                )
            self.feed.mark_handled(comment.id)
        log.info("merge of #%d requested by %s", pull.number, comment.author)

    # -- one merge ----------------------------------------------------------------------------

    async def run(self, number: int) -> None:
        # The lock is taken before any await: jobs start in trigger order and must queue in
        # that order. It is the base recorded with the trigger; `_merge` stops on a retarget.
        base_ref = str(self._items.get(number).data.get(BASE_KEY, ""))
        async with self._locks.setdefault(base_ref, asyncio.Lock()):
            self._items.update(number, status=Status.IN_PROGRESS, started_at=utcnow())
            try:
                await self._merge(await self.github.get_pull(number))
            except Stop as stop:
                await self._stop(number, stop.comment)
            except (GitHubError, GitError) as exc:
                await self._infrastructure_error(number, exc)

    async def _merge(self, pull: PullRequest) -> None:
        item = self._items.get(pull.number)
        start = decide.on_start(
            pull,
            requested_base=item.data.get(BASE_KEY),
            requested_head=item.data.get(HEAD_KEY),
            merged_by_us=item.data.get("merge_sha") is not None
            or item.data.get(MERGING_KEY) == pull.head_sha,
        )
        match start.step:
            case decide.Start.ALREADY_MERGED:
                await self._end(
                    pull.number,
                    Status.DONE,
                    f"{text.PREFIX} nothing to do: this pull request is already merged.",
                )
                return
            case decide.Start.FINISH:
                await self._clean_up(pull, item)  # a restart after the merge itself
                return
            case decide.Start.STOP:
                assert start.stop is not None
                raise Stop(self._stop_text(start.stop, pull))
            case decide.Start.TEST:
                pass
        tested = await self._tested_before(pull, item) or await self._test(
            pull, item.data.get(HEAD_KEY)
        )
        # Before the call: a lost answer and an outage after it must not read as "merged by
        # someone else" on the next attempt.
        self._items.update(pull.number, head_sha=tested.head_sha)
        self._items.update_data(
            pull.number,
            **{MERGING_KEY: tested.head_sha},
            tested_base=tested.base_sha,
            results=[(r.command, r.duration_s) for r in tested.results],
            ci=tested.ci,
        )
        try:
            outcome = await self.github.merge_pull(
                pull.number,
                sha=tested.head_sha,
                title=f"{pull.title} (#{pull.number})",
                message=pull.body,
            )
            merge_sha = outcome.sha
        except GitHubError as exc:
            merge_sha = await self._merged_meanwhile(pull, tested, exc)
        self._items.update_data(pull.number, merge_sha=merge_sha)
        log.info("merged #%d as %s", pull.number, (merge_sha or "?")[:12])
        await self._clean_up(pull, self._items.get(pull.number), tested)

    async def _merged_meanwhile(self, pull: PullRequest, tested: Tested, exc: GitHubError) -> str:
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
                raise Stop(self._stop_text(after.stop, pull, tested.head_sha, exc.message)) from exc
            case decide.AfterRefusal.RETRY:
                raise exc

    def _stop_text(
        self, stop: decide.Stop, pull: PullRequest, head: str = "", message: str = ""
    ) -> str:
        trigger = self.settings.merge_comment_trigger
        match stop:
            case decide.Stop.CLOSED:
                return f"{text.PREFIX} not merged: the pull request is closed."
            case decide.Stop.DRAFT:
                return f"{text.PREFIX} not merged: the pull request is a draft."
            case decide.Stop.RETARGETED:
                return (
                    f"{text.PREFIX} not merged: the base branch changed to `{pull.base_ref}` "
                    f"after the request. {text.retry_hint(trigger)}"
                )
            case decide.Stop.BASE_KEPT_MOVING:
                return text.base_kept_moving(pull.base_ref, trigger)
            case decide.Stop.HEAD_MOVED:
                return text.head_moved(head, trigger)
            case decide.Stop.REFUSED:
                return text.refused(message, trigger)
            case decide.Stop.PUSHED_SINCE_REQUEST:
                return text.pushed_since_request(head or pull.head_sha, trigger)

    async def _tested_before(self, pull: PullRequest, item: WorkItem) -> Tested | None:
        """What an attempt stopped by a fault after its checks passed tested, if it still is
        what would land (same head, base not moved): the checks are not run again."""
        head, base = item.data.get(MERGING_KEY), item.data.get("tested_base")
        if head is None or head != pull.head_sha or base is None:
            return None
        if await self.worktrees.fetch_branch(pull.base_ref) != base:
            return None
        log.info("#%d: %s was tested on %s before a fault; merging it", pull.number,
                 head[:12], base[:12])  # fmt: skip
        ci = await self._ci(head, wait=True)  # still green: a re-run may have turned it
        return Tested(head, base, _stored_results(item.data.get("results", [])), ci)

    async def _test(self, pull: PullRequest, requested_head: str | None) -> Tested:
        """Test the head merged onto the base's tip; again if the base moved meanwhile."""
        rounds = 0
        while True:
            rounds += 1
            head = await self.worktrees.fetch_pull_head(pull.number)
            if decide.pushed_since_request(requested_head, head):
                raise Stop(self._stop_text(decide.Stop.PUSHED_SINCE_REQUEST, pull, head))
            base = await self.worktrees.fetch_branch(pull.base_ref)
            await self._ci(head, wait=False)  # red already: fail before the long part
            results = await self._run_commands(pull, head, base)
            ci = await self._ci(head, wait=True)
            base_now = await self.worktrees.fetch_branch(pull.base_ref)
            match decide.after_round(tested_base=base, base_now=base_now, rounds=rounds):
                case decide.Round.MERGE:
                    return Tested(head, base, results, ci)
                case decide.Round.RETEST:
                    log.info("#%d: %s moved during the checks; again", pull.number, pull.base_ref)
                case decide.Round.STOP:
                    raise Stop(self._stop_text(decide.Stop.BASE_KEPT_MOVING, pull))

    async def _run_commands(
        self, pull: PullRequest, head: str, base: str
    ) -> list[checks.CommandResult]:
        merged = await self.worktrees.merge_worktree(f"merge-{pull.number}", base, head)
        try:
            if merged.conflicts:
                raise Stop(
                    text.conflict(
                        pull.base_ref, base, merged.conflicts, self.settings.merge_comment_trigger
                    )
                )
            results = await checks.run_commands(
                self.settings.pre_merge_commands,
                cwd=merged.path,
                timeout=self.settings.check_timeout,
            )
        finally:
            await self.worktrees.remove(merged.path)
        failed = checks.first_failure(results)
        if failed is not None:
            report = checks.format_failure(failed, secrets=[self.settings.token])
            raise Stop(f"{text.PREFIX} not merged.\n\n{report}")
        return results

    async def _ci(self, sha: str, *, wait: bool) -> str:
        """GitHub CI of `sha`: returns a description when green, stops the merge when red
        (or still pending after `CI_WAIT_TIMEOUT` when `wait`)."""
        started = time.monotonic()
        timeout = self.settings.ci_wait_timeout
        while True:
            result = checks.evaluate_ci(
                await self.github.check_runs(sha), await self.github.statuses(sha)
            )
            waited = time.monotonic() - started
            match decide.on_ci(result.verdict, wait=wait, waited_s=waited, timeout_s=timeout):
                case decide.Ci.RED:
                    raise Stop(f"{text.PREFIX} {checks.format_ci_failure(result, sha)}")
                case decide.Ci.TIMED_OUT:
                    report = checks.format_ci_pending(result, sha, waited_s=waited)
                    raise Stop(f"{text.PREFIX} {report}")
                case decide.Ci.PASSED:
                    return "passed"
                case decide.Ci.PENDING:
                    return "pending"
                case decide.Ci.WAIT:
                    await asyncio.sleep(min(CI_POLL, timeout - waited))

    async def _clean_up(
        self, pull: PullRequest, item: WorkItem, tested: Tested | None = None
    ) -> None:
        """Delete the branch (not a fork's), close linked issues, post the one summary."""
        default = await self.github.default_branch()
        if not pull.is_fork and pull.head_ref != default:
            others = await self.github.list_open_pulls()
            if any(p.base_ref == pull.head_ref for p in others):
                log.info("keeping %s: other pull requests target it", pull.head_ref)
            else:
                try:
                    await self.github.delete_branch(pull.head_ref)
                except GitHubError as exc:
                    if exc.status not in (404, 422):  # already gone
                        raise
        closed = []
        # Like GitHub: closing keywords act only on merges into the default branch.
        linked = text.linked_issues(pull.body) if pull.base_ref == default else []
        for number in linked:
            try:
                issue = await self.github.get_issue(number)
            except NotFound:
                continue
            if issue.state == "open" and not issue.is_pull_request:
                await self.github.close_issue(number)
                closed.append(number)
        data = item.data
        results = tested.results if tested else _stored_results(data.get("results", []))
        body = text.summary(
            head_sha=tested.head_sha if tested else (item.head_sha or ""),
            base_ref=pull.base_ref,
            base_sha=tested.base_sha if tested else str(data.get("tested_base", "")),
            merge_sha=data.get("merge_sha"),
            results=results,
            ci=str(data.get("ci", "passed")),
            closed=closed,
        )
        await self._end(pull.number, Status.DONE, body)

    # -- endings ------------------------------------------------------------------------------

    async def _stop(self, number: int, comment: str) -> None:
        log.warning("merge of #%d stopped: %s", number, comment.splitlines()[0])
        await self._end(
            number, Status.FAILED, comment, last_error=self._redactor.redact(comment[:500])
        )

    async def _end(self, number: int, status: Status, comment: str, **changes: object) -> None:
        """Record the outcome and the comment that tells it in one state write, then post the
        comment: a fault delays it to a later cycle, never loses or doubles it."""
        item = self._items.get(number)
        writes = [outbox.comment(number, comment)]
        self._outbox.queue(item, writes, status=status, finished_at=utcnow(), **changes)
        await self._outbox.try_send(number)

    async def _infrastructure_error(self, number: int, exc: Exception) -> None:
        if self._items.retry_later(number, exc):
            return
        await self._stop(
            number,
            f"{text.PREFIX} not merged: the daemon hit an error {MAX_INFRASTRUCTURE_ERRORS} "
            f"times:\n\n```\n{exc}\n```\n\n"
            f"{text.retry_hint(self.settings.merge_comment_trigger)}",
        )


def _stored_results(rows: list[list[object]]) -> list[checks.CommandResult]:
    """The passed commands recorded before a restart, for the summary."""
    return [
        checks.CommandResult(str(cmd), 0, False, float(str(duration)), 0.0, "")
        for cmd, duration in rows
    ]
