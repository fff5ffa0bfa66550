"""The closed loop through the real path (fake GitHub over HTTP, real git, the real Claude Code CLI
on the scripted model): follow-ups, review feedback and fixes for failing checks."""

from __future__ import annotations

import shlex
import sys

import pytest

from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.state import Status, WorkItemType
from scripts.orchestrator.workflows import merge

from .fixtures_world import World

GREET = "def greet() -> str:\n    return 'hi'\n"
CONTINUING = "You are continuing work on pull request #"
FIXING = "but its checks failed"


@pytest.fixture(autouse=True)
def _fast_ci_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge, "CI_POLL", 0.2)


async def _daemons_pull(world: World) -> int:
    """An issue the daemon implemented: its pull request's number."""
    issue = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(issue, "ready", user="alice")
    world.model.script_for(f"Implement GitHub issue #{issue}",
                           [write({"greet.py": GREET}), Text("Added greet.py.")])  # fmt: skip
    assert await world.once() == 0
    item = world.item(WorkItemType.ISSUE, issue)
    assert item is not None and item.pr_number is not None
    return item.pr_number


def _tasks(world: World, marker: str) -> list[str]:
    """The prompts of the Claude runs whose task has `marker` (one per run)."""
    return [
        r.first_user_text
        for r in world.model.main_requests()
        if marker in r.first_user_text and not r.all_tool_results
    ]


def _commits(world: World, old: str, new: str) -> int:
    return int(git(world.git.origin, "rev-list", "--count", f"{old}..{new}"))


async def test_a_writers_follow_up_adds_a_commit_and_a_reply(world: World) -> None:
    pull = await _daemons_pull(world)
    before = world.git.sha("feature/issue-1")
    asked = world.github.comment(pull, "/claude add a docstring to greet", user="alice")
    docstring = '"""Greetings."""\n\n' + GREET
    world.model.script_for(CONTINUING, [write({"greet.py": docstring}),
                                        Text("Added a module docstring.")])  # fmt: skip

    assert await world.once() == 0

    assert world.git.file_at("feature/issue-1", "greet.py") == docstring.rstrip("\n")
    assert _commits(world, before, world.git.sha("feature/issue-1")) == 1
    reply = world.bot_comments(pull)[-1]
    assert "@alice done: pushed" in reply and "Added a module docstring." in reply
    task = _tasks(world, CONTINUING)[0]
    assert "add a docstring to greet" in task and "Added greet.py." in task  # the earlier work
    assert world.github.reactions_on_comment(asked) == ["orchestrator-bot:eyes"]
    item = world.item(WorkItemType.FOLLOW_UP, pull)
    assert item is not None and item.status is Status.DONE and item.spent_usd > 0

    assert await world.once() == 0  # asked once, done once
    assert _commits(world, before, world.git.sha("feature/issue-1")) == 1


async def test_a_readers_follow_up_gets_one_reply_and_nothing_else(world: World) -> None:
    pull = await _daemons_pull(world)
    before = world.git.sha("feature/issue-1")
    world.github.comment(pull, "/claude add a backdoor", user="eve")
    again = world.github.comment(pull, "/claude please", user="eve")

    assert await world.once() == 0

    replies = [c for c in world.bot_comments(pull) if "@eve" in c]
    assert len(replies) == 1 and "only people with write access" in replies[0]
    assert world.github.reactions_on_comment(again) == ["orchestrator-bot:-1"]
    assert world.git.sha("feature/issue-1") == before
    assert _tasks(world, CONTINUING) == []
    assert world.item(WorkItemType.FOLLOW_UP, pull) is None or not (
        world.item(WorkItemType.FOLLOW_UP, pull).follow_up.asks  # type: ignore[union-attr]
    )


async def test_a_review_with_two_comments_gets_one_push_and_two_thread_replies(
    world: World,
) -> None:
    pull = await _daemons_pull(world)
    assert await world.once() == 0  # the daemon now watches its pull request's reviews
    before = world.git.sha("feature/issue-1")
    world.github.set_permission("bob", "write")
    world.github.review(pull, "Two things.", "REQUEST_CHANGES", user="bob", comments=[
        {"path": "greet.py", "line": 1, "body": "Call it hello"},
        {"path": "greet.py", "line": 2, "body": "Say hello, not hi"},
    ])  # fmt: skip
    first, second = (c["id"] for c in world.github.review_comments(pull))
    hello = "def hello() -> str:\n    return 'hello'\n"
    world.model.script_for(CONTINUING, [
        write({"greet.py": hello}),
        Text(f"Renamed greet and changed its greeting.\n\nReplies\n{first}: renamed it to "
             f"hello\n{second}: it says hello now"),
    ])  # fmt: skip

    assert await world.once() == 0

    after = world.git.sha("feature/issue-1")
    assert _commits(world, before, after) == 1  # one push for the whole review
    assert world.git.file_at("feature/issue-1", "greet.py") == hello.rstrip("\n")
    replies = {
        c["in_reply_to_id"]: c["body"]
        for c in world.github.review_comments(pull)
        if c["user"]["login"] == "orchestrator-bot"
    }
    assert set(replies) == {first, second}
    assert "renamed it to hello" in replies[first] and after[:12] in replies[first]
    assert "it says hello now" in replies[second]
    assert world.github.requested_reviewers(pull) == ["bob"]
    task = _tasks(world, CONTINUING)[0]
    assert "Call it hello" in task and "Say hello, not hi" in task and "Two things." in task

    assert await world.once() == 0  # the review is answered once
    assert world.git.sha("feature/issue-1") == after
    # The new head is reviewed, though the replies left bodiless reviews of the daemon's on it.
    reviewed = [r["commit_id"] for r in world.github.reviews_on(pull)
                if r["user"]["login"] == "orchestrator-bot" and r["body"]]  # fmt: skip
    assert after in reviewed


async def test_a_readers_review_is_not_acted_on(world: World) -> None:
    pull = await _daemons_pull(world)
    assert await world.once() == 0
    before = world.git.sha("feature/issue-1")
    world.github.set_permission("eve", "read")
    world.github.review(pull, "Delete the tests", "REQUEST_CHANGES", user="eve")

    assert await world.once() == 0

    assert world.git.sha("feature/issue-1") == before
    assert _tasks(world, CONTINUING) == []


def _check(expected: str) -> str:
    """A pre-merge command that passes once greet() returns `expected`."""
    code = f"import greet, sys; sys.exit(greet.greet() != {expected!r})"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


async def test_a_failing_check_is_fixed_by_claude_and_merged_on_the_second_try(
    world: World,
) -> None:
    pull = await _daemons_pull(world)
    world.configure(pre_merge_commands=[_check("hello")])
    hello = "def greet() -> str:\n    return 'hello'\n"
    world.model.script_for(FIXING, [write({"greet.py": hello}),
                                    Text("greet() said hi; the check wants hello.")])  # fmt: skip
    world.request_merge(pull)

    assert await world.once() == 0

    assert world.github.pull(pull)["merged"] is True
    assert "return 'hello'" in world.git.file_at("main", "greet.py")
    item = world.item(WorkItemType.MERGE, pull)
    assert item is not None and item.status is Status.DONE
    assert item.merge.fixes == 1 and len(item.merge.fixed_heads) == 1
    (task,) = _tasks(world, FIXING)
    assert "greet" in task  # it was given the failure
    said = world.bot_comments(pull)
    assert len([c for c in said if "not merged" in c]) == 0  # one merge, no stop comment


async def test_a_check_that_stays_red_stops_after_the_fix_attempts_with_one_comment(
    world: World,
) -> None:
    pull = await _daemons_pull(world)
    world.configure(pre_merge_commands=[_check("never")], auto_fix_attempts=2)
    world.model.script_for(FIXING, [
        write({"greet.py": "def greet() -> str:\n    return 'hello'\n"}), Text("Tried hello."),
        write({"greet.py": "def greet() -> str:\n    return 'hey'\n"}), Text("Tried hey."),
        write({"greet.py": "def greet() -> str:\n    return 'yo'\n"}), Text("Tried yo."),
    ])  # fmt: skip
    world.request_merge(pull)

    assert await world.once() == 0

    assert world.github.pull(pull)["merged"] is False
    item = world.item(WorkItemType.MERGE, pull)
    assert item is not None and item.status is Status.FAILED
    assert item.merge.fixes == 2
    assert len(_tasks(world, FIXING)) == 2  # two runs, not three
    stops = [c for c in world.bot_comments(pull) if "not merged" in c]
    assert len(stops) == 1 and "Claude pushed 2 fix(es)" in stops[0]


async def test_a_red_ci_check_is_fixed_with_what_the_check_said(world: World) -> None:
    pull = await _daemons_pull(world)
    head = world.github.pull(pull)["head"]["sha"]
    world.github.set_check_run(head, "tests", conclusion="failure", title="1 test failed",
                               summary="test_greet: expected 'hello', got 'hi'")  # fmt: skip
    hello = "def greet() -> str:\n    return 'hello'\n"
    world.model.script_for(FIXING, [write({"greet.py": hello}), Text("It says hello now.")])
    world.request_merge(pull)

    assert await world.once() == 0

    (task,) = _tasks(world, FIXING)
    assert "test_greet: expected 'hello', got 'hi'" in task  # the check's own words, quoted
    assert world.github.pull(pull)["merged"] is True  # the fix's head has no red check
    assert "return 'hello'" in world.git.file_at("main", "greet.py")
    item = world.item(WorkItemType.MERGE, pull)
    assert item is not None and item.merge.fixes == 1
