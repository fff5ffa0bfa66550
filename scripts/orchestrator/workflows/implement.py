"""Implement workflow: an issue labelled ready becomes a branch, a commit and a pull request."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..core import implement_text as text
from ..core.decide_implement import (
    IssueStep,
    needs_label_count,
    plan_issues,
    sensitive_paths,
)
from ..core.errors import GitError, GitHubError, is_transient
from ..core.models import (
    IMPLEMENT_TOOLS,
    ClaudeRequest,
    ClaudeResult,
    Issue,
    PullRequest,
)
from ..core.redact import Redactor
from ..core.triggers import may_command
from ..core.work import IssueFacts, Status, WorkItem, WorkItemType, Write
from ..guidelines import guidelines, repo_guidelines_path
from ..ports import Claude, Clock, Git, GitHub, Job, SecretScan, StateStore
from . import outbox
from .commands import join
from .implement_task import LabelledIssue, Refused
from .implement_told import Failed, IssueTold
from .items import MAX_INFRASTRUCTURE_ERRORS, Items

log = logging.getLogger(__name__)


NO_CHANGES = "Claude made no changes"
# The limits that stop a run part way: what it made so far is committed and pushed.
KEPT_AT = frozenset({"budget", "turns", "time", "day_rest"})
# Times an attempt stopped by the day's budget goes on by itself the next day; then a person
# decides (a task that never ends must not spend every day's budget).
MAX_CONTINUATIONS = 2


def branch_for(number: int) -> str:
    return f"feature/issue-{number}"


class DaySpent(Exception):
    """The day's budget left nothing for the run: it never started."""


@dataclass
class ImplementWorkflow:
    """Detects ready issues and implements them, one job per issue."""

    settings: Settings
    state: StateStore
    github: GitHub
    worktrees: Git
    claude: Claude
    scanner: SecretScan
    redactor: Redactor
    clock: Clock
    name: str = "implement"

    def __post_init__(self) -> None:
        self._items = Items(self.state, WorkItemType.ISSUE, self.redactor)
        # Ready labels removed since the last plan: the listing it reads may predate them.
        self._removed: set[int] = set()
        self._outbox = outbox.Outbox(self.state, WorkItemType.ISSUE, self.github, self.redactor,
                                     landed=self._landed)  # fmt: skip
        self._labelled = LabelledIssue(self.settings, self.github, self._items)
        self._told = IssueTold(self.settings, self.state, self.github, self._items, self._outbox,
                               self.redactor, self.clock)  # fmt: skip

    async def poll(self) -> Sequence[Job]:
        await self._outbox.send_all()  # the label changes and comments a fault held back
        label = self.settings.ready_label
        issues = [i for i in await self.github.list_open_issues(label) if not i.is_pull_request]
        items = {i.number: i for i in self.state.items(WorkItemType.ISSUE)}
        label_events = {
            i.number: await self.github.count_labelled(i.number, label)
            for i in issues
            if needs_label_count(items.get(i.number))
        }
        jobs = []
        removed, self._removed = self._removed, set()  # no await from here to the plan
        items = {i.number: i for i in self.state.items(WorkItemType.ISSUE)}
        for plan in plan_issues(issues, items, label, label_events, removed):
            match plan.step:
                case IssueStep.CLEAR_LABEL:
                    log.info("issue #%d: removing a leftover %r label", plan.number, label)
                    await self.github.remove_label(plan.number, label)
                case IssueStep.START | IssueStep.RESUME:
                    fresh = plan.step is IssueStep.START
                    run = functools.partial(self.run, plan.number, fresh)
                    jobs.append(Job(WorkItemType.ISSUE, plan.number, run))
        return jobs

    def _landed(self, write: Write) -> None:
        if write.op == "remove_label" and write.text == self.settings.ready_label:
            self._removed.add(write.number)

    async def run(self, number: int, fresh: bool) -> None:
        """One attempt at issue `number`; `fresh` is False when resuming an interrupted one."""
        known = self.state.get(WorkItemType.ISSUE, number)
        item = known or WorkItem(type=WorkItemType.ISSUE, number=number)
        # Without any record (a lost or new state file), an open pull request from our branch
        # means the work was done: reconcile instead of running Claude again.
        reconcile = fresh and known is None
        if fresh:
            try:
                seen = await self.github.count_labelled(number, self.settings.ready_label)
            except GitHubError as exc:
                # Nothing is recorded yet: the next poll plans this issue again.
                log.warning("issue #%d not started, planned again next poll: %s", number, exc)
                return
            item = item.evolve(
                attempts=item.attempts + 1,
                # A stopped run's kept work outlives its attempt: the new one goes on from it.
                facts=IssueFacts(label_events=seen, kept_sha=item.issue.kept_sha),
                errors=0,
                last_error=None,
                head_sha=None,
            )
            try:
                labelling = await self.github.labelling(number, self.settings.ready_label)
                actor = labelling.actor if labelling is not None else None
                writes = actor is not None and may_command(await self.github.permission(actor))
            except GitHubError as exc:
                log.warning("issue #%d not started, planned again next poll: %s", number, exc)
                return
            if labelling is None or not writes:
                await self._told.refuse_label(item, Refused(
                    f"the ready label was applied by {actor}, who cannot write",
                    text.not_a_writer(actor, self.settings.ready_label)))  # fmt: skip
                return
            item = item.with_facts(labelled_at=labelling.at)
        item = item.evolve(status=Status.IN_PROGRESS, started_at=self.clock.now(), finished_at=None)
        self.state.put(item)
        try:
            outcome = await self._attempt(number, fresh, reconcile=reconcile)
        except (GitHubError, GitError) as exc:
            await self._infrastructure_error(number, exc)
            return
        except DaySpent as exc:  # no run, nothing lost: back in the queue for the next day
            log.info("issue #%d waits: %s", number, exc)
            self._items.update(number, status=Status.PENDING, last_error=str(exc))
            return
        if isinstance(outcome, Failed):
            await self._told.fail(number, outcome)
            return
        if isinstance(outcome, Refused):
            await self._told.refuse_label(self._items.get(number), outcome)
            return
        # An earlier attempt's pull request, now updated; else a new one.
        done = text.done(
            outcome.number, updated=self._items.get(number).pr_number == outcome.number
        )
        self._outbox.queue(
            self._told.ended(number),
            [outbox.remove_label(number, self.settings.ready_label), self._told.tell(number, done)],
            status=Status.DONE,
            pr_number=outcome.number,
            finished_at=self.clock.now(),
        )
        log.info("issue #%d: pull request #%d is ready for review", number, outcome.number)
        await self._outbox.try_send(number)

    async def _attempt(
        self, number: int, fresh: bool, *, reconcile: bool
    ) -> PullRequest | Failed | Refused:
        issue = await self.github.get_issue(number)
        base = await self.github.default_branch()
        branch = branch_for(number)
        existing = await self.github.find_pull(branch, base)
        open_pull = existing if existing is not None and existing.state == "open" else None
        if reconcile and open_pull is not None:
            log.info("issue #%d: pull request #%d already exists", number, open_pull.number)
            return open_pull
        as_labelled = await self._labelled.as_labelled(issue)
        if isinstance(as_labelled, Refused):
            return as_labelled
        issue = as_labelled  # the title and body Claude, the commit and the pull request get
        if not fresh:
            resumed = await self._resume_push(issue, branch, base, open_pull)
            if resumed is not None:
                return resumed
            if (
                open_pull is not None
                and self._items.get(number).issue.updating_pull is None
                and open_pull.author == await self.github.login()
            ):
                return open_pull  # the interrupted attempt had already opened it

        if open_pull is not None:  # a new attempt on the issue's open pull request
            self._items.update_facts(number, updating_pull=open_pull.number)
        # The task is read before the acknowledgement is written: its comment is no part of it.
        prompt = await self._labelled.task(issue)
        # The acknowledgement waits in the one-write-a-second queue behind every other job's
        # writes; Claude does not wait for it (it is joined before anything is pushed or told).
        acknowledged = asyncio.create_task(self._told.acknowledge(issue)) if fresh else None
        try:
            return await self._work(issue, prompt, branch, base, open_pull, acknowledged)
        finally:
            if acknowledged is not None:
                await join(acknowledged)

    async def _work(
        self,
        issue: Issue,
        prompt: str,
        branch: str,
        base: str,
        open_pull: PullRequest | None,
        acknowledged: asyncio.Task[None] | None,
    ) -> PullRequest | Failed:
        """Claude's run in a fresh worktree, then its commit, push and pull request (after
        the acknowledgement: "working on it" never comes after the pull request)."""
        number = issue.number
        remote_sha = await self.worktrees.remote_branch_sha(branch)
        kept = self._items.get(number).issue.kept_sha
        if open_pull is None and kept is not None and remote_sha not in (kept, None):
            # Someone pushed to the kept work's branch: theirs now, never forced over.
            moved = text.kept_branch_moved(branch, kept, self.settings.ready_label)
            return Failed(f"{branch} moved on from the kept work {kept[:12]}", moved)
        goes_on = open_pull is None and kept is not None and remote_sha == kept
        start = await self.worktrees.fetch_branch(
            open_pull.head_ref if open_pull else (branch if goes_on else base)
        )
        worktree = await self.worktrees.branch_worktree(f"feature-issue-{number}", branch, start)
        try:
            made = await self._run_claude(issue, prompt, worktree, start)
            if acknowledged is not None:
                await join(acknowledged)
            if isinstance(made, Failed):
                return made
            if not made.ok and open_pull is not None:
                # An open pull request's branch never gets half-done work (a review, a /merge);
                # cut short by the day's budget, the update is made again when it allows.
                self._wait_for_budget(number, made, f"the update of #{open_pull.number}")
                return self._claude_failed(made)
            head = await self._commit(issue, worktree, start, made)
            if isinstance(head, Failed):
                if head.reason != NO_CHANGES:
                    return head
                if not made.ok:  # stopped before any change
                    self._wait_for_budget(number, made, "the run, before any change,")
                    return self._claude_failed(made)
                if not goes_on:
                    return head
                # The kept work was whole already: it is pushed and was scanned then.
                whole = self._items.get(number).issue.but(pushed_sha=start)
                self._items.update(number, head_sha=start, facts=whole)
                return await self._delivered(issue, branch, base, open_pull)
            # Claude's work is a commit on the clone's own branch from here on: a fault in
            # what follows is retried from this point, never by running Claude again. A stop
            # is recorded with the commit: a resumed push keeps it as kept work.
            stopped = None if made.ok else (made.limit or "limit")
            lease = self._items.get(number).issue.but(remote_sha=remote_sha, stopped=stopped)
            self._items.update(number, head_sha=head, facts=lease)
            pushed = await self._push(number, branch, head, remote_sha)
            if isinstance(pushed, Failed):
                return pushed
        finally:
            await self.worktrees.remove(worktree)
        return await self._delivered(issue, branch, base, open_pull)

    async def _delivered(
        self, issue: Issue, branch: str, base: str, open_pull: PullRequest | None
    ) -> PullRequest | Failed:
        """The pushed commit: its pull request, or, for a run stopped at a limit, kept on the
        branch and said so, never thrown away."""
        number = issue.number
        item = self._items.get(number)
        head = item.issue.pushed_sha or item.head_sha or ""
        if item.issue.stopped == "day_rest" and item.issue.continued < MAX_CONTINUATIONS:
            # The day's budget, not the task, ran out: the kept work goes on from its commit
            # the next day (a new run, not this one's push).
            kept = item.issue.but(kept_sha=head, stopped=None, pushed_sha=None, summary=None,
                                  continued=item.issue.continued + 1)  # fmt: skip
            self._items.update(number, head_sha=None, facts=kept)
            raise DaySpent(
                f"the day's budget ran out during Claude's run; its work is kept on {branch} "
                f"at {head[:12]} and goes on when the budget allows"
            )
        if item.issue.stopped is not None:
            self._items.update_facts(number, kept_sha=head)
            log.info("issue #%d: Claude stopped (%s); its work is on %s at %s",
                     number, item.last_error, branch, head[:12])  # fmt: skip
            made = ClaudeResult(ok=False, text="", cost_usd=item.cost_usd, turns=item.turns or 0,
                                limit=item.issue.stopped)  # fmt: skip
            kept_note = text.stopped_kept(made, branch, head, self.settings.ready_label)
            limit = "day's budget" if item.issue.stopped == "day_rest" else item.issue.stopped
            return Failed(f"Claude stopped at its {limit} limit", kept_note)
        self._items.update_facts(number, kept_sha=None)
        return await self._deliver(issue, branch, base, open_pull)

    async def _deliver(
        self, issue: Issue, branch: str, base: str, open_pull: PullRequest | None
    ) -> PullRequest | Failed:
        """The pushed work reaches its pull request: a new one, or a note on the open one."""
        item = self._items.get(issue.number)
        if open_pull is None:
            return await self._open_pull(issue, branch, base)
        if item.issue.updating_pull is not None:
            note = text.update_note(issue.number, item.issue.summary or "")
            done = item.with_facts(updating_pull=None)
            self._outbox.queue(done, [outbox.comment(open_pull.number, note)])
            await self._outbox.try_send(issue.number)
        return open_pull

    async def _resume_push(
        self, issue: Issue, branch: str, base: str, open_pull: PullRequest | None
    ) -> PullRequest | Failed | None:
        """After a crash or a fault past Claude's run: push what it made if that did not get
        through, and deliver it; None when there is nothing to resume from."""
        item = self._items.get(issue.number)
        facts = item.issue
        remote = await self.worktrees.remote_branch_sha(branch)
        if facts.pushed_sha and remote == facts.pushed_sha:
            log.info("issue #%d: the branch was pushed before; delivering it", issue.number)
            return await self._delivered(issue, branch, base, open_pull)
        committed = item.head_sha
        if committed is None or facts.summary is None:
            return None  # Claude had not finished
        if await self.worktrees.local_branch_sha(branch) != committed:
            return None  # the commit is gone from the clone: start over
        log.info("issue #%d: pushing the commit an earlier attempt made", issue.number)
        pushed = await self._push(issue.number, branch, committed, facts.remote_sha)
        if isinstance(pushed, Failed):
            return pushed
        return await self._delivered(issue, branch, base, open_pull)

    async def _run_claude(
        self, issue: Issue, prompt: str, worktree: Path, start: str
    ) -> ClaudeResult | Failed:
        spend = self._items.allowance(issue.number, self.settings)
        if spend.refused is not None:
            return Failed(
                spend.refused, text.budget_spent(spend.refused, self.settings.ready_label)
            )
        # The guidelines of the commit the work starts from (the default branch's, usually).
        own = await self.worktrees.read_file(start, repo_guidelines_path("implement"))
        request = ClaudeRequest(
            prompt=prompt,
            cwd=worktree,
            guidelines=guidelines("implement", own),
            tools=IMPLEMENT_TOOLS,
            max_turns=self.settings.max_turns,
            timeout=self.settings.claude_timeout,
            setting_sources=("project",),  # the default branch's own CLAUDE.md and settings
            max_budget_usd=spend.cap,
        )
        result = await self.claude.run(request)
        self._items.spend(issue.number, result)
        if result.limit == "day":  # it never ran: the next day's first cycles plan it again
            raise DaySpent(result.error or "the day's budget is spent")
        if not result.ok and result.limit not in KEPT_AT:
            return self._claude_failed(result)
        # Claude's words are stored and posted: no secret may ride along (DESIGN §1).
        self._items.update_facts(issue.number, summary=self.redactor.redact(result.text))
        return result

    def _wait_for_budget(self, number: int, made: ClaudeResult, what: str) -> None:
        """Raise `DaySpent` when the day's budget ran out during `made` and the attempt may
        still go on by itself (`MAX_CONTINUATIONS`); nothing was kept from it."""
        facts = self._items.get(number).issue
        if made.limit != "day_rest" or facts.continued >= MAX_CONTINUATIONS:
            return
        self._items.update_facts(number, continued=facts.continued + 1)
        raise DaySpent(f"the day's budget ran out during {what}; it goes on when it allows")

    def _claude_failed(self, result: ClaudeResult) -> Failed:
        return Failed(
            result.error or "Claude failed",
            text.claude_failed(
                result.error, timed_out=result.timed_out, ready_label=self.settings.ready_label
            ),
        )

    async def _commit(
        self, issue: Issue, worktree: Path, start: str, result: ClaudeResult
    ) -> str | Failed:
        if result.ok:
            message = f"Implement #{issue.number}: {issue.title}\n\nCloses #{issue.number}"
        else:
            message = f"Work in progress on #{issue.number}: {issue.title}\n\n{result.error}"
        await self.worktrees.commit_all(worktree, message)
        head = await self.worktrees.head(worktree)
        if head == start:
            return Failed(NO_CHANGES, text.no_changes(result.text, self.settings.ready_label))
        hits = self.scanner.scan(await self.worktrees.diff(start, head))
        if hits:
            where = ", ".join(f"{hit.path}:{hit.line}" for hit in hits[:5])
            return Failed(
                f"the change adds what looks like a secret ({where})",
                text.secret_found(hits, self.settings.ready_label),
            )
        if not self.settings.allow_sensitive_changes:
            touched = sensitive_paths(await self.worktrees.changed_files(start, head))
            if touched:
                return Failed(
                    f"the change touches {', '.join(touched[:5])}",
                    text.sensitive_refused(touched, self.settings.ready_label),
                )
        return head

    async def _push(
        self, number: int, branch: str, head: str, remote_sha: str | None
    ) -> Failed | None:
        try:
            await self.worktrees.push_commit(head, branch, remote_sha)
        except GitError as exc:
            if is_transient(exc):
                raise  # kept: the next cycle pushes the same commit
            return Failed(
                f"push rejected: {exc}",
                text.push_rejected(
                    branch, str(exc), self.settings.git_remote, self.settings.ready_label
                ),
            )
        self._items.update_facts(number, pushed_sha=head)
        return None

    async def _open_pull(self, issue: Issue, branch: str, base: str) -> PullRequest | Failed:
        item = self._items.get(issue.number)
        body = text.pull_body(issue.number, item.issue.summary or "", item)
        try:
            return await self.github.create_pull(
                title=issue.title, head=branch, base=base, body=body
            )
        except GitHubError as exc:
            # A 422 "already exists", or a lost answer to a request GitHub applied anyway.
            found = await self.github.find_pull(branch, base)
            if found is not None and found.state == "open":
                return found
            if is_transient(exc):
                raise  # the branch stays; the next cycle looks for the pull request first
            return Failed(
                f"pull request creation failed: {exc.message}",
                text.pull_refused(branch, exc.message, self.settings.ready_label),
            )

    async def _infrastructure_error(self, number: int, exc: Exception) -> None:
        """GitHub or git failed under us: retry on the next polls, then give up and say so."""
        if self._items.retry_later(number, exc):
            return
        comment = text.gave_up(str(exc), MAX_INFRASTRUCTURE_ERRORS, self.settings.ready_label)
        await self._told.fail(number, Failed(str(exc), comment))
