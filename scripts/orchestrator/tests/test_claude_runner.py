"""Tests for Claude runs: the real Claude Code CLI against the scripted model."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from scripts.orchestrator import claude_runner
from scripts.orchestrator.claude_runner import SdkClaudeRunner
from scripts.orchestrator.core.models import (
    IMPLEMENT_TOOLS,
    READ_ONLY_TOOLS,
    ClaudeRequest,
)
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.fakes.model_script import ApiError, Delay, Hang, Text, bash, write
from scripts.orchestrator.fakes.scripted_model import ScriptedModel, bundled_cli_path
from scripts.orchestrator.logs import item_context
from scripts.orchestrator.transcripts import Transcripts

from .fixtures_model import wait_until_gone

TOKEN = "ghp_" + "R" * 36


@pytest.fixture
def runner(claude_env: dict[str, str]) -> SdkClaudeRunner:
    return SdkClaudeRunner(str(bundled_cli_path()), env=claude_env)


def _request(cwd: Path, **changes: object) -> ClaudeRequest:
    fields: dict[str, object] = {
        "prompt": "Implement issue #1: add hello.txt",
        "cwd": cwd,
        "guidelines": "GUIDELINES-MARKER: be careful",
        "tools": IMPLEMENT_TOOLS,
        "max_turns": 5,
        "timeout": 60,
    }
    fields.update(changes)
    return ClaudeRequest(**fields)  # type: ignore[arg-type]


async def test_a_run_writes_files_and_reports_cost_and_turns(
    runner: SdkClaudeRunner, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script(write({"hello.txt": "hi\n"}), Text("Added hello.txt."))
    result = await runner.run(_request(tmp_path))
    assert result.ok, result.error
    assert (tmp_path / "hello.txt").read_text() == "hi\n"
    assert result.text == "Added hello.txt."
    assert result.turns >= 2 and result.cost_usd is not None and result.session_id
    first = scripted_model.main_requests()[0]
    assert "GUIDELINES-MARKER: be careful" in first.system
    assert "Implement issue #1" in first.first_user_text
    assert set(first.direct_tool_names) == set(IMPLEMENT_TOOLS)


async def test_a_long_run_says_at_a_steady_interval_what_it_is_doing(
    runner: SdkClaudeRunner,
    scripted_model: ScriptedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(claude_runner, "PROGRESS_EVERY", 0.2)
    # The model takes its time over the second turn: the run is busy, and says so.
    scripted_model.script(write({"hello.txt": "hi\n"}), Delay(1.5, Text("Added hello.txt.")))
    with caplog.at_level("INFO", logger=claude_runner.__name__):
        result = await runner.run(_request(tmp_path, max_turns=7, timeout=90))
    assert result.ok, result.error
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == f"Claude starts ({', '.join(IMPLEMENT_TOOLS)}; at most 7 turns, 1m30s)"
    working = [line for line in lines if line.startswith("Claude is working: turn 1, using Write")]
    assert working, lines
    assert working[-1].endswith("s") and not any("turn 3" in line for line in lines)


async def test_read_only_runs_are_offered_only_read_tools(
    runner: SdkClaudeRunner, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script(Text("Looks fine."))
    result = await runner.run(_request(tmp_path, tools=READ_ONLY_TOOLS))
    assert result.ok
    assert set(scripted_model.main_requests()[0].direct_tool_names) == set(READ_ONLY_TOOLS)


async def test_the_github_token_never_reaches_claude(
    runner: SdkClaudeRunner,
    scripted_model: ScriptedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GH_TOKEN", TOKEN)
    scripted_model.script(bash("env"), Text("done"))
    result = await runner.run(_request(tmp_path))
    assert result.ok, result.error
    outputs = [r.text for r in scripted_model.main_requests()[-1].all_tool_results]
    assert any("PATH=" in out for out in outputs)  # the command really ran
    assert not any(TOKEN in out for out in outputs)


async def test_an_api_error_is_a_failed_result_with_the_status(
    runner: SdkClaudeRunner, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script(ApiError(status=500))
    result = await runner.run(_request(tmp_path))
    assert not result.ok and not result.timed_out
    assert result.error == "the model API answered 500"


async def test_a_hung_model_is_cut_by_the_timeout_and_leaves_no_process(
    runner: SdkClaudeRunner, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script(Hang())
    result = await runner.run(_request(tmp_path, timeout=1))
    assert result.timed_out and not result.ok
    assert "within 1 seconds (CLAUDE_TIMEOUT)" in (result.error or "")
    assert wait_until_gone("ANTHROPIC_BASE_URL", scripted_model.url) == []


async def test_a_command_left_running_by_claude_is_reaped(
    runner: SdkClaudeRunner, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script(bash("setsid sleep 300 >/dev/null 2>&1 & echo started"), Text("ok"))
    result = await runner.run(_request(tmp_path))
    assert result.ok, result.error
    assert wait_until_gone("ANTHROPIC_BASE_URL", scripted_model.url) == []


async def test_max_turns_exhausted_is_reported(
    runner: SdkClaudeRunner, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script(*[bash(f"echo {n}") for n in range(5)])
    result = await runner.run(_request(tmp_path, max_turns=2))
    assert not result.ok
    assert "MAX_TURNS" in (result.error or "")


# -- transcripts ----------------------------------------------------------------------------


def _with_transcripts(
    claude_env: dict[str, str], log_dir: Path, max_bytes: int = 1_000_000
) -> SdkClaudeRunner:
    transcripts = Transcripts(
        log_dir, max_bytes=max_bytes, retention=timedelta(days=14), redactor=Redactor([TOKEN])
    )
    return SdkClaudeRunner(str(bundled_cli_path()), env=claude_env, transcripts=transcripts)


async def test_each_run_is_kept_as_a_redacted_transcript_the_log_names(
    claude_env: dict[str, str],
    scripted_model: ScriptedModel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = _with_transcripts(claude_env, tmp_path / "logs")
    work = tmp_path / "work"
    work.mkdir()
    scripted_model.script(bash(f"echo {TOKEN}"), Text(f"Done; the token was {TOKEN}."))
    with item_context("issue#12"), caplog.at_level("INFO", logger=claude_runner.__name__):
        result = await runner.run(_request(work))
    assert result.ok, result.error

    [path] = (tmp_path / "logs" / "issue-12").iterdir()
    assert path.name.endswith("Z.jsonl")
    assert f"Claude's transcript: {path}" in [r.getMessage() for r in caplog.records]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert TOKEN not in text  # the command's output and Claude's words are both redacted
    lines = [json.loads(line) for line in text.splitlines()]
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "request" and lines[0]["item"] == "issue#12"
    assert "Implement issue #1" in lines[0]["prompt"]
    assert {"AssistantMessage", "UserMessage", "ResultMessage"} <= set(kinds)
    assert kinds[-1] == "end" and lines[-1]["ok"] is True
    assert any(block.get("name") == "Bash" for line in lines for block in line.get("content", [])
               if isinstance(block, dict))  # fmt: skip


async def test_a_long_run_is_cut_at_the_cap(
    claude_env: dict[str, str], scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    runner = _with_transcripts(claude_env, tmp_path / "logs", max_bytes=3_000)
    scripted_model.script(*[bash(f"echo {'x' * 200} {n}") for n in range(4)], Text("done"))
    with item_context("pr_review#3"):
        result = await runner.run(_request(tmp_path, max_turns=9))
    assert result.ok, result.error
    [path] = (tmp_path / "logs" / "pr_review-3").iterdir()
    assert path.stat().st_size <= 3_000
    last = json.loads(path.read_text().splitlines()[-1])
    assert last == {"type": "cut", "note": "transcript cut at 3000 bytes"}


async def test_an_unwritable_log_dir_never_fails_a_run(
    claude_env: dict[str, str],
    scripted_model: ScriptedModel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    runner = _with_transcripts(claude_env, blocker / "logs")
    scripted_model.script(Text("first"))
    scripted_model.script(Text("second"))
    with caplog.at_level("INFO"):
        assert (await runner.run(_request(tmp_path))).ok
        assert (await runner.run(_request(tmp_path))).ok
    said = [r.getMessage() for r in caplog.records]
    assert len([line for line in said if "cannot write Claude's transcripts" in line]) == 1
    assert not any(line.startswith("Claude's transcript:") for line in said)
