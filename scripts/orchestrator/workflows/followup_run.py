"""One follow-up attempt on a pull request: Claude's work on its branch, pushed once, and a reply
to every ask it answers (in the ask's thread for a review comment)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..config import Settings
from ..core import followup_text as text
from ..core.decide_followup import Target, target
from ..core.errors import GitError, GitHubError
from ..core.models import PullRequest
from ..core.redact import Redactor
from ..core.text import cut
from ..core.work import Ask, Status, WorkItemType, Write
from ..ports import Clock, Git, GitHub, StateStore
from . import outbox
from .branch_work import BranchWork, Made, NotMade
from .items import MAX_INFRASTRUCTURE_ERRORS, Items

log = logging.getLogger(__name__)

_ISSUE_BRANCH = re.compile(r"feature/issue-(\d+)")
MAX_TITLE = 256  # characters of a pull request's title GitHub takes


@dataclass(frozen=True)
class Done:
    """The work is on `branch` at `sha`: the pull request's own branch (`pushed`), a branch
    beside it because someone pushed meanwhile (`aside`), or a new pull request (`pull`)."""

    how: str
    sha: str
    branch: str
    target: str  # the pull request's branch
    summary: str
    opened: int | None = None


@dataclass
class FollowUpRun:
    """Runs the asks of one pull request's follow-up item, exactly once across restarts: the
    commit, the push and the replies are each recorded before the next step."""

    settings: Settings
    state: StateStore
    github: GitHub
    git: Git
    work: BranchWork
    outbox: outbox.Outbox
    redactor: Redactor
    clock: Clock

    def __post_init__(self) -> None:
        self._items = Items(self.state, WorkItemType.FOLLOW_UP, self.redactor)

    async def run(self, number: int) -> None:
        item = self._items.get(number)
        facts = item.follow_up
        if not facts.doing:  # a new attempt takes every ask waiting; a resumed one keeps its own
            if not facts.asks:
                return
            facts = facts.but(doing=facts.asks, asks=(), start_sha=None, pushed_sha=None,
                              branch=None, opened_pull=None)  # fmt: skip
            item = item.evolve(attempts=item.attempts + 1, errors=0, head_sha=None)
        self.state.put(item.evolve(status=Status.IN_PROGRESS, started_at=self.clock.now(),
                                   finished_at=None, facts=facts))  # fmt: skip
        try:
            outcome = await self._attempt(number)
        except (GitHubError, GitError) as exc:
            if self._items.retry_later(number, exc):
                return
            why = f"GitHub or git failed {MAX_INFRASTRUCTURE_ERRORS} times: {exc}"
            outcome = NotMade(str(exc), why)
        if isinstance(outcome, NotMade) and outcome.day_spent:
            log.info("follow-up on #%d waits: %s", number, outcome.reason)
            self._items.update(number, status=Status.PENDING, last_error=outcome.reason)
            return
        self._answer(number, outcome)
        await self.outbox.try_send(number)

    async def _attempt(self, number: int) -> Done | NotMade:
        pull = await self.github.get_pull(number)
        own = await self.github.login()
        facts = self._items.get(number).follow_up
        match target(pull, own):
            case Target.CLOSED:
                return NotMade("the pull request is closed", text.closed(number))
            case Target.FORK:
                return NotMade("the pull request's branch is in a fork", text.FORK_REFUSED)
            case Target.PUSH:
                mine = True
            case Target.PULL:
                mine = False
        pushed = facts.pushed_sha is not None and facts.branch is not None
        if pushed and await self.git.remote_branch_sha(facts.branch or "") == facts.pushed_sha:
            return await self._delivered(pull, mine)  # pushed before a restart
        made = await self._made(pull)
        if isinstance(made, NotMade):
            return made
        return await self._push(pull, made, mine)

    async def _made(self, pull: PullRequest) -> Made | NotMade:
        """Claude's commit for the asks: one an interrupted attempt made, or a new run."""
        item = self._items.get(pull.number)
        facts = item.follow_up
        local = followup_branch(pull.number)
        committed = item.head_sha is not None and facts.start_sha is not None
        if committed and await self.git.local_branch_sha(local) == item.head_sha:
            log.info("#%d: pushing the follow-up an earlier attempt made", pull.number)
            return Made(item.head_sha or "", facts.summary or "")
        start = await self.git.fetch_pull_head(pull.number)
        base = await self.git.fetch_branch(pull.base_ref)
        prompt = text.followup_prompt(pull, facts.doing, self._before(pull))
        first = facts.doing[0]
        message = f"Follow-up on #{pull.number}: {_first_line(first.text) or 'review feedback'}"
        made = await self.work.make(self._items, pull.number, branch=local, start=start,
                                    base=base, prompt=prompt, message=message)  # fmt: skip
        if isinstance(made, Made):
            # The commit is on the clone's own branch from here on: a fault later pushes it,
            # never runs Claude again.
            # Read afresh: asks may have come during the run; they are the next attempt's.
            self._items.update(pull.number, head_sha=made.sha)
            self._items.update_facts(pull.number, start_sha=start, summary=made.summary)
        return made

    def _before(self, pull: PullRequest) -> str | None:
        """Claude's account of the earlier work on this pull request: the last follow-up's,
        else the implementation's (for the daemon's own branch)."""
        summary = self._items.get(pull.number).follow_up.summary
        if summary:
            return summary
        match = _ISSUE_BRANCH.fullmatch(pull.head_ref)
        issue = self.state.get(WorkItemType.ISSUE, int(match.group(1))) if match else None
        return issue.issue.summary if issue is not None else None

    async def _push(self, pull: PullRequest, made: Made, mine: bool) -> Done | NotMade:
        number = pull.number
        facts = self._items.get(number).follow_up
        aside = f"claude/pr-{number}-{facts.doing[0].id}"
        if mine:
            # With a lease on the head Claude started from: a person's push meanwhile is
            # never overwritten; the work then goes beside it.
            refused = await self.work.push(made.sha, pull.head_ref, facts.start_sha)
            if refused is None:
                self._items.update_facts(number, pushed_sha=made.sha, branch=pull.head_ref)
                return await self._delivered(pull, mine)
        refused = await self.work.push(made.sha, aside, None)
        if refused is not None:
            said = f"pushing `{aside}` was refused: {refused}"
            return NotMade(f"push refused: {refused}", said)
        self._items.update_facts(number, pushed_sha=made.sha, branch=aside)
        return await self._delivered(pull, mine)

    async def _delivered(self, pull: PullRequest, mine: bool) -> Done:
        facts = self._items.get(pull.number).follow_up
        sha, branch = facts.pushed_sha or "", facts.branch or ""
        summary = text.summary_only(facts.summary or "")
        if branch == pull.head_ref:
            return Done("pushed", sha, branch, pull.head_ref, summary)
        if mine:
            return Done("aside", sha, branch, pull.head_ref, summary)
        opened = facts.opened_pull
        if opened is None:
            title = cut(f"Follow-up on #{pull.number}: {pull.title}", MAX_TITLE)
            try:
                made = await self.github.create_pull(title=title, head=branch,
                                                     base=pull.head_ref, body=summary)  # fmt: skip
            except GitHubError:
                # A lost answer to a request GitHub applied, or a 422 "already exists".
                found = await self.github.find_pull(branch, pull.head_ref)
                if found is None:
                    raise
                made = found
            opened = made.number
            self._items.update_facts(pull.number, opened_pull=opened)
        return Done("pull", sha, branch, pull.head_ref, summary, opened)

    def _answer(self, number: int, outcome: Done | NotMade) -> None:
        """Record how the attempt ended with a reply to each ask, in one state write."""
        item = self._items.get(number)
        facts = item.follow_up
        writes: list[Write] = []
        for ask in facts.doing:
            writes += _replies(number, ask, outcome, facts.summary or "")
        status = Status.DONE if isinstance(outcome, Done) else Status.FAILED
        if facts.asks:  # asked again while this attempt ran: the next attempt's
            status = Status.PENDING
        error = None if isinstance(outcome, Done) else self.redactor.redact(outcome.reason)
        if isinstance(outcome, Done):
            log.info("follow-up on #%d: %s %s to %s", number, outcome.how,
                     outcome.sha[:12], outcome.branch)  # fmt: skip
        else:
            log.warning("follow-up on #%d not done: %s", number, outcome.reason)
        self.outbox.queue(item.with_facts(doing=()), writes, status=status,
                          last_error=error, finished_at=self.clock.now())  # fmt: skip


def _replies(number: int, ask: Ask, outcome: Done | NotMade, claude_said: str) -> list[Write]:
    """The replies to one ask: where it was written, or in each of its review threads."""
    if isinstance(outcome, NotMade):
        return [outbox.comment(ask.where, text.not_done(ask.author, outcome.said))]
    said = outcome.summary
    if outcome.how == "pull":
        assert outcome.opened is not None
        body = text.opened_pull(ask.author, outcome.opened, outcome.branch, outcome.target, said)
        return [outbox.comment(ask.where, body)]
    if outcome.how == "aside":
        body = text.pushed_aside(ask.author, outcome.sha, outcome.branch, outcome.target, said)
        return [outbox.comment(ask.where, body)]
    if ask.source == "comment":
        return [outbox.comment(ask.where, text.done_reply(ask.author, outcome.sha,
                                                          outcome.branch, said))]  # fmt: skip
    per_thread = text.thread_replies(claude_said, ask.threads)
    writes = []
    threads = list(dict.fromkeys(t.id for t in ask.threads))
    for thread_id in threads:
        reply = text.thread_reply(outcome.sha, per_thread.get(thread_id))
        writes.append(outbox.reply(number, thread_id, reply))
    if not threads or any(t not in per_thread for t in threads):
        # The summary goes where the replies without their own answer point to.
        writes.append(outbox.comment(number, text.review_done(ask.author, outcome.sha,
                                                               outcome.branch, said)))  # fmt: skip
    writes.append(outbox.request_review(number, ask.author))
    return writes


def followup_branch(number: int) -> str:
    return f"followup/pr-{number}"


def _first_line(instructions: str) -> str:
    line = instructions.strip().split("\n", 1)[0].strip()
    return line[:60] + ("…" if len(line) > 60 else "")
