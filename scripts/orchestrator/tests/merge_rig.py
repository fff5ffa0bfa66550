"""The merge workflow wired to the port fakes, for its unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.core.work import MergeFacts, WorkItem, WorkItemType
from scripts.orchestrator.workflows.branch_work import BranchWork
from scripts.orchestrator.workflows.commands import courtesies_sent
from scripts.orchestrator.workflows.comment_feed import CommentFeed
from scripts.orchestrator.workflows.merge import MergeWorkflow
from scripts.orchestrator.workflows.pull_heads import PullHeads

from .ports_fakes import (
    FakeClock,
    FakeSecretScan,
    MemoryState,
    RecordingChecks,
    RecordingGit,
    ScriptedClaude,
    SettingsFactory,
    sha,
)
from .ports_fakes_github import RecordingGitHub

COMMANDS = ["pytest -q", "ruff check ."]


@dataclass
class Rig:
    settings: Settings
    state: MemoryState
    gh: RecordingGitHub
    git: RecordingGit
    checks: RecordingChecks
    clock: FakeClock
    feed: CommentFeed
    heads: PullHeads
    wf: MergeWorkflow

    def item(self, number: int) -> WorkItem:
        item = self.state.get(WorkItemType.MERGE, number)
        assert item is not None
        return item

    def request(self, number: int, **facts: Any) -> str:
        """A writer's accepted `/merge` of `number` as it stands; its head."""
        pull = self.gh.pulls[number]
        recorded = MergeFacts(trigger_comment_id=1, requested_by="carol", base_ref=pull.base_ref,
                              requested_head=pull.head_sha, **facts)  # fmt: skip
        self.state.put(WorkItem(type=WorkItemType.MERGE, number=number, facts=recorded))
        return pull.head_sha

    def requested(self, **pull: Any) -> tuple[int, str]:
        """A new pull request, and a writer's accepted `/merge` of it; its number and head."""
        number = self.gh.add_pull(**pull)
        return number, self.request(number)

    async def seen(self) -> None:
        """The daemon lists the pull requests, then a second passes: a comment made after
        this was written after the daemon saw the heads there are now."""
        await self.heads.refresh()
        self.clock.advance(1)

    async def cycle(self) -> list[int]:
        """One daemon cycle of the feed and the poll; the numbers of the jobs asked for."""
        await self.heads.refresh()
        await self.feed.refresh()
        jobs = await self.wf.poll()
        await self.feed.commit()
        await courtesies_sent()  # the 👀 on each command, sent beside the work
        return [job.number for job in jobs]

    def one_comment(self, number: int) -> str:
        comments = self.gh.bot_comments(number)
        assert len(comments) == 1, comments
        return comments[0]


@pytest.fixture
def build(
    make_settings: SettingsFactory,
    memory_state: MemoryState,
    gh: RecordingGitHub,
    git: RecordingGit,
    checks: RecordingChecks,
    clock: FakeClock,
    claude: ScriptedClaude,
    scanner: FakeSecretScan,
) -> Callable[..., Rig]:
    def make(*, fixes: bool = False, **settings: Any) -> Rig:
        """The workflow under `settings`; with `fixes`, Claude fixes failing checks."""
        s = make_settings(**{"pre_merge_commands": COMMANDS, **settings})
        redactor = Redactor([s.token])
        feed = CommentFeed(gh, memory_state)
        heads = PullHeads(gh, memory_state)
        fixer = BranchWork(s, git, claude, scanner, redactor) if fixes else None
        wf = MergeWorkflow(s, memory_state, gh, git, checks, feed, heads, redactor, clock,
                           fixer=fixer)  # fmt: skip
        if fixes:
            # GitHub shows a push to a pull request's branch as its head, as the fake does.
            gh.before("get_pull", lambda number, *_: _synced(gh, number))
        return Rig(s, memory_state, gh, git, checks, clock, feed, heads, wf)

    return make


def _synced(gh: RecordingGitHub, number: int) -> None:
    tip = gh.remote.branches.get(gh.pulls[number].head_ref)
    if tip is not None and tip != gh.pulls[number].head_sha:
        gh.push(number, tip)


@pytest.fixture
def rig(build: Callable[..., Rig]) -> Rig:
    return build()


def moves_main(rig: Rig, rounds: int | None = None) -> Callable[..., None]:
    """A hook that moves `main` (during the checks, say), `rounds` times at most."""
    moved: list[str] = []

    def move(*_: object) -> None:
        if rounds is None or len(moved) < rounds:
            moved.append(sha(f"main-{len(moved) + 1}"))
            rig.gh.remote.branches["main"] = moved[-1]

    return move
