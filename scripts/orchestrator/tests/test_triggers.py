"""No trigger is lost: a fault on any call of a `/merge` or `/review` path delays it, no more."""

from __future__ import annotations

import pytest

from scripts.orchestrator.fakes.model_script import Text
from scripts.orchestrator.state import State, Status, WorkItemType
from scripts.orchestrator.workflows.comment_feed import PENDING_META

from .fixtures_world import World

# More than the client's retries: the call fails for this cycle, as in a GitHub outage. Eight:
# a pull request is read twice in such a cycle (by the view and by the command), with retries.
OUTAGE = 8
REVIEW_TEXT = "## Summary\nFine.\n\n## Findings\nNo findings.\n\n## Verdict\nVERDICT: COMMENT"


def _pull(world: World) -> int:
    world.git.push_branch("topic", {"feature.py": "VALUE = 1\n"}, "work on topic")
    return world.github.create_pull("Change topic", "topic", body="", user="dave")


def _chatter(world: World, number: int) -> None:
    """A later comment: the cursor must not move past the unsettled command to reach it."""
    world.github.advance(5)
    world.github.comment(number, "Thanks!", user="dave")


def _pending(world: World) -> list[int]:
    with State(world.state_file, lock=False) as state:
        return list(state.get_meta(PENDING_META, []))


async def _watching_one_pull(world: World) -> int:
    assert await world.once() == 0
    number = _pull(world)
    assert await world.once() == 0  # the pull request is seen (and reviewed) before the fault
    world.github.advance(1)  # a writer reads it, then comments
    return number


@pytest.mark.parametrize(
    ("method", "path", "waits"),
    [
        ("GET", r"/pulls/\d+$", True),
        ("GET", r"/collaborators/carol/permission$", True),
        # The 👀 is a courtesy: without it the merge goes ahead at once.
        ("POST", r"/issues/comments/\d+/reactions$", False),
    ],
)
async def test_a_writers_merge_survives_a_fault_on_each_call(
    world: World, method: str, path: str, waits: bool
) -> None:
    number = await _watching_one_pull(world)
    world.github.set_permission("carol", "write")
    comment = world.github.comment(number, "/merge", user="carol")
    _chatter(world, number)
    world.github.faults.fail_next(502, count=OUTAGE, method=method, path=path)

    await world.once()  # the command waits; the others would go on
    assert world.github.pull(number)["merged"] is not waits
    assert _pending(world) == ([comment] if waits else [])
    world.github.faults.clear()

    assert await world.once() == 0
    assert world.github.pull(number)["merged"] is True
    assert len(world.github.mutations_named("merge_pull")) == 1
    assert _pending(world) == []
    await world.once()
    assert len(world.github.mutations_named("merge_pull")) == 1
    assert sum("merged as" in c for c in world.bot_comments(number)) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", r"/pulls/\d+$"),
        ("GET", r"/collaborators/eve/permission$"),
        ("POST", r"/issues/\d+/comments$"),
    ],
)
async def test_a_readers_merge_is_refused_once_despite_a_fault(
    world: World, method: str, path: str
) -> None:
    number = await _watching_one_pull(world)
    world.github.set_permission("eve", "read")
    world.github.comment(number, "/merge", user="eve")
    _chatter(world, number)
    world.github.faults.fail_next(502, count=OUTAGE, method=method, path=path)
    await world.once()
    world.github.faults.clear()
    await world.once()
    await world.once()
    replies = world.bot_comments(number)
    assert len(replies) == 1 and "@eve" in replies[0]
    assert world.github.pull(number)["merged"] is False
    assert _pending(world) == []


async def test_an_edited_pending_command_still_counts(world: World) -> None:
    """A command seen before an outage and edited meanwhile is still the same command."""
    number = await _watching_one_pull(world)
    world.github.set_permission("carol", "write")
    comment = world.github.comment(number, "/merge", user="carol")
    _chatter(world, number)
    world.github.faults.fail_next(502, count=OUTAGE, method="GET", path=r"/permission$")
    await world.once()
    world.github.faults.clear()
    world.github.advance(30)
    world.github.edit_comment(comment, "/merge\n\nCI is green now.")
    assert await world.once() == 0
    assert world.github.pull(number)["merged"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", r"/collaborators/carol/permission$"),
        ("POST", r"/issues/comments/\d+/reactions$"),
    ],
)
async def test_a_writers_review_request_survives_a_fault(
    world: World, method: str, path: str
) -> None:
    world.configure(review_on_push=False)
    number = _pull(world)
    assert await world.once() == 0  # open before the first watch: remembered, not reviewed
    world.github.set_permission("carol", "write")
    world.github.advance(1)  # written after the daemon saw the head
    world.github.comment(number, "/review", user="carol")
    _chatter(world, number)
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT)])
    world.github.faults.fail_next(502, count=OUTAGE, method=method, path=path)
    await world.once()  # a failed 👀 is only a missing acknowledgement: the review goes on
    world.github.faults.clear()
    assert await world.once() == 0
    assert len(world.github.reviews_on(number)) == 1
    item = world.item(WorkItemType.PR_REVIEW, number)
    assert item is not None and item.status is Status.DONE
