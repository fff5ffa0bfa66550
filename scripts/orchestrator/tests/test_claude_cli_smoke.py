"""The real Claude Code CLI, driven through claude-agent-sdk, against the scripted model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    Message,
    ResultError,
    ResultMessage,
    query,
)

from scripts.orchestrator.fakes.git_world import GitWorld, git
from scripts.orchestrator.fakes.model_script import (
    ApiError,
    Hang,
    RecordedRequest,
    Step,
    Text,
    bash,
    invalid_request,
    overloaded,
    write,
)
from scripts.orchestrator.fakes.scripted_model import (
    ScriptedModel,
    bundled_cli_path,
    claude_cli_env,
)

from .fixtures_model import claude_options, wait_until_gone

pytestmark = pytest.mark.skipif(
    not bundled_cli_path().is_file(), reason="claude-agent-sdk wheel without a bundled CLI"
)

RUN_TIMEOUT = 60.0  # generous: one run takes well under a second here


@pytest.fixture
def worktree(git_world: GitWorld) -> Path:
    """A worktree of the daemon's clone on a fresh feature branch, as the daemon would make."""
    path = git_world.clone.parent / "worktrees" / "issue-1"
    git(git_world.clone, "worktree", "add", "--quiet", "-b", "feature/issue-1", str(path))
    return path


async def run_claude(
    prompt: str, options: ClaudeAgentOptions, timeout: float = RUN_TIMEOUT
) -> tuple[list[Message], ResultMessage]:
    """Collect one run's messages; the last one is the ResultMessage."""
    messages: list[Message] = []
    with anyio.fail_after(timeout):
        async for message in query(prompt=prompt, options=options):
            messages.append(message)
    result = messages[-1]
    assert isinstance(result, ResultMessage), messages
    return messages, result


async def test_write_step_creates_the_file_in_the_worktree(
    scripted_model: ScriptedModel,
    claude_env: dict[str, str],
    worktree: Path,
    git_world: GitWorld,
) -> None:
    scripted_model.script(
        write({"greet.py": "def greet() -> str:\n    return 'hi'\n"}), Text("Implemented.")
    )
    options = claude_options(worktree, claude_env, allowed_tools=["Write"])

    started = time.monotonic()
    _, result = await run_claude("Implement issue #1: add greet()", options)
    elapsed = time.monotonic() - started

    assert (worktree / "greet.py").read_text() == "def greet() -> str:\n    return 'hi'\n"
    assert not (git_world.clone / "greet.py").exists()
    assert git(worktree, "status", "--porcelain") == "?? greet.py"
    assert result.is_error is False
    assert result.num_turns == 2
    assert result.result == "Implemented."
    assert result.session_id
    assert result.total_cost_usd is not None and result.total_cost_usd > 0
    first, second = scripted_model.main_requests()
    assert first.cwd == second.cwd == worktree
    assert "Implement issue #1" in first.first_user_text
    assert [(r.tool_name, r.is_error) for r in second.tool_results] == [("Write", False)]
    assert scripted_model.side_requests() == []
    assert scripted_model.unknown_routes == []
    assert elapsed < 30, f"one CLI run took {elapsed:.1f}s"


async def test_review_run_is_offered_only_read_tools(
    scripted_model: ScriptedModel, claude_env: dict[str, str], worktree: Path
) -> None:
    # The model tries to write anyway: the CLI must refuse a tool it never offered.
    scripted_model.script(write({"evil.py": "x = 1\n"}), Text("LGTM"))
    options = claude_options(worktree, claude_env, tools=["Read", "Grep", "Glob"])

    _, result = await run_claude("Review this pull request", options)

    assert result.result == "LGTM"
    requests = scripted_model.main_requests()
    offered = {frozenset(r.direct_tool_names) for r in requests}
    assert offered == {frozenset({"Read", "Grep", "Glob"})}
    # Without ToolSearch, the CLI's deferred placeholder can load nothing.
    assert all("ToolSearch" not in r.tool_names for r in requests)
    (refusal,) = requests[-1].tool_results
    assert refusal.tool_name == "Write" and refusal.is_error
    assert not (worktree / "evil.py").exists()


async def test_bash_output_comes_back_in_the_tool_result(
    scripted_model: ScriptedModel,
    claude_env: dict[str, str],
    claude_home: Path,
    worktree: Path,
) -> None:
    scripted_model.script(bash("env"), Text("Checked."))
    options = claude_options(worktree, claude_env, allowed_tools=["Bash"])

    await run_claude("Show the environment", options)

    (output,) = scripted_model.main_requests()[-1].tool_results
    assert output.tool_name == "Bash" and output.tool_input["command"] == "env"
    assert not output.is_error
    lines = output.text.splitlines()
    assert f"ANTHROPIC_BASE_URL={scripted_model.url}" in lines
    assert f"HOME={claude_home}" in lines


@pytest.mark.parametrize(
    ("step", "status"),
    [(ApiError(), 500), (overloaded(), 529), (invalid_request(), 400)],
    ids=["500", "529-overloaded", "400-invalid"],
)
async def test_api_error_ends_the_run_with_result_error(
    scripted_model: ScriptedModel,
    claude_env: dict[str, str],
    worktree: Path,
    step: ApiError,
    status: int,
) -> None:
    scripted_model.script(step)
    messages: list[Message] = []

    # The CLI first yields a ResultMessage(is_error=True), then exits 1, and the SDK raises.
    with pytest.raises(ResultError) as caught, anyio.fail_after(RUN_TIMEOUT):
        async for message in query(prompt="Go", options=claude_options(worktree, claude_env)):
            messages.append(message)

    assert caught.value.api_error_status == status
    assert caught.value.terminal_reason == "api_error"
    assert caught.value.exit_code == 1
    result = messages[-1]
    assert isinstance(result, ResultMessage)
    assert result.is_error and result.api_error_status == status
    assert str(status) in (result.result or "")


async def test_retried_error_then_success(
    scripted_model: ScriptedModel, claude_home: Path, worktree: Path
) -> None:
    scripted_model.script(overloaded(), Text("Recovered."))
    env = claude_cli_env(scripted_model.url, claude_home, max_retries=1)

    _, result = await run_claude("Go", claude_options(worktree, env))

    assert result.result == "Recovered." and not result.is_error
    assert len(scripted_model.main_requests()) == 2


async def test_hang_is_cut_by_a_timeout_and_the_cli_exits(
    scripted_model: ScriptedModel, claude_env: dict[str, str], worktree: Path
) -> None:
    scripted_model.script(Hang())
    started = time.monotonic()

    # Long enough for the CLI to start and send its request on a loaded machine (1 s was
    # not, once in CI: the run timed out before the request existed).
    timeout = 5.0
    with pytest.raises(TimeoutError):
        await run_claude("Go", claude_options(worktree, claude_env), timeout=timeout)

    # query() closes stdin, then gives the CLI 5 s to finish before SIGTERM: a hung request
    # therefore costs the timeout plus about 5 s.
    assert time.monotonic() - started < timeout + 5.0 + 5.0
    assert len(scripted_model.main_requests()) == 1
    assert wait_until_gone("ANTHROPIC_BASE_URL", scripted_model.url, timeout=5.0) == []


async def test_interrupt_ends_a_hung_run_promptly(
    scripted_model: ScriptedModel, claude_env: dict[str, str], worktree: Path
) -> None:
    scripted_model.script(Hang())
    started = time.monotonic()

    async with ClaudeSDKClient(claude_options(worktree, claude_env)) as client:
        await client.query("Go")
        with anyio.move_on_after(1.0):
            async for _ in client.receive_response():
                pass
        await client.interrupt()
        with anyio.fail_after(10):
            messages = [m async for m in client.receive_response()]

    result = messages[-1]
    assert isinstance(result, ResultMessage)
    assert result.is_error and result.subtype == "error_during_execution"
    assert time.monotonic() - started < 1.0 + 4.0
    assert wait_until_gone("ANTHROPIC_BASE_URL", scripted_model.url, timeout=5.0) == []


async def test_concurrent_runs_follow_their_own_scripts(
    scripted_model: ScriptedModel, claude_env: dict[str, str], git_world: GitWorld
) -> None:
    # Neither run gets its first reply before both have asked: they overlap by construction,
    # not by timing (a loaded machine once started the second CLI after the first finished).
    both_asked = threading.Barrier(2, timeout=60)

    def after_both_asked(step: Step) -> Callable[[RecordedRequest], Step]:
        def answer(_request: RecordedRequest) -> Step:
            both_asked.wait()
            return step

        return answer

    trees = {}
    for issue in ("issue-7", "issue-8"):
        trees[issue] = git_world.clone.parent / "worktrees" / issue
        git(git_world.clone, "worktree", "add", "--quiet", "-b", issue, str(trees[issue]))
        scripted_model.script_for(
            issue,
            [after_both_asked(write({f"{issue}.txt": issue})), Text(f"{issue} done")],
        )
    results: dict[str, ResultMessage] = {}

    async def run(issue: str) -> None:
        options = claude_options(trees[issue], claude_env, allowed_tools=["Write"])
        _, results[issue] = await run_claude(f"Implement {issue}", options)

    async with anyio.create_task_group() as group:
        for issue in trees:
            group.start_soon(run, issue)

    for issue, tree in trees.items():
        assert (tree / f"{issue}.txt").read_text() == issue
        assert results[issue].result == f"{issue} done"
        requests = scripted_model.main_requests(issue)
        assert len(requests) == 2 and len({r.session_id for r in requests}) == 1
    # The runs overlapped: each started before the other's first reply was answered.
    firsts = [scripted_model.main_requests(issue)[0].received_at for issue in trees]
    lasts = [scripted_model.main_requests(issue)[-1].received_at for issue in trees]
    assert max(firsts) < min(lasts)
