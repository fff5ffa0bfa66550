"""Pytest fixtures for the scripted model and for real Claude Code CLI runs against it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from claude_agent_sdk import ClaudeAgentOptions

from scripts.orchestrator.fakes.scripted_model import (
    ScriptedModel,
    bundled_cli_path,
    claude_cli_env,
)
from scripts.orchestrator.proc import processes_with_env

__all__ = [
    "claude_env",
    "claude_home",
    "claude_options",
    "processes_with_env",
    "scripted_model",
    "wait_until_gone",
]


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModel]:
    """A started scripted model with an empty default script; it fails the test on script errors.

    Script it with `scripted_model.script(...)` / `.script_for(marker, [...])`.
    """
    with ScriptedModel() as model:
        yield model
    # A mis-scripted step (e.g. a relative path with no known cwd) is answered with a 400, which
    # a test could misread as the CLI's own failure; surface it here instead.
    assert model.errors == [], model.errors


@pytest.fixture
def claude_home(tmp_path: Path) -> Path:
    """An empty HOME for the CLI, which keeps its settings and sessions in `$HOME/.claude`."""
    home = tmp_path / "claude-home"
    home.mkdir()
    return home


@pytest.fixture
def claude_env(scripted_model: ScriptedModel, claude_home: Path) -> dict[str, str]:
    """The CLI environment pointing at `scripted_model`, with `claude_home` as HOME."""
    return claude_cli_env(scripted_model.url, claude_home)


def claude_options(
    cwd: Path,
    env: dict[str, str],
    *,
    tools: Sequence[str] | None = None,
    allowed_tools: Sequence[str] = (),
    max_turns: int = 10,
) -> ClaudeAgentOptions:
    """SDK options for a headless test run of the bundled CLI.

    `acceptEdits` plus explicit `allowed_tools` because `bypassPermissions` refuses to run as
    root (DESIGN §3); `tools` is what the model is offered, `allowed_tools` what runs unasked.
    """
    return ClaudeAgentOptions(
        cwd=cwd,
        env=env,
        cli_path=bundled_cli_path(),
        permission_mode="acceptEdits",
        tools=list(tools) if tools is not None else None,
        allowed_tools=list(allowed_tools),
        max_turns=max_turns,
    )


def wait_until_gone(name: str, value: str, timeout: float = 10.0) -> list[int]:
    """Poll until no process has `name=value` in its environment; return the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_with_env(name, value)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)
