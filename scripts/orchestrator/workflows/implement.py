"""Implement workflow: an issue labelled ready becomes a branch, a commit and a pull request."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..core import implement_text as text
from ..core.decide_implement import (
    IssueStep,
    changed_since_label,
    comments_as_labelled,
    needs_label_count,
    plan_issues,
    sensitive_paths,
)
from ..core.errors import GitError, GitHubError, is_transient
from ..core.models import (
    IMPLEMENT_TOOLS,
    ClaudeRequest,
    ClaudeResult,
    Comment,
    Issue,
    PullRequest,
)
from ..core.redact import Redactor
from ..core.triggers import may_command
from ..core.work import IssueFacts, Status, WorkItem, WorkItemType, Write
from ..guidelines import guidelines, repo_guidelines_path
from ..ports import Claude, Clock, Git, GitHub, Job, SecretScan, StateStore
from . import outbox
from .items import MAX_INFRASTRUCTURE_ERRORS, Items

log = logging.getLogger(__name__)


def branch_for(number: int) -> str:
    return f"feature/issue-{number}"


@dataclass(frozen=True)
class Failed:
    """An attempt that ended; `comment` tells the issue's readers what happened and what to do."""

    reason: str
    comment: str


@dataclass(frozen=True)
class Refused:
    """The label starts no work; `comment` says why and what a writer can do."""

    reason: str
    comment: str


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
        self._outbox = outbox.Outbox(self.state, WorkItemType.ISSUE, self.github, self.redactor)

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
        for plan in plan_issues(issues, items, label, label_events):
            match plan.step:
                case IssueStep.CLEAR_LABEL:
                    log.info("issue #%d: removing a leftover %r label", plan.number, label)
                    await self.github.remove_label(plan.number, label)
                case IssueStep.START | IssueStep.RESUME:
                    fresh = plan.step is IssueStep.START
                    run = functools.partial(self.run, plan.number, fresh)
                    jobs.append(Job(WorkItemType.ISSUE, plan.number, run))
        return jobs

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
                facts=IssueFacts(label_events=seen),
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
                await self._refuse_label(item, Refused(
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
        if isinstance(outcome, Failed):
            await self._fail(number, outcome)
            return
        if isinstance(outcome, Refused):
            await self._refuse_label(self._items.get(number), outcome)
            return
        # An earlier attempt's pull request, now updated; else a new one.
        done = text.done(
            outcome.number, updated=self._items.get(number).pr_number == outcome.number
        )
        self._outbox.queue(
            self._ended(number),
            [outbox.remove_label(number, self.settings.ready_label), self._tell(number, done)],
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
        as_labelled = await self._as_labelled(issue)
        if isinstance(as_labelled, Refused):
            return as_labelled
        issue = as_labelled  # the title and body Claude, the commit and the pull request get
        if not fresh:
            resumed = await self._resume_push(issue, branch, base, open_pull)
            if resumed is not None:
                return resumed
            if open_pull is not None and self._items.get(number).issue.updating_pull is None:
                return open_pull  # the interrupted attempt had already opened it

        if open_pull is not None:  # a new attempt on the issue's open pull request
            self._items.update_facts(number, updating_pull=open_pull.number)
        # The task is read before the acknowledgement is written: its comment is no part of it.
        prompt = await self._task(issue)
        # The acknowledgement waits in the one-write-a-second queue behind every other job's
        # writes; Claude does not wait for it (it is joined before anything is pushed or told).
        acknowledged = asyncio.create_task(self._acknowledge(issue)) if fresh else None
        try:
            return await self._work(issue, prompt, branch, base, open_pull, acknowledged)
        finally:
            if acknowledged is not None:
                await _join(acknowledged)

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
        start = await self.worktrees.fetch_branch(open_pull.head_ref if open_pull else base)
        remote_sha = await self.worktrees.remote_branch_sha(branch)
        worktree = await self.worktrees.branch_worktree(f"feature-issue-{number}", branch, start)
        try:
            made = await self._run_claude(issue, prompt, worktree, start)
            if acknowledged is not None:
                await _join(acknowledged)
            if isinstance(made, Failed):
                return made
            head = await self._commit(issue, worktree, start, made)
            if isinstance(head, Failed):
                return head
            # Claude's work is a commit on the clone's own branch from here on: a fault in
            # what follows is retried from this point, never by running Claude again.
            lease = self._items.get(number).issue.but(remote_sha=remote_sha)
            self._items.update(number, head_sha=head, facts=lease)
            pushed = await self._push(number, branch, head, remote_sha)
            if isinstance(pushed, Failed):
                return pushed
        finally:
            await self.worktrees.remove(worktree)
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

    async def _acknowledge(self, issue: Issue) -> None:
        # Writes are spaced a second apart (secondary rate limits): skip the needless one.
        if self.settings.failed_label in issue.labels:
            # Through the outbox: a resumed attempt does not acknowledge again, and the old
            # failure label must not survive a fault next to a new pull request.
            unlabel = outbox.remove_label(issue.number, self.settings.failed_label)
            self._outbox.queue(self._items.get(issue.number), [unlabel])
            await self._outbox.try_send(issue.number)
        # A courtesy: without it the outcome comes as a comment of its own.
        try:
            await self.github.react_to_issue(issue.number, "eyes")
            said = await self.github.create_comment(issue.number, text.started())
        except GitHubError as exc:
            log.warning("issue #%d: could not say that work started: %s", issue.number, exc)
            return
        if said.id:  # 0: GitHub took it but its answer was unreadable
            self._items.update_facts(issue.number, progress_comment=said.id)

    def _tell(self, number: int, body: str) -> Write:
        """The outcome: in the comment that said work started, or in a new one."""
        progress = self._items.get(number).issue.progress_comment
        if progress is None:
            return outbox.comment(number, body)
        return outbox.edit_comment(number, progress, body)

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
            return await self._deliver(issue, branch, base, open_pull)
        committed = item.head_sha
        if committed is None or facts.summary is None:
            return None  # Claude had not finished
        if await self.worktrees.local_branch_sha(branch) != committed:
            return None  # the commit is gone from the clone: start over
        log.info("issue #%d: pushing the commit an earlier attempt made", issue.number)
        pushed = await self._push(issue.number, branch, committed, facts.remote_sha)
        if isinstance(pushed, Failed):
            return pushed
        return await self._deliver(issue, branch, base, open_pull)

    async def _as_labelled(self, issue: Issue) -> Issue | Refused:
        """The issue as it stood when the writer labelled it: kept in the item at the first
        look (a fresh attempt, or one that a fault or a stop cut short before it), and used
        from then on, whatever is edited later."""
        facts = self._items.get(issue.number).issue
        if facts.body is None and facts.labelled_at is not None:
            labelling = await self.github.labelling(issue.number, self.settings.ready_label)
            renamed_at = labelling.renamed_at if labelling is not None else None
            edited_at = await self.github.edited_at(issue.number)
            if changed_since_label(facts.labelled_at, edited_at, renamed_at):
                return Refused(
                    "the issue was edited after the ready label was applied",
                    text.changed_since_label(self.settings.ready_label),
                )
            # Kept only as far as the prompt reads it (one past, so the cut still shows).
            body = issue.body[: text.MAX_BODY_CHARS + 1]
            self._items.update_facts(issue.number, title=issue.title, body=body)
            return issue
        if facts.body is None:  # an attempt from an older state, before labels were timed
            return issue
        return dataclasses.replace(issue, title=facts.title or issue.title, body=facts.body)

    async def _task(self, issue: Issue) -> str:
        """Claude's task: the issue (as labelled) and its comments as they stood then."""
        facts = self._items.get(issue.number).issue
        everything = [
            c
            for c in await self.github.list_issue_comments(issue.number)
            if c.id != facts.progress_comment  # "working on this issue": ours, not the task
        ]
        comments, left_out = comments_as_labelled(everything, facts.labelled_at)
        outsiders = await self._outsiders(comments)
        drop = self.settings.outsider_comments == "drop"
        if drop:
            comments = [c for c in comments if c.author not in outsiders]
            left_out = len(everything) - len(comments)
        return text.implement_prompt(
            issue,
            comments,
            outsiders=outsiders,
            own=await self.github.login(),
            left_out=left_out,
            outsiders_dropped=drop,
        )

    async def _outsiders(self, comments: list[Comment]) -> frozenset[str]:
        """The comments' authors without write access (one request per author; the prompt
        holds at most `MAX_PROMPT_COMMENTS` comments, so at most that many requests)."""
        authors = {c.author for c in comments[-text.MAX_PROMPT_COMMENTS :]}
        return frozenset(
            [a for a in sorted(authors) if not may_command(await self.github.permission(a))]
        )

    async def _run_claude(
        self, issue: Issue, prompt: str, worktree: Path, start: str
    ) -> ClaudeResult | Failed:
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
        )
        result = await self.claude.run(request)
        self._items.update(
            issue.number,
            cost_usd=result.cost_usd,
            turns=result.turns,
            duration_s=round(result.duration_s, 1),
        )
        if not result.ok:
            return Failed(
                result.error or "Claude failed",
                text.claude_failed(
                    result.error, timed_out=result.timed_out, ready_label=self.settings.ready_label
                ),
            )
        # Claude's words are stored and posted: no secret may ride along (DESIGN §1).
        self._items.update_facts(issue.number, summary=self.redactor.redact(result.text))
        return result

    async def _commit(
        self, issue: Issue, worktree: Path, start: str, result: ClaudeResult
    ) -> str | Failed:
        message = f"Implement #{issue.number}: {issue.title}\n\nCloses #{issue.number}"
        await self.worktrees.commit_all(worktree, message)
        head = await self.worktrees.head(worktree)
        if head == start:
            return Failed(
                "Claude made no changes", text.no_changes(result.text, self.settings.ready_label)
            )
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
        await self._fail(number, Failed(str(exc), comment))

    def _ended(self, number: int) -> WorkItem:
        """The item as its attempt ends: the kept issue text is not needed any more (a new
        label takes a new copy), so the state does not grow with every issue's body."""
        return self._items.get(number).with_facts(title=None, body=None)

    async def _refuse_label(self, item: WorkItem, refused: Refused) -> None:
        """The label does not start work (applied by someone without write access, or the
        issue changed since): one reply, the label removed, the attempt recorded as refused
        (a writer's label later counts as a new request)."""
        log.warning("issue #%d not started: %s", item.number, refused.reason)
        self.state.put(item.evolve(status=Status.IN_PROGRESS, started_at=self.clock.now()))
        writes = [
            outbox.comment(item.number, refused.comment),
            outbox.remove_label(item.number, self.settings.ready_label),
        ]
        self._outbox.queue(
            self._items.get(item.number),
            writes,
            status=Status.FAILED,
            last_error=refused.reason,
            finished_at=self.clock.now(),
        )
        await self._outbox.try_send(item.number)

    async def _fail(self, number: int, failure: Failed) -> None:
        """Record the failure with the comment and label swap that announce it, then send
        those: a fault delays them to a later cycle, it never loses them."""
        log.warning("issue #%d failed: %s", number, failure.reason)
        writes = [
            self._tell(number, text.failure_comment(failure.comment)),
            outbox.remove_label(number, self.settings.ready_label),
            outbox.add_label(number, self.settings.failed_label),
        ]
        self._outbox.queue(
            self._ended(number),
            writes,
            status=Status.FAILED,
            last_error=self.redactor.redact(failure.reason),
            finished_at=self.clock.now(),
        )
        await self._outbox.try_send(number)


async def _join(task: asyncio.Task[None]) -> None:
    """Wait for `task`; if this wait is cancelled (a stop), cancel the task too."""
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        raise
