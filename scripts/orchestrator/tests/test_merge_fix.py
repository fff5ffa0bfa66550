"""Claude's fixes for a failing `/merge`, on the port fakes: only on the daemon's own branch, each
on the tested head, the head still pinned (a person's push stops the merge), once across
restarts, and at most AUTO_FIX_ATTEMPTS times."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest

from scripts.orchestrator.core.work import Status

from .merge_rig import Rig, build  # noqa: F401  (the fixture `fixing` wraps)
from .ports_fakes import (
    UNIT_TOKEN,
    ScriptedClaude,
    sha,
)
from .ports_fakes_github import BOT

BRANCH = "feature/issue-1"


@pytest.fixture
def fixing(build: Callable[..., Rig]) -> Callable[..., Rig]:  # noqa: F811
    """merge_rig's workflow, with Claude's fixes."""
    return functools.partial(build, fixes=True)


def _failing_once(rig: Rig, output: str = "FAILED test_greet - assert 'hi' == 'hello'") -> None:
    """`pytest -q` fails on the first run and passes after."""
    rig.checks.set("pytest -q", 1, output)
    rig.checks.before(
        "run",
        lambda *_: (
            rig.checks.set("pytest -q", 1, output)
            if len(rig.checks.called("run")) == 1
            else rig.checks.set("pytest -q", 0)
        ),
    )


def _own(rig: Rig) -> tuple[int, str]:
    number = rig.gh.add_pull(BRANCH, author=BOT)
    return number, rig.request(number)


async def test_a_failing_check_is_fixed_on_the_tested_head_and_the_fix_is_merged(
    fixing: Callable[..., Rig], claude: ScriptedClaude
) -> None:
    rig = fixing()
    number, head = _own(rig)
    _failing_once(rig, f"token {UNIT_TOKEN} leaked; assert 'hi' == 'hello'")
    claude.succeed("It said hi.", {"greet.py": "GREETING = 'hello'\n"})

    await rig.wf.run(number)

    ((fix, branch),) = rig.git.pushes
    assert branch == BRANCH and rig.git.called("push_commit")[0] == (fix, BRANCH, head)
    (request,) = claude.requests
    assert "assert 'hi' == 'hello'" in request.prompt and UNIT_TOKEN not in request.prompt
    assert tuple(request.setting_sources) == ()
    assert rig.gh.called("merge_pull")[0][1] == fix  # the fix, tested, is what lands
    item = rig.item(number)
    assert item.status is Status.DONE and item.merge.fixes == 1
    assert item.merge.fixed_heads == (fix,) and item.merge.requested_head == fix
    assert len(rig.checks.called("run")) == 2


@pytest.mark.parametrize(
    ("pull", "settings"),
    [
        ({"author": "dave"}, {}),  # another author's branch: theirs to fix
        ({"author": BOT, "fork": True}, {}),
        ({"author": BOT}, {"auto_fix_attempts": 0}),
    ],
)
async def test_no_fix_where_it_is_not_the_daemons_to_make(
    fixing: Callable[..., Rig], claude: ScriptedClaude, pull: dict[str, Any],
    settings: dict[str, Any],
) -> None:  # fmt: skip
    rig = fixing(**settings)
    number, _ = rig.requested(branch=BRANCH, **pull)
    rig.checks.set("pytest -q", 1, "FAILED")

    await rig.wf.run(number)

    assert claude.requests == [] and rig.git.pushes == []
    said = rig.one_comment(number)
    assert "not merged" in said and "fix" not in said
    assert rig.item(number).status is Status.FAILED


async def test_a_persons_push_after_the_fix_stops_the_merge(
    fixing: Callable[..., Rig], claude: ScriptedClaude
) -> None:
    rig = fixing()
    number, _ = _own(rig)
    rig.checks.set("pytest -q", 1, "FAILED")
    claude.succeed("Fixed.", {"greet.py": "X = 1\n"})
    theirs = sha("carol")
    # Once the fix is pushed, a person pushes on top of it before the merge tests it.
    rig.git.before("fetch_pull_head", lambda n: rig.gh.push(n, theirs) if rig.git.pushes else None)

    await rig.wf.run(number)

    assert rig.gh.called("merge_pull") == []
    assert f"pushed after the request (the head is now {theirs[:12]})" in rig.one_comment(number)
    assert rig.item(number).status is Status.FAILED


async def test_a_push_before_the_fix_lands_keeps_the_persons_commit(
    fixing: Callable[..., Rig], claude: ScriptedClaude
) -> None:
    rig = fixing()
    number, _ = _own(rig)
    rig.checks.set("pytest -q", 1, "FAILED")
    claude.succeed("Fixed.", {"greet.py": "X = 1\n"})
    theirs = sha("carol")
    claude.before("run", lambda *_: rig.gh.push(number, theirs))

    await rig.wf.run(number)

    assert rig.gh.remote.branches[BRANCH] == theirs and rig.git.pushes == []
    said = rig.one_comment(number)
    assert "pushing the fix" in said and "refused" in said


async def test_a_check_that_stays_red_stops_after_the_attempts_with_one_comment(
    fixing: Callable[..., Rig], claude: ScriptedClaude
) -> None:
    rig = fixing(auto_fix_attempts=2)
    number, _ = _own(rig)
    rig.checks.set("pytest -q", 1, "FAILED for good")
    claude.succeed("Try 1.", {"a.py": "A = 1\n"})
    claude.succeed("Try 2.", {"a.py": "A = 2\n"})

    await rig.wf.run(number)

    assert len(claude.requests) == 2 and len(rig.git.pushes) == 2
    said = rig.one_comment(number)
    assert "Claude pushed 2 fix(es)" in said and "FAILED for good" in said
    assert "fix 2 of at most 2" in claude.requests[1].prompt


async def test_a_fix_pushed_before_a_restart_is_adopted_not_refused(
    fixing: Callable[..., Rig],
) -> None:
    rig = fixing()
    number, _ = _own(rig)
    fix = sha("fix")
    rig.state.put(rig.item(number).with_facts(fixes=1, fixed_heads=(fix,), fix_sha=fix))
    rig.gh.push(number, fix)  # it landed; the daemon died before recording it

    await rig.wf.run(number)

    assert rig.gh.called("merge_pull")[0][1] == fix
    assert rig.item(number).status is Status.DONE


async def test_a_fix_not_pushed_before_a_restart_is_forgotten(
    fixing: Callable[..., Rig], claude: ScriptedClaude
) -> None:
    rig = fixing()
    number, head = _own(rig)
    rig.state.put(rig.item(number).with_facts(fixes=1, fixed_heads=(sha("lost"),),
                                              fix_sha=sha("lost")))  # fmt: skip

    await rig.wf.run(number)  # the checks pass on the head asked for

    assert rig.gh.called("merge_pull")[0][1] == head and claude.requests == []


async def test_other_merges_into_the_base_go_on_while_claude_fixes(
    fixing: Callable[..., Rig], claude: ScriptedClaude
) -> None:
    rig = fixing()
    number, _ = _own(rig)
    _failing_once(rig)
    claude.succeed("Fixed.", {"greet.py": "X = 1\n"})
    slow = claude.gate("run")  # Claude's fix takes its time
    other, _ = rig.requested(branch="topic")
    task = asyncio.create_task(rig.wf.run(number))
    await wait_for(lambda: claude.called("run"))

    await asyncio.wait_for(rig.wf.run(other), timeout=10)  # not behind the fix

    assert rig.gh.pulls[other].merged and not task.done()
    main_after_other = rig.gh.remote.branches["main"]
    slow.set()
    await asyncio.wait_for(task, timeout=10)
    assert rig.gh.pulls[number].merged
    # The fix was tested on the base the other merge made.
    (_, tested_base, tested_head) = rig.git.called("merge_worktree")[-1]
    assert tested_base == main_after_other and tested_head == rig.git.pushes[0][0]


async def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
