"""Budgets through the real path: the real Claude Code CLI stops at CLAUDE_MAX_BUDGET_USD on the
scripted model, the work so far is pushed, and the spend is in the state; the day's budget."""

from __future__ import annotations

from scripts.orchestrator.claude_slots import DAILY_SPEND_META
from scripts.orchestrator.core.budget import day_of
from scripts.orchestrator.core.work import utcnow
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.state import State, Status, WorkItemType

from .fixtures_world import World


def _ready_issue(world: World) -> int:
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(number, "ready", user="alice")
    return number


async def test_a_run_that_reaches_its_budget_stops_with_its_work_pushed(world: World) -> None:
    number = _ready_issue(world)
    world.model.script_for(
        f"Implement GitHub issue #{number}",
        [
            write({"greet.py": "def greet() -> str:\n    return 'hi'\n"}),
            write({"farewell.py": "BYE = 1\n"}),
            Text("Done."),
        ],
    )
    # The CLI prices the scripted model's tokens: its first turn costs about $0.0052 and the
    # second about twice that (it carries the first), so this budget stops the run at its
    # second turn, while that turn's Write is half done.
    world.configure(claude_max_budget_usd=0.0078)
    assert await world.once() == 0
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.FAILED
    assert item.runs == 1 and item.spent_usd > 0.0078  # what the CLI said the run cost
    kept = item.issue.kept_sha
    assert kept is not None
    assert "greet()" in world.git.file_at("feature/issue-1", "greet.py")  # the first turn's
    files = world.git.files_at("feature/issue-1")
    assert not [f for f in files if ".tmp." in f], files  # no half-written file
    said = world.bot_comments(number)[-1]
    assert "stopped at its budget" in said and f"commit {kept[:12]}" in said
    assert len(world.model.main_requests()) < 3  # it stopped: the script was not played out
    request = world.model.main_requests()[0]
    assert request.system  # a real CLI's request
    with State(world.state_file, lock=False) as state:
        assert state.get_meta(DAILY_SPEND_META)[day_of(utcnow())] == item.spent_usd


async def test_a_spent_day_starts_no_run_until_the_next(world: World) -> None:
    number = _ready_issue(world)
    world.configure(daily_max_budget_usd=1.0)
    with State(world.state_file) as state:
        state.set_meta(DAILY_SPEND_META, {day_of(utcnow()): 1.0})
    assert await world.once() == 0
    assert world.model.main_requests() == []  # no Claude run
    assert world.item(WorkItemType.ISSUE, number) is None  # nothing started, nothing failed
    assert "ready" in world.github.labels_of(number) and world.bot_comments(number) == []
    with State(world.state_file) as state:  # the next day
        state.set_meta(DAILY_SPEND_META, {"2000-01-01": 1.0})
    world.model.script_for(f"Implement GitHub issue #{number}",
                           [write({"greet.py": "X = 1\n"}), Text("Done.")])  # fmt: skip
    assert await world.once() == 0
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.DONE and item.spent_usd > 0


async def test_a_run_stopped_by_the_days_rest_keeps_its_work_and_goes_on_the_next_day(
    world: World,
) -> None:
    number = _ready_issue(world)
    world.model.script_for(
        f"Implement GitHub issue #{number}",
        [
            write({"greet.py": "def greet() -> str:\n    return 'hi'\n"}),
            write({"farewell.py": "BYE = 1\n"}),
            Text("Done."),
        ],
    )
    # Two slots share the day's $0.0156: this run may spend $0.0078, which stops it in its
    # second turn (as in the first test); the day, not the run's own cap, bounded it.
    world.configure(daily_max_budget_usd=0.0156, max_concurrent=2)
    assert await world.once() == 0
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.PENDING  # waits; nothing failed
    kept = item.issue.kept_sha
    assert kept is not None and world.git.sha("feature/issue-1") == kept
    assert "ready" in world.github.labels_of(number)
    assert "claude-failed" not in world.github.labels_of(number)
    with State(world.state_file) as state:  # the next day
        state.set_meta(DAILY_SPEND_META, {"2000-01-01": 1.0})
    world.configure(daily_max_budget_usd=1.0)
    runs = len(world.model.main_requests())
    assert await world.once() == 0  # the script's rest: "Done." (the kept work is whole)
    assert len(world.model.main_requests()) > runs  # Claude went on from the kept work
    item = world.item(WorkItemType.ISSUE, number)
    assert item is not None and item.status is Status.DONE and item.pr_number is not None
    assert "greet()" in world.git.file_at("feature/issue-1", "greet.py")  # the kept work
    assert item.runs == 2 and item.issue.kept_sha is None
