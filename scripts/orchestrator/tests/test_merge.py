"""End-to-end tests of the merge workflow: fake GitHub, real git, real commands."""

from __future__ import annotations

import asyncio
import shlex
import sys
import uuid

import pytest

from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.state import Status, WorkItemType
from scripts.orchestrator.workflows import merge

from .fixtures_model import wait_until_gone
from .fixtures_world import World

PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"


@pytest.fixture(autouse=True)
def _fast_ci_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge, "CI_POLL", 0.2)


async def _watching(world: World) -> None:
    assert await world.once() == 0


def _pull(world: World, branch: str = "topic", files: dict[str, str] | None = None,
          body: str = "") -> int:  # fmt: skip
    world.git.push_branch(branch, files or {"feature.py": "VALUE = 1\n"}, f"work on {branch}")
    return world.github.create_pull(f"Change {branch}", branch, body=body, user="dave")


def _merge_request(world: World, number: int, user: str = "carol") -> int:
    return world.request_merge(number, user)


async def test_happy_path(world: World) -> None:
    world.configure(pre_merge_commands=[PYTEST])
    issue = world.github.create_issue("Add a feature", user="alice")
    await _watching(world)
    number = _pull(world, body=f"Adds the feature.\n\nCloses #{issue}")
    main_before = world.git.sha("main")
    comment = _merge_request(world, number)

    assert await world.once() == 0

    main = world.git.sha("main")
    assert git(world.git.origin, "rev-parse", f"{main}^") == main_before  # one commit
    assert git(world.git.origin, "rev-list", "--count", f"{main}^@") == "1"  # a squash
    assert world.git.file_at("main", "feature.py") == "VALUE = 1"
    assert not world.git.branch_exists("topic")
    assert world.github.issue(issue)["state"] == "closed"
    assert world.github.pull(number)["merged"] is True
    assert world.github.reactions_on_comment(comment) == ["orchestrator-bot:eyes"]
    merge_calls = world.github.mutations_named("merge_pull")
    assert [m.body["sha"] for m in merge_calls] == [world.github.pull(number)["head"]["sha"]]
    assert merge_calls[0].body["merge_method"] == "squash"
    summary = world.bot_comments(number)
    assert len(summary) == 1
    assert "merged as" in summary[0] and main[:12] in summary[0]
    assert "pytest" in summary[0] and "passed" in summary[0]
    item = world.item(WorkItemType.MERGE, number)
    assert item is not None and item.status is Status.DONE

    mutations = len(world.github.mutations)
    await world.once()
    await world.once()
    assert len(world.github.mutations) == mutations  # nothing twice


async def test_a_readers_merge_is_refused_with_one_reply(world: World) -> None:
    await _watching(world)
    number = _pull(world)
    world.github.set_permission("eve", "read")
    world.github.comment(number, "/merge", user="eve")
    await world.once()
    await world.once()
    replies = world.bot_comments(number)
    assert len(replies) == 1 and "@eve" in replies[0] and "write access" in replies[0]
    assert world.github.pull(number)["merged"] is False


async def test_merge_quoted_in_prose_is_ignored(world: World) -> None:
    await _watching(world)
    number = _pull(world)
    world.github.set_permission("carol", "write")
    world.github.comment(number, "Please don't /merge yet", user="carol")
    world.github.comment(number, "LGTM\n/merge", user="carol")
    await world.once()
    assert world.github.pull(number)["merged"] is False
    assert world.bot_comments(number) == []


async def test_disabled_auto_merge_ignores_triggers(world: World) -> None:
    world.configure(auto_merge_enabled=False)
    await _watching(world)
    number = _pull(world)
    _merge_request(world, number)
    await world.once()
    assert world.github.pull(number)["merged"] is False
    assert world.bot_comments(number) == []


async def test_a_failing_command_puts_its_output_in_the_comment(world: World) -> None:
    world.configure(pre_merge_commands=["echo all good", PYTEST])
    await _watching(world)
    number = _pull(world, files={"test_broken.py": "def test_x():\n    assert 1 == 2\n"})
    _merge_request(world, number)
    await world.once()
    await world.once()
    comments = world.bot_comments(number)
    assert len(comments) == 1
    assert "not merged" in comments[0] and "pytest" in comments[0]
    assert "assert 1 == 2" in comments[0] and "exited with code 1" in comments[0]
    assert world.github.pull(number)["merged"] is False
    assert world.git.branch_exists("topic")


async def test_a_timed_out_command_leaves_no_process(world: World) -> None:
    tag = uuid.uuid4().hex
    world.configure(
        check_timeout=1, pre_merge_commands=[f"TAG={tag} sleep 300 & TAG={tag} sleep 300"]
    )
    await _watching(world)
    number = _pull(world)
    _merge_request(world, number)
    await world.once()
    assert "timed out after" in world.bot_comments(number)[0]
    assert wait_until_gone("TAG", tag) == []
    assert world.github.pull(number)["merged"] is False


async def test_a_failing_check_run_blocks_the_merge(world: World) -> None:
    await _watching(world)
    number = _pull(world)
    head = world.git.sha("topic")
    world.github.set_check_run(head, "build", status="completed", conclusion="success")
    world.github.set_check_run(head, "lint", status="completed", conclusion="failure")
    _merge_request(world, number)
    await world.once()
    comments = world.bot_comments(number)
    assert len(comments) == 1 and "lint" in comments[0] and "CI failed" in comments[0]
    assert world.github.pull(number)["merged"] is False


async def test_no_statuses_at_all_does_not_block(world: World) -> None:
    await _watching(world)
    number = _pull(world)
    _merge_request(world, number)
    await world.once()
    assert world.github.pull(number)["merged"] is True


async def test_pending_ci_past_the_bound_gets_a_comment(world: World) -> None:
    world.configure(ci_wait_timeout=1)
    await _watching(world)
    number = _pull(world)
    world.github.set_status(world.git.sha("topic"), "ci/slow", "pending")
    _merge_request(world, number)
    await world.once()
    comments = world.bot_comments(number)
    assert len(comments) == 1 and "still running" in comments[0] and "ci/slow" in comments[0]
    assert world.github.pull(number)["merged"] is False


async def test_ci_that_turns_green_while_waiting_merges(world: World) -> None:
    world.configure(ci_wait_timeout=30, pre_merge_commands=[
        f"{shlex.quote(sys.executable)} -c 'print(1)'"])  # fmt: skip
    await _watching(world)
    number = _pull(world)
    head = world.git.sha("topic")
    world.github.set_check_run(head, "build", status="in_progress")
    _merge_request(world, number)
    task = asyncio.create_task(world.once())
    for _ in range(200):
        if world.github.requests_to("GET", f"/commits/{head}/check-runs")[2:]:
            break
        await asyncio.sleep(0.05)
    world.github.set_check_run(head, "build", status="completed", conclusion="success")
    assert await task == 0
    assert world.github.pull(number)["merged"] is True


async def test_the_head_moving_after_the_tests_goes_down_the_409_path(world: World) -> None:
    origin = shlex.quote(str(world.git.origin))
    push = (
        "d=$(mktemp -d) && git clone -q " + origin + " $d && cd $d && git checkout -q topic && "
        "git -c user.name=x -c user.email=x@x commit -q --allow-empty -m late && "
        "git push -q origin topic"
    )
    # The check plays a colleague pushing to origin meanwhile: the sandbox rightly forbids that.
    world.configure(pre_merge_commands=[push], sandbox="off")
    await _watching(world)
    number = _pull(world)
    _merge_request(world, number)
    await world.once()
    comments = world.bot_comments(number)
    assert len(comments) == 1 and "new commits arrived" in comments[0] and "/merge" in comments[0]
    assert world.github.pull(number)["merged"] is False


async def test_a_conflict_names_the_files(world: World) -> None:
    await _watching(world)
    number = _pull(world, files={"calc.py": "def add(a, b):\n    return b + a\n"})
    world.git.push_branch("main", {"calc.py": "def add(a, b):\n    return a + b  # main\n"})
    _merge_request(world, number)
    await world.once()
    comments = world.bot_comments(number)
    assert len(comments) == 1 and "conflicts" in comments[0] and "`calc.py`" in comments[0]


async def test_two_merges_on_one_base_are_tested_one_on_top_of_the_other(world: World) -> None:
    world.configure(pre_merge_commands=[PYTEST])
    await _watching(world)
    first = _pull(world, "one", files={"calc.py": "def add(a, b):\n    return a + b  # one\n"})
    second = _pull(world, "two", files={"calc.py": "def add(a, b):\n    return a + b  # two\n"})
    _merge_request(world, first)
    _merge_request(world, second)
    await world.once()
    assert world.github.pull(first)["merged"] is True
    assert world.github.pull(second)["merged"] is False
    comments = world.bot_comments(second)
    assert len(comments) == 1 and "conflicts" in comments[0] and "`calc.py`" in comments[0]
    assert world.git.file_at("main", "calc.py").endswith("# one")


async def test_a_second_merge_is_tested_on_the_first_merges_result(world: World) -> None:
    # The second pull request's test fails only once the first one's change is on main.
    check = f"{shlex.quote(sys.executable)} -c \"import os,sys; sys.exit(os.path.exists('a.py') and os.path.exists('b.py'))\""  # noqa: E501
    world.configure(pre_merge_commands=[check])
    await _watching(world)
    first = _pull(world, "one", files={"a.py": "A = 1\n"})
    second = _pull(world, "two", files={"b.py": "B = 1\n"})
    _merge_request(world, first)
    _merge_request(world, second)
    await world.once()
    assert world.github.pull(first)["merged"] is True
    assert world.github.pull(second)["merged"] is False
    assert "exited with code 1" in world.bot_comments(second)[0]


async def test_an_error_after_the_merge_finishes_on_the_next_run(world: World) -> None:
    issue = world.github.create_issue("Linked", user="alice")
    await _watching(world)
    number = _pull(world, body=f"Fixes #{issue}")
    _merge_request(world, number)
    # GitHub fails the summary comment in this run (a POST is not retried blindly).
    world.github.faults.fail_next(502, method="POST", path=r"/issues/\d+/comments$")
    await world.once()
    assert world.github.pull(number)["merged"] is True
    waiting = world.item(WorkItemType.MERGE, number)
    assert waiting is not None and waiting.outbox  # the summary, not yet posted
    await world.once()
    await world.once()
    assert len(world.github.mutations_named("merge_pull")) == 1
    summaries = world.bot_comments(number)
    assert len(summaries) == 1 and "merged as" in summaries[0]
    assert world.github.issue(issue)["state"] == "closed"
    assert world.item(WorkItemType.MERGE, number).status is Status.DONE  # type: ignore[union-attr]


async def test_merge_on_an_issue_gets_a_reply(world: World) -> None:
    await _watching(world)
    issue = world.github.create_issue("Not a PR", user="alice")
    world.github.set_permission("carol", "write")
    world.github.comment(issue, "/merge", user="carol")
    await world.once()
    await world.once()
    replies = world.bot_comments(issue)
    assert len(replies) == 1 and "open pull requests only" in replies[0]


async def test_a_lost_merge_answer_is_recognised(world: World) -> None:
    await _watching(world)
    number = _pull(world)
    _merge_request(world, number)
    # GitHub merges, but the answer is lost; the retried PUT would get 405.
    world.github.faults.fail_next(502, method="PUT", path=r"/merge$", after=True)
    await world.once()
    assert world.github.pull(number)["merged"] is True
    comments = world.bot_comments(number)
    assert len(comments) == 1 and "merged as" in comments[0] and "not merged" not in comments[0]


async def test_cleanup_follows_github_for_other_bases(world: World) -> None:
    issue = world.github.create_issue("Linked", user="alice")
    await _watching(world)
    world.git.push_branch("develop", {"dev.txt": "dev\n"})
    world.git.push_branch("topic", {"t.txt": "t\n"}, base="develop")
    number = world.github.create_pull(
        "Into develop", "topic", base="develop", body=f"Fixes #{issue}"
    )
    world.git.push_branch("feature-on-topic", {"f.txt": "f\n"}, base="topic")
    world.github.create_pull("Stacked", "feature-on-topic", base="topic", user="dave")
    _merge_request(world, number)
    await world.once()
    assert world.github.pull(number)["merged"] is True
    assert world.github.issue(issue)["state"] == "open"  # not the default branch: GitHub keeps it
    assert world.git.branch_exists("topic")  # another open pull request targets it


@pytest.mark.parametrize("pushed_after", [True, False])
async def test_only_a_head_the_writer_could_have_seen_is_merged(
    world: World, pushed_after: bool
) -> None:
    """The attack: the pull request's author pushes right after a writer's `/merge`, before
    the daemon's next look. The control: without that push, the same `/merge` merges."""
    await _watching(world)
    number = _pull(world)
    await world.once()  # the daemon sees the pull request's head
    world.github.advance(1)
    world.github.set_permission("carol", "write")
    world.github.comment(number, "/merge", user="carol")
    if pushed_after:
        world.github.advance(1)
        world.git.push_branch("topic", {"backdoor.py": "STOLEN = True\n"}, "one more thing")

    await world.once()

    merged = world.github.pull(number)["merged"]
    on_main = git(world.git.origin, "ls-tree", "--name-only", "main")
    if pushed_after:
        assert not merged and "backdoor.py" not in on_main
        head = world.github.pull(number)["head"]["sha"]
        (reply,) = [c for c in world.bot_comments(number) if "nothing was merged" in c]
        assert f"`/merge {head}`" in reply
    else:
        assert merged and "feature.py" in on_main


async def test_a_flood_of_outsiders_commands_buys_one_reply(world: World) -> None:
    """The attack: 15 `/merge` comments by an outsider on a pull request, and 15 on an issue,
    once made 30 replies. The control: a writer's `/merge` in the same cycle still merges."""
    await _watching(world)
    number = _pull(world)
    issue = world.github.create_issue("Something else", user="alice")
    flood = [world.github.comment(number, "/merge", user="mallory") for _ in range(15)]
    for _ in range(15):
        world.github.comment(issue, "/merge", user="mallory")
    _merge_request(world, number)

    assert await world.once() == 0

    refusals = [c for c in world.bot_comments(number) if "@mallory only people" in c]
    assert len(refusals) == 1 and world.bot_comments(issue) == []
    thumbs = [c for c in flood if world.github.reactions_on_comment(c) == ["orchestrator-bot:-1"]]
    assert len(thumbs) == 14
    assert world.github.pull(number)["merged"] is True
