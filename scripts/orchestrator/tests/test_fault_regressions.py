"""Faults an outside review found in how work survives GitHub faults; each now fails safe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scripts.orchestrator.core.models import Completed
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.fakes.model_script import ApiError, Text, write
from scripts.orchestrator.github_watcher import GitHubClient
from scripts.orchestrator.state import State, Status, WorkItem, WorkItemType
from scripts.orchestrator.workflows import outbox
from scripts.orchestrator.worktree_manager import GitError, WorktreeManager

from .fixtures_world import World
from .ports_fakes_github import RecordingGitHub
from .test_implement import _pulls, _ready_issue, _success_script
from .test_triggers import REVIEW_TEXT, _chatter, _pending, _pull, _watching_one_pull


async def test_a_resumed_update_of_an_open_pull_pushes_the_kept_commit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = _ready_issue(world)
    _success_script(world)
    await world.once()
    assert len(_pulls(world)) == 1
    # A new attempt on top of the open pull request; its push cannot reach GitHub once.
    world.github.add_labels(number, "ready", user="alice")
    world.model.script_for(
        "Implement GitHub issue #1", [write({"more.py": "X = 1\n"}), Text("Added more.py too.")]
    )
    real = WorktreeManager.push_commit
    calls: list[str] = []

    async def unreachable_once(self: WorktreeManager, sha: str, *args: Any) -> None:
        calls.append(sha)
        if len(calls) == 1:
            stderr = "fatal: unable to access 'https://x/': Could not resolve host"
            raise GitError(["push"], Completed(("git",), 128, "", stderr, 1.0))
        await real(self, sha, *args)

    monkeypatch.setattr(WorktreeManager, "push_commit", unreachable_once)
    await world.once()
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.PENDING
    await world.once()
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.DONE
    assert world.git.file_at("feature/issue-1", "more.py") == "X = 1"  # the kept commit
    assert sum("Updated for #1" in c for c in world.bot_comments(_pulls(world)[0]["number"])) == 1


async def test_a_definite_refusal_in_the_outbox_blocks_nothing(world: World) -> None:
    """Issue #1 fails; its failure comment is refused for good (issue deleted: 410 Gone).
    The write is dropped with a log line, and another ready issue is still implemented."""
    one = _ready_issue(world)
    world.model.script_for("Implement GitHub issue #1", [ApiError(status=400, times=None)])
    world.github.faults.fail_next(
        410,
        count=1000,
        method="POST",
        path=rf"/issues/{one}/comments$",
        body={"message": "This issue was deleted"},
    )
    await world.once()
    two = world.github.create_issue("Second", "Write two.py", user="alice")
    world.github.add_labels(two, "ready", user="alice")
    _success_script(world, two)
    for _ in range(3):
        await world.once()
    item1 = world.item(WorkItemType.ISSUE, one)
    assert item1 is not None and not item1.outbox
    item2 = world.item(WorkItemType.ISSUE, two)
    assert item2 is not None and item2.status is Status.DONE, f"#2 never started: {item2}"


async def test_one_unsettleable_merge_blocks_no_later_merge(world: World) -> None:
    """An outsider's /merge whose refusal GitHub refuses for good (a 403) is dropped; it
    neither pins the cursor nor stops a writer's later /merge."""
    number = await _watching_one_pull(world)
    world.github.comment(number, "/merge", user="mallory")
    world.github.faults.fail_next(
        403,
        count=1000,
        method="POST",
        path=rf"/issues/{number}/comments$",
        body={"message": "Resource not accessible by integration"},
    )
    world.github.advance(5)
    world.github.set_permission("carol", "write")
    world.request_merge(number)
    for _ in range(3):
        await world.once()
    assert world.github.pull(number)["merged"] is True, "writer's /merge never acted on"
    assert _pending(world) == []  # the refused one was dropped, not held


async def test_a_lost_merge_answer_and_an_outage_still_clean_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:

    assert await world.once() == 0
    issue = world.github.create_issue("Bug", "fix it", user="alice")
    world.git.push_branch("topic", {"feature.py": "VALUE = 1\n"}, "work on topic")
    number = world.github.create_pull("Fix", "topic", body=f"Closes #{issue}", user="dave")
    assert await world.once() == 0
    world.github.set_permission("carol", "write")
    world.request_merge(number)
    world.github.faults.fail_next(502, method="PUT", path=r"/merge$", after=True)
    real = GitHubClient.merge_pull

    async def merge_then_outage(self: GitHubClient, *a: Any, **k: Any) -> Any:
        try:
            return await real(self, *a, **k)
        except Exception:
            world.github.faults.fail_next(502, count=6, method="GET", path=rf"/pulls/{number}$")
            raise

    monkeypatch.setattr(GitHubClient, "merge_pull", merge_then_outage)
    for _ in range(3):
        await world.once()
    bot = world.bot_comments(number)
    assert world.github.pull(number)["merged"] is True
    assert not any("already merged" in c for c in bot), bot


async def test_two_concurrent_senders_post_once_and_drop_nothing(tmp_path: Any) -> None:
    """A job's `try_send` and the next cycle's `send_all` on the same item."""

    gh = RecordingGitHub()
    gh.add_issue("Failed work")
    gate = gh.gate("create_comment")  # a slow GitHub
    with State(tmp_path / "s.json") as state:
        item = WorkItem(type=WorkItemType.ISSUE, number=1, status=Status.FAILED)
        writes = [
            outbox.comment(1, "failed"),
            outbox.remove_label(1, "ready"),
            outbox.add_label(1, "claude-failed"),
        ]
        box = outbox.Outbox(state, WorkItemType.ISSUE, gh, Redactor([]))
        box.queue(item, writes)
        job = asyncio.create_task(box.try_send(1))
        await asyncio.sleep(0)
        poll = asyncio.create_task(box.send_all())
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(job, poll)
    posted = gh.bot_comments(1)
    assert len(posted) == 1, f"comment posted {len(posted)} times"
    assert gh.called("remove_label") == [(1, "ready")], gh.calls
    assert gh.called("add_labels") == [(1, "claude-failed")], gh.calls


async def test_outbox_text_is_stored_redacted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = _ready_issue(world)
    _success_script(world)
    token = world.github.token

    async def rejected(self: WorktreeManager, sha: str, *args: Any) -> None:
        stderr = (
            f" ! [remote rejected] https://x-access-token:{token}@github.com/a/b (hook declined)"
        )
        raise GitError(["push"], Completed(("git",), 1, "", stderr, 1.0))

    monkeypatch.setattr(WorktreeManager, "push_commit", rejected)
    world.github.faults.fail_next(502, count=6, method="POST", path=rf"/issues/{number}/comments$")
    await world.once()
    text = world.state_file.read_text()
    assert token not in text, "the token is in the state file (outbox write)"


async def test_a_review_request_survives_a_fault_on_the_jobs_get_pull(world: World) -> None:

    world.configure(review_on_push=False)
    number = _pull(world)
    assert await world.once() == 0
    world.github.set_permission("carol", "write")
    world.github.advance(1)  # written after the daemon saw the head
    world.github.comment(number, "/review", user="carol")
    _chatter(world, number)
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT)])
    world.github.faults.fail_next(502, count=6, method="GET", path=rf"/pulls/{number}$")
    await world.once()
    world.github.faults.clear()
    for _ in range(3):
        await world.once()
    assert len(world.github.reviews_on(number)) == 1, "the /review was dropped"


async def test_a_forced_review_of_a_reviewed_head_survives_a_fault(world: World) -> None:

    number = await _watching_one_pull(world)  # reviewed once at its head
    assert len(world.github.reviews_on(number)) == 1
    world.github.set_permission("carol", "write")
    world.github.advance(1)  # written after the daemon saw the head
    world.github.comment(number, "/review", user="carol")
    _chatter(world, number)
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT)])
    world.github.faults.fail_next(502, method="POST", path=rf"/issues/{number}/reactions$")
    await world.once()
    world.github.faults.clear()
    world.github.advance(600)
    for _ in range(3):
        await world.once()
        world.github.advance(600)
    assert len(world.github.reviews_on(number)) == 2, "the /review was dropped"


async def test_a_push_after_an_accepted_merge_is_not_merged(world: World) -> None:
    """The writer saw one head; a push after the trigger was accepted never rides on it."""
    number = await _watching_one_pull(world)
    world.github.set_permission("carol", "write")
    world.request_merge(number)
    # The trigger is accepted; then GitHub's CI cannot be read, so the merge waits a cycle.
    world.github.faults.fail_next(502, count=6, method="GET", path=r"/check-runs$")
    main = world.git.sha("main")
    await world.once()
    world.git.push_branch("topic", {"evil.py": "import os\n"}, "sneaky")
    world.github.faults.clear()
    await world.once()
    assert world.github.pull(number)["merged"] is False
    assert world.git.sha("main") == main
    stops = [c["body"] for c in world.github.comments_on(number) if "pushed after" in c["body"]]
    assert len(stops) == 1
