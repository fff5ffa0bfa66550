"""A transient fault never costs a user's work: implementing issues under GitHub and git faults."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.orchestrator.core.models import Completed
from scripts.orchestrator.fakes.model_script import ApiError, Text, write
from scripts.orchestrator.state import Status, WorkItemType
from scripts.orchestrator.worktree_manager import GitError, WorktreeManager

from .fixtures_world import World

MARKER = "Implement GitHub issue #1"
REVIEW = "## Summary\nFine.\n\n## Verdict\nVERDICT: COMMENT"
OUTAGE = 6  # more than the client's retries: the call fails for this cycle


def _ready_issue(world: World) -> int:
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(number, "ready", user="alice")
    return number


def _script(world: World) -> None:
    world.model.script_for(
        MARKER,
        [write({"greet.py": "def greet() -> str:\n    return 'hi'\n"}), Text("Added greet.py.")],
    )
    world.model.script(Text(REVIEW))  # the pull request's own review, once it exists


def _pulls(world: World) -> list[dict[str, Any]]:
    numbers = range(1, world.github.next_number())
    return [world.github.pull(n) for n in numbers if "pull_request" in world.github.issue(n)]


def _claude_runs(world: World) -> int:
    """Implementation runs of Claude Code: one session each."""
    return len({r.session_id for r in world.model.main_requests(MARKER)})


async def _until_done(world: World, number: int, cycles: int = 10) -> int:
    for cycle in range(1, cycles + 1):
        await world.once()
        item = world.item(WorkItemType.ISSUE, number)
        if item is not None and item.status is Status.DONE and not item.outbox:
            return cycle
    raise AssertionError(f"issue #{number} not done after {cycles} cycles: {item}")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_flaky_github_delays_the_work_but_never_loses_it(world: World, seed: int) -> None:
    """20 % of requests answered 502 and the first `POST /pulls` too (not applied): one Claude
    run, one pull request, the ready label gone and no failure label or comment."""
    number = _ready_issue(world)
    _script(world)
    world.github.faults.set(seed=seed, fail_rate=0.2)
    world.github.faults.fail_next(502, method="POST", path=r"/pulls$")

    await _until_done(world, number)

    world.github.faults.clear()
    await world.once()
    assert _claude_runs(world) == 1
    assert len(_pulls(world)) == 1
    assert world.github.labels_of(number) == []
    said = world.bot_comments(number)  # the outcome once; a lost answer may cost an edit
    assert len([c for c in said if "done: pull request" in c]) == 1
    assert not any("could not" in c for c in said)


async def test_failure_writes_land_once_despite_faults(world: World) -> None:
    """The failure's answer is lost and the label calls fail for a while: in the end one
    comment (the one that said work started, edited), `ready` gone and `claude-failed` on."""
    number = _ready_issue(world)
    world.model.script_for(MARKER, [ApiError(status=400, times=None)])
    world.github.faults.fail_next(502, method="PATCH", path=r"/issues/comments/\d+$",
                                  after=True)  # fmt: skip
    # A POST is not repeated within a call (it may have been applied): one fault per cycle.
    world.github.faults.fail_next(502, count=3, method="POST", path=r"/labels$")
    for _ in range(5):
        await world.once()
    assert world.github.labels_of(number) == ["claude-failed"]
    failures = world.bot_comments(number)
    assert len(failures) == 1 and "Claude could not implement this issue" in failures[0]
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.FAILED and not item.outbox
    assert _claude_runs(world) == 1


async def test_a_push_that_cannot_reach_github_is_retried_without_claude(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = _ready_issue(world)
    _script(world)
    real = WorktreeManager.push_commit
    calls: list[str] = []

    async def unreachable_once(self: WorktreeManager, sha: str, *args: Any) -> None:
        calls.append(sha)
        if len(calls) == 1:
            stderr = "fatal: unable to access 'https://github.com/acme/widgets/': Could not "
            raise GitError(["push"], Completed(("git",), 128, "", stderr + "resolve host", 1.0))
        await real(self, sha, *args)

    monkeypatch.setattr(WorktreeManager, "push_commit", unreachable_once)
    await world.once()
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.PENDING
    assert not world.git.branch_exists("feature/issue-1") and _pulls(world) == []

    await world.once()
    assert calls[0] == calls[1]  # the same commit, kept from the first attempt
    assert _claude_runs(world) == 1
    assert [p["head"]["sha"] for p in _pulls(world)] == [calls[0]]
    assert world.github.labels_of(number) == []


async def test_a_definite_refusal_still_fails_the_item(world: World) -> None:
    """The control: a 403 that is not a rate limit is GitHub's answer, not a passing fault."""
    number = _ready_issue(world)
    _script(world)
    world.github.faults.fail_next(
        403, method="POST", path=r"/pulls$", body={"message": "Resource not accessible"}
    )
    await world.once()
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.FAILED
    assert world.github.labels_of(number) == ["claude-failed"]
    assert world.git.branch_exists("feature/issue-1")  # the work stays for a human


async def test_a_retry_loses_the_old_failure_label_even_through_a_fault(world: World) -> None:
    number = _ready_issue(world)
    world.github.add_labels(number, "claude-failed", user="alice")
    _script(world)
    world.github.faults.fail_next(502, method="DELETE", path=r"/labels/claude-failed$",
                                  count=OUTAGE)  # fmt: skip
    await _until_done(world, number)
    assert world.github.labels_of(number) == []
    assert _claude_runs(world) == 1 and len(_pulls(world)) == 1
