"""Tests for the workflows built again when a repository's settings file changes: what the old
ones started is not done twice, and commands the new settings rename hold nothing up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.core.repo_config import REPO_CONFIG_PATH
from scripts.orchestrator.core.work import Status, WorkItem, WorkItemType
from scripts.orchestrator.state import State
from scripts.orchestrator.wiring import Adapters, build_workflows
from scripts.orchestrator.workflows import outbox
from scripts.orchestrator.workflows.comment_feed import CURSOR_META, CommentFeed
from scripts.orchestrator.workflows.implement import ImplementWorkflow
from scripts.orchestrator.workflows.pull_heads import PullHeads

from .fixtures_world import World
from .ports_fakes import (
    FakeClock,
    FakeSecretScan,
    MemoryState,
    RecordingChecks,
    RecordingGit,
    Remote,
    ScriptedClaude,
    SettingsFactory,
)
from .ports_fakes_github import RecordingGitHub


async def test_a_write_the_old_workflows_send_is_not_sent_again_by_the_new(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Found by an outside review: each built outbox had its own senders' locks, so a job of
    the old workflows and the new ones' poll posted one comment twice."""
    gh = RecordingGitHub()
    number = gh.add_issue("Failed work")
    gate = gh.gate("create_comment")  # a slow GitHub
    state = MemoryState()
    adapters = Adapters(gh, RecordingGit(tmp_path / "wt", Remote()), ScriptedClaude(),
                        RecordingChecks(), FakeSecretScan(), FakeClock(), Redactor([]))  # fmt: skip
    feed, heads = CommentFeed(gh, state), PullHeads(gh, state)
    old = build_workflows(make_settings(), state, adapters, feed, heads, {})
    new = build_workflows(make_settings(ready_label="go"), state, adapters, feed, heads, {})
    assert isinstance(old[0], ImplementWorkflow) and isinstance(new[0], ImplementWorkflow)
    item = WorkItem(type=WorkItemType.ISSUE, number=number, status=Status.FAILED)
    old[0]._outbox.queue(item, [outbox.comment(number, "failed")])
    job = asyncio.create_task(old[0]._outbox.try_send(number))  # started before the rebuild
    await asyncio.sleep(0)
    poll = asyncio.create_task(new[0].poll())  # the next cycle, on the rebuilt workflows
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(job, poll)
    assert len(gh.bot_comments(number)) == 1


async def test_a_renamed_command_no_longer_holds_the_comment_cursor(world: World) -> None:
    """Found by an outside review: the operator's `/merge`, watched by the workflows built
    before the repository's file was read, held the comment cursor at every start."""
    gh = world.github
    gh.commit(gh.default_branch, {REPO_CONFIG_PATH: 'merge_comment_trigger = "/ship"\n'})
    gh.commit("topic", {"t.txt": "t\n"})
    pull = gh.create_pull("A change", "topic", user="dave")
    assert await world.once() == 0  # the first watch
    cursors = []
    for minute in range(3):
        gh.advance(60)
        gh.set_permission("carol", "write")
        gh.comment(pull, "/merge" if minute == 0 else f"a remark {minute}", user="carol")
        assert await world.once() == 0
        with State(world.state_file, lock=False) as state:
            cursors.append(state.get_meta(CURSOR_META))
    assert cursors[0] < cursors[1] < cursors[2]  # it moves past the old command
    assert gh.mutations_named("merge_pull") == []  # which is not this repository's any more
