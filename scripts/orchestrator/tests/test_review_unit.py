"""Unit tests of the review workflow through the port fakes: its decisions and failure paths."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.errors import GitHubError, Unprocessable
from scripts.orchestrator.core.models import READ_ONLY_TOOLS, Review, ReviewEvent
from scripts.orchestrator.core.redact import REDACTED, Redactor
from scripts.orchestrator.core.review_text import MAX_DIFF
from scripts.orchestrator.core.work import Status, WorkItem, WorkItemType
from scripts.orchestrator.guidelines import repo_guidelines_path
from scripts.orchestrator.workflows.commands import courtesies_sent
from scripts.orchestrator.workflows.comment_feed import CommentFeed
from scripts.orchestrator.workflows.pull_heads import PullHeads
from scripts.orchestrator.workflows.review import (
    BASELINE_META,
    MAX_ATTEMPTS,
    RETRY_BACKOFF,
    ReviewWorkflow,
)

from .ports_fakes import (
    UNIT_TOKEN,
    FakeClock,
    MemoryState,
    RecordingGit,
    ScriptedClaude,
    SettingsFactory,
    sha,
)
from .ports_fakes_github import BOT, RecordingGitHub

REVIEW = "## Summary\nFine.\n\nVERDICT: COMMENT"


@dataclass
class Rig:
    settings: Settings
    state: MemoryState
    gh: RecordingGitHub
    git: RecordingGit
    claude: ScriptedClaude
    clock: FakeClock
    feed: CommentFeed
    heads: PullHeads
    wf: ReviewWorkflow

    def item(self, number: int) -> WorkItem:
        item = self.state.get(WorkItemType.PR_REVIEW, number)
        assert item is not None
        return item

    async def cycle(self) -> list[int]:
        """One daemon cycle, its jobs run to their end; the pull requests they were for."""
        await self.heads.refresh()
        await self.feed.refresh()
        jobs = await self.wf.poll()
        await self.feed.commit()
        await courtesies_sent()  # the 👀 on each command, sent beside the work
        for job in jobs:
            await job.run()
        return [job.number for job in jobs]

    async def seen(self) -> None:
        """The daemon lists the pull requests, then a second passes: a comment made after
        this was written after the daemon saw the heads there are now."""
        await self.heads.refresh()
        self.clock.advance(1)

    async def watching(self) -> None:
        """The first cycle: the open pull requests are remembered, not reviewed."""
        assert await self.cycle() == []

    def reviewed(self, number: int) -> list[tuple[str | None, str]]:
        return [(r.commit_id, r.state) for r in self.gh.reviews.get(number, [])]


@pytest.fixture
def build(
    make_settings: SettingsFactory,
    memory_state: MemoryState,
    gh: RecordingGitHub,
    git: RecordingGit,
    claude: ScriptedClaude,
    clock: FakeClock,
) -> Callable[..., Rig]:
    def make(**settings: Any) -> Rig:
        s = make_settings(**settings)
        feed = CommentFeed(gh, memory_state)
        heads = PullHeads(gh, memory_state)
        wf = ReviewWorkflow(
            s, memory_state, gh, git, claude, feed, heads, Redactor([s.token]), clock
        )
        return Rig(s, memory_state, gh, git, claude, clock, feed, heads, wf)

    return make


@pytest.fixture
def rig(build: Callable[..., Rig]) -> Rig:
    return build()


async def test_pull_requests_open_at_the_first_watch_are_only_remembered(rig: Rig) -> None:
    number, other = rig.gh.add_pull(), rig.gh.add_pull("other")
    await rig.feed.refresh()
    writes = rig.state.writes
    assert await rig.wf.poll() == []
    assert rig.state.writes == writes + 1  # every item and the mark in one state write
    assert rig.item(other).review.baseline
    item = rig.item(number)
    assert item.status is Status.DONE and item.review.baseline
    assert item.head_sha == rig.gh.pulls[number].head_sha and item.review.reviewed == ()
    assert rig.state.get_meta(BASELINE_META) == rig.clock.now().isoformat()
    assert rig.claude.requests == [] and await rig.cycle() == []


async def test_a_new_head_is_reviewed_read_only_and_redacted(rig: Rig) -> None:
    number = rig.gh.add_pull()
    await rig.watching()
    rig.git.files[sha("main"), repo_guidelines_path("review")] = "Mind the tests."
    rig.gh.push(number, sha("h2"))
    rig.claude.succeed(f"{REVIEW}\nSaw {UNIT_TOKEN} in the diff.")
    assert await rig.cycle() == [number]
    [request] = rig.claude.requests
    assert f"Review pull request #{number}" in request.prompt and "everything" in request.prompt
    assert request.tools == READ_ONLY_TOOLS and request.setting_sources == ()
    assert request.cwd == rig.git.base / f"pr-review-{number}" and rig.git.worktrees == set()
    assert "Mind the tests." in request.guidelines
    # Read only as far as the prompt can hold (a 100 MB file is never read whole).
    assert rig.git.called("diff")[0] == (sha("main"), sha("h2"), request.cwd, MAX_DIFF)
    # The checkout's .claude/, .mcp.json and CLAUDE.md are the base's before Claude runs.
    assert rig.git.called("restore_steering") == [(request.cwd, sha("main"))]
    assert rig.reviewed(number) == [(sha("h2"), "COMMENTED")]
    body = rig.gh.reviews[number][0].body
    assert "## Summary\nFine." in body and REDACTED in body and UNIT_TOKEN not in body
    item = rig.item(number)
    assert item.status is Status.DONE and item.review.reviewed == (sha("h2"),)
    assert item.review.last_review and UNIT_TOKEN not in item.review.last_review
    assert item.review.unposted is None and rig.gh.reactions == [("issue", number, "eyes")]
    assert await rig.cycle() == []  # each head once


async def test_a_head_that_builds_on_the_reviewed_one_gets_only_its_changes(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull(head=sha("h1"))
    rig.claude.succeed(REVIEW)
    await rig.cycle()
    rig.gh.push(number, sha("h2"))
    rig.git.ancestors.add((sha("h1"), sha("h2")))
    rig.claude.succeed(REVIEW)
    await rig.cycle()
    assert rig.git.called("diff")[-1][:2] == (sha("h1"), sha("h2"))
    prompt = rig.claude.requests[-1].prompt
    assert f"reviewed before, at {sha('h1')}" in prompt and "<earlier_review>" in prompt
    assert rig.item(number).review.reviewed == (sha("h1"), sha("h2"))


async def test_a_failing_review_backs_off_then_reports_once(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    for attempt in range(1, MAX_ATTEMPTS):
        rig.claude.fail_run("the model is overloaded")
        assert await rig.cycle() == [number]
        item = rig.item(number)
        delay = RETRY_BACKOFF * 2 ** (attempt - 1)
        assert item.status is Status.PENDING and item.attempts == attempt
        assert item.review.retry_at == rig.clock.now() + timedelta(seconds=delay)
        rig.clock.advance(delay - 1)
        assert await rig.cycle() == []  # not due yet
        rig.clock.advance(1)
    rig.claude.fail_run("the model is overloaded")
    assert await rig.cycle() == [number]
    [notice] = rig.gh.bot_comments(number)
    assert f"failed {MAX_ATTEMPTS} times: the model is overloaded." in notice
    assert rig.item(number).status is Status.FAILED and rig.gh.reviews == {}
    rig.clock.advance(3600)
    assert await rig.cycle() == [] and len(rig.gh.bot_comments(number)) == 1
    assert rig.gh.reactions == [("issue", number, "eyes")]  # the first attempt only


@pytest.mark.parametrize("applied", [False, True])
async def test_a_review_github_did_not_take_is_posted_without_a_new_run(
    rig: Rig, applied: bool
) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.claude.succeed(REVIEW)
    rig.gh.fail("create_review", GitHubError(502, "Bad Gateway"), after=applied)
    await rig.cycle()
    item = rig.item(number)
    assert item.status is Status.PENDING and item.attempts == 0  # a fault costs no attempt
    assert item.review.unposted is not None and item.review.unposted.commit_id == item.head_sha
    rig.clock.advance(RETRY_BACKOFF)
    assert await rig.cycle() == [number]
    assert len(rig.claude.requests) == 1 and len(rig.reviewed(number)) == 1
    assert rig.item(number).status is Status.DONE and rig.item(number).review.unposted is None


async def test_a_review_github_refuses_is_written_anew(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.claude.succeed(REVIEW)
    rig.gh.fail("create_review", Unprocessable(422, "Unprocessable Entity"))
    await rig.cycle()
    assert rig.item(number).review.unposted is None and rig.item(number).attempts == 1
    rig.claude.succeed(REVIEW)
    rig.clock.advance(RETRY_BACKOFF)
    await rig.cycle()
    assert len(rig.claude.requests) == 2 and len(rig.reviewed(number)) == 1


async def test_a_fault_reading_the_pull_request_records_nothing(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.gh.fail("get_pull", GitHubError(502, "Bad Gateway"))
    assert await rig.cycle() == [number]
    assert rig.state.get(WorkItemType.PR_REVIEW, number) is None
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number] and len(rig.reviewed(number)) == 1


async def test_a_pull_request_closed_before_its_job_is_left_alone(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.gh.before("get_pull", lambda *_: rig.gh.edit_pull(number, state="closed"))
    assert await rig.cycle() == [number]
    assert rig.state.get(WorkItemType.PR_REVIEW, number) is None and rig.claude.requests == []


async def test_without_a_known_login_or_a_reaction_the_review_goes_ahead(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.gh.me = None  # an App's token: GitHub does not say whose it is
    rig.gh.fail("react_to_issue", GitHubError(403, "Resource not accessible by integration"))
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number]
    assert len(rig.reviewed(number)) == 1 and "list_reviews" not in rig.gh.names()


async def test_a_head_the_account_already_reviewed_is_not_reviewed_again(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()  # the state was lost; GitHub remembers the review
    head = rig.gh.pulls[number].head_sha
    rig.gh.reviews[number] = [Review(1, BOT, head, "COMMENTED", "Earlier.")]
    assert await rig.cycle() == [number]
    assert rig.claude.requests == [] and rig.item(number).review.reviewed == (head,)


async def test_a_writers_review_request_reviews_a_reviewed_head_again(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.claude.succeed(REVIEW)
    await rig.cycle()
    rig.clock.advance(1)  # a second after the daemon saw the head
    rig.gh.permissions["carol"] = "maintain"
    comment = rig.gh.comment(number, "/review", user="carol")
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number]
    head = rig.gh.pulls[number].head_sha
    assert rig.reviewed(number) == [(head, "COMMENTED")] * 2
    assert ("comment", comment, "eyes") in rig.gh.reactions
    item = rig.item(number)
    assert not item.review.requested and not item.review.forced
    assert item.review.requested_head is None
    assert await rig.cycle() == [] and rig.gh.bot_comments(number) == []


# -- a writer's /review acts on the head they saw --------------------------------------------


async def test_a_review_request_written_as_the_head_changed_reviews_nothing(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull(author="eve", fork=True)
    rig.gh.permissions["carol"] = "write"
    rig.claude.succeed(REVIEW)
    await rig.cycle()
    await rig.seen()
    rig.gh.push(number, sha("pushed"))  # after the daemon's last look, before the comment
    rig.gh.comment(number, "/review", user="carol")
    assert await rig.cycle() == [number]  # the outsider's push, held: no Claude
    [reply] = rig.gh.bot_comments(number)
    assert "@carol nothing was reviewed" in reply and f"/review {sha('pushed')[:12]}" in reply
    assert len(rig.claude.requests) == 1
    # Named, the new head is reviewed.
    await rig.seen()
    rig.gh.comment(number, f"/review {sha('pushed')[:9]}", user="carol")
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number]
    assert rig.reviewed(number)[-1] == (sha("pushed"), "COMMENTED")


async def test_a_push_after_the_request_is_not_reviewed_under_it(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull(author="eve", fork=True)
    rig.gh.permissions["carol"] = "write"
    rig.claude.succeed(REVIEW)
    await rig.cycle()
    await rig.seen()
    rig.gh.comment(number, "/review", user="carol")
    await rig.feed.refresh()
    await rig.heads.refresh()
    [job] = await rig.wf.poll()
    await rig.feed.commit()
    assert rig.item(number).review.requested_head == rig.gh.pulls[number].head_sha
    rig.gh.push(number, sha("backdoor"))  # between the accepted request and its job
    await job.run()
    assert len(rig.claude.requests) == 1  # the first head's review only
    [notice] = rig.gh.bot_comments(number)
    assert "nothing was reviewed: the head moved" in notice and sha("backdoor")[:12] in notice
    item = rig.item(number)
    assert not item.review.forced and item.review.requested_head is None
    assert item.status is Status.DONE


async def test_a_request_made_while_a_review_runs_keeps_its_pin(rig: Rig) -> None:
    """Found by an outside review: the running review's end unpinned a writer's request
    accepted meanwhile, and the next run reviewed a head pushed after the request."""
    await rig.watching()
    number = rig.gh.add_pull(author="eve", fork=True)
    first = rig.gh.pulls[number].head_sha
    gate = rig.claude.gate("run")  # Claude is slow on the first head
    rig.claude.succeed(REVIEW)
    await rig.heads.refresh()
    await rig.feed.refresh()
    [job] = await rig.wf.poll()
    await rig.feed.commit()
    task = asyncio.ensure_future(job.run())
    for _ in range(100):  # yields until the run waits on Claude
        if rig.claude.called("run"):
            break
        await asyncio.sleep(0)
    assert rig.claude.called("run")
    rig.gh.permissions["carol"] = "write"
    rig.clock.advance(1)
    rig.gh.comment(number, "/review", user="carol")  # the head she sees: the first
    await rig.heads.refresh()
    await rig.feed.refresh()
    await rig.wf.poll()  # its job is the running one's key: the daemon does not start it
    await rig.feed.commit()
    assert rig.item(number).review.requested_head == first
    gate.set()
    await task
    assert rig.item(number).review.requested_head == first
    rig.clock.advance(60)
    rig.gh.push(number, sha("never-seen"))  # after her comment: not what she asked for
    await rig.cycle()
    assert [commit for commit, _ in rig.reviewed(number)] == [first]
    [notice] = rig.gh.bot_comments(number)
    assert "nothing was reviewed: the head moved" in notice


async def test_a_head_fetched_after_a_push_is_not_reviewed_as_the_one_read(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.git.before("fetch_pull_head", lambda n: rig.gh.push(n, sha("later")))
    assert await rig.cycle() == [number]
    assert rig.claude.requests == [] and rig.item(number).status is Status.PENDING
    assert rig.item(number).attempts == 0  # not the review's fault


# -- what an outsider can make the daemon spend ----------------------------------------------


async def test_an_outsiders_later_pushes_wait_for_a_writers_request(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull(author="eve", fork=True)
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number]
    [(_, state)] = rig.reviewed(number)
    body = rig.gh.reviews[number][0].body
    assert "New commits are reviewed when someone with write access comments `/review`" in body
    for n in range(3):
        rig.gh.push(number, sha(f"push-{n}"))
        assert await rig.cycle() == [number]
    assert len(rig.claude.requests) == 1 and rig.gh.bot_comments(number) == []
    assert rig.item(number).head_sha == sha("push-2") and rig.item(number).status is Status.DONE
    assert await rig.cycle() == []  # each held head costs one job, once
    # Control: a writer's request reviews the head they saw.
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/review", user="carol")
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number]
    assert rig.reviewed(number)[-1] == (sha("push-2"), state)


async def test_a_writers_later_pushes_are_reviewed(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()  # a branch of the repository: its author has write access
    for n in range(2):
        rig.claude.succeed(REVIEW)
        rig.gh.push(number, sha(f"push-{n}"))
        assert await rig.cycle() == [number]
    assert len(rig.claude.requests) == 2
    assert "New commits are reviewed when" not in rig.gh.reviews[number][0].body


async def test_the_old_behaviour_reviews_every_push_of_an_outsider(
    build: Callable[..., Rig],
) -> None:
    rig = build(review_outsider_pushes=True)
    await rig.watching()
    number = rig.gh.add_pull(author="eve", fork=True)
    for n in range(2):
        rig.claude.succeed(REVIEW)
        rig.gh.push(number, sha(f"push-{n}"))
        assert await rig.cycle() == [number]
    assert len(rig.claude.requests) == 2 and "permission" not in rig.gh.names()


async def test_automatic_reviews_stop_at_the_daily_cap(build: Callable[..., Rig]) -> None:
    rig = build(max_reviews_per_day=2)
    await rig.watching()
    number = rig.gh.add_pull()
    for n in range(5):
        if n < 2:
            rig.claude.succeed(REVIEW)
        rig.gh.push(number, sha(f"push-{n}"))
        assert await rig.cycle() == [number]
        rig.clock.advance(60)
    assert len(rig.claude.requests) == 2
    [notice] = rig.gh.bot_comments(number)  # said once, not at every push
    assert "had its 2 automatic reviews in the last 24 hours" in notice
    assert sha("push-2")[:12] in notice
    # A writer's request is not counted against the cap.
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/review", user="carol")
    rig.claude.succeed(REVIEW)
    assert await rig.cycle() == [number]
    assert len(rig.claude.requests) == 3
    # A day after the first runs, pushes are reviewed again.
    rig.clock.advance(24 * 3600)
    rig.claude.succeed(REVIEW)
    rig.gh.push(number, sha("next-day"))
    assert await rig.cycle() == [number]
    assert rig.reviewed(number)[-1] == (sha("next-day"), "COMMENTED")


async def test_a_readers_review_request_gets_one_reply(rig: Rig) -> None:
    await rig.watching()
    number = rig.gh.add_pull()
    rig.claude.succeed(REVIEW)
    await rig.cycle()
    rig.gh.permissions["eve"] = "read"
    rig.gh.comment(number, "/review", user="eve")
    issue = rig.gh.add_issue()
    rig.gh.comment(issue, "/review", user="eve")  # not a pull request: ignored
    assert await rig.cycle() == []
    assert await rig.cycle() == []
    [reply] = rig.gh.bot_comments(number)
    assert "@eve only people with write access" in reply and "`/review`" in reply
    assert len(rig.reviewed(number)) == 1 and rig.gh.bot_comments(issue) == []


@pytest.mark.parametrize(
    ("allowed", "verdict", "own", "event"),
    [
        (ReviewEvent.COMMENT, "REQUEST_CHANGES", False, "COMMENTED"),
        (ReviewEvent.REQUEST_CHANGES, "REQUEST_CHANGES", False, "CHANGES_REQUESTED"),
        (ReviewEvent.REQUEST_CHANGES, "APPROVE", False, "COMMENTED"),
        (ReviewEvent.APPROVE, "APPROVE", False, "APPROVED"),
        (ReviewEvent.APPROVE, "APPROVE", True, "COMMENTED"),  # GitHub refuses it on one's own
    ],
)
async def test_the_verdict_posted_is_the_models_as_far_as_allowed(
    build: Callable[..., Rig], allowed: ReviewEvent, verdict: str, own: bool, event: str
) -> None:
    rig = build(review_event=allowed)
    rig.gh.permissions["dave"] = "write"
    await rig.watching()
    number = rig.gh.add_pull(author=BOT if own else "dave")
    rig.claude.succeed(f"Findings.\n\nVERDICT: {verdict}")
    await rig.cycle()
    assert rig.reviewed(number) == [(rig.gh.pulls[number].head_sha, event)]
