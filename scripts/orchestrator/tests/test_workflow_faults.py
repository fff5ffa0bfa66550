"""Reviews and merges under GitHub faults: retried from where they stopped, never doubled."""

from __future__ import annotations

import pytest

from scripts.orchestrator.fakes.model_script import Text
from scripts.orchestrator.state import Status, WorkItemType
from scripts.orchestrator.workflows import merge, review

from .fixtures_world import World
from .test_triggers import REVIEW_TEXT, _pull

FAILING = "import sys\nsys.exit(1)\n"


@pytest.fixture(autouse=True)
def _no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "RETRY_BACKOFF", 0.0)
    monkeypatch.setattr(merge, "CI_POLL", 0.2)


def _review_runs(world: World, number: int) -> int:
    return len({r.session_id for r in world.model.main_requests(f"Review pull request #{number}")})


@pytest.mark.parametrize("applied", [False, True])
async def test_a_review_github_did_not_take_is_posted_without_a_new_run(
    world: World, applied: bool
) -> None:
    """A 502 on `POST .../reviews`, applied or not: one review in the end, one Claude run."""
    assert await world.once() == 0
    number = _pull(world)
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT)])
    world.github.faults.fail_next(502, method="POST", path=r"/reviews$", after=applied)
    await world.once()
    await world.once()
    await world.once()
    assert len(world.github.reviews_on(number)) == 1
    assert _review_runs(world, number) == 1
    item = world.item(WorkItemType.PR_REVIEW, number)
    assert item is not None and item.status is Status.DONE


async def test_a_github_outage_never_fails_a_review(world: World) -> None:
    """Past `MAX_ATTEMPTS` cycles of 502s the review still waits, with no failure comment."""
    assert await world.once() == 0
    number = _pull(world)
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT)])
    for _ in range(review.MAX_ATTEMPTS + 2):
        world.github.faults.fail_next(502, method="POST", path=r"/reviews$")
        await world.once()
    item = world.item(WorkItemType.PR_REVIEW, number)
    assert item is not None and item.status is Status.PENDING
    assert world.bot_comments(number) == []
    await world.once()
    assert len(world.github.reviews_on(number)) == 1
    assert _review_runs(world, number) == 1


@pytest.mark.parametrize("applied", [False, True])
async def test_a_stop_comment_lands_once_despite_a_fault(world: World, applied: bool) -> None:
    world.configure(pre_merge_commands=[f"python3 -c '{FAILING}'"])
    assert await world.once() == 0
    number = _pull(world)
    world.github.set_permission("carol", "write")
    world.request_merge(number)
    world.model.script(Text(REVIEW_TEXT))
    world.github.faults.fail_next(502, method="POST", path=rf"/issues/{number}/comments$",
                                  after=applied)  # fmt: skip
    await world.once()
    await world.once()
    stops = [c for c in world.bot_comments(number) if "not merged" in c]
    assert len(stops) == 1
    item = world.item(WorkItemType.MERGE, number)
    assert item is not None and item.status is Status.FAILED and not item.outbox


async def test_a_fault_on_the_merge_call_does_not_run_the_checks_again(world: World) -> None:
    """The checks passed, then `PUT .../merge` met an outage (not applied): the next attempt
    merges what was tested, without running the commands a second time."""
    marker = world.root / "runs.txt"
    # The check counts its runs in a file outside its worktree, which the sandbox rightly forbids.
    world.configure(pre_merge_commands=[f"echo run >> {marker}"], sandbox="off")
    assert await world.once() == 0
    number = _pull(world)
    world.github.set_permission("carol", "write")
    world.request_merge(number)
    world.model.script(Text(REVIEW_TEXT))
    world.github.faults.fail_next(502, count=6, method="PUT", path=r"/merge$")
    await world.once()
    assert world.github.pull(number)["merged"] is False
    world.github.faults.clear()
    await world.once()
    assert world.github.pull(number)["merged"] is True
    assert marker.read_text().splitlines() == ["run"]
    assert sum("merged as" in c for c in world.bot_comments(number)) == 1


async def test_a_refused_review_is_written_anew(world: World) -> None:
    """GitHub refuses the written review for good (422): it is not posted again as it was;
    the next attempt runs Claude for a new one (the control to the kept review above)."""
    assert await world.once() == 0
    number = _pull(world)
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT), Text(REVIEW_TEXT)])
    world.github.faults.fail_next(
        422, method="POST", path=r"/reviews$", body={"message": "Unprocessable Entity"}
    )
    await world.once()
    await world.once()
    assert len(world.github.reviews_on(number)) == 1
    assert _review_runs(world, number) == 2


async def test_an_outage_does_not_use_up_a_reviews_attempts(world: World) -> None:
    """More GitHub faults than `MAX_ATTEMPTS`: the attempts a failing review has are intact."""
    assert await world.once() == 0
    number = _pull(world)
    for _ in range(review.MAX_ATTEMPTS + 1):
        world.github.faults.fail_next(502, count=6, method="GET", path=r"/pulls/\d+/reviews$")
        await world.once()
        item = world.item(WorkItemType.PR_REVIEW, number)
        assert item is not None and item.status is Status.PENDING and item.attempts == 0
    world.github.faults.clear()
    world.model.script_for(f"Review pull request #{number}", [Text(REVIEW_TEXT)])
    await world.once()
    assert len(world.github.reviews_on(number)) == 1
