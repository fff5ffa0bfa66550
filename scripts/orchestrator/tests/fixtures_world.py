"""The whole test world wired to the daemon: fake GitHub, scripted model, real git, settings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from scripts.orchestrator.claude_runner import SdkClaudeRunner
from scripts.orchestrator.config import Settings
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld
from scripts.orchestrator.fakes.scripted_model import ScriptedModel, bundled_cli_path
from scripts.orchestrator.github_http import RetryPolicy
from scripts.orchestrator.startup import start_sandbox
from scripts.orchestrator.state import State, WorkItem, WorkItemType
from scripts.orchestrator.wiring import github_client, known_secrets, serve

__all__ = ["World", "world"]

FAST_RETRY = RetryPolicy(base_delay=0.01, secondary_delay=0.01, max_wait=1.0)


@dataclass
class World:
    """Everything a workflow test needs; `once()` is one `--once` run of the daemon."""

    github: FakeGitHub
    model: ScriptedModel
    git: GitWorld
    claude_env: dict[str, str]
    root: Path
    settings: Settings

    @property
    def state_file(self) -> Path:
        return self.settings.state_file

    def configure(self, **changes: Any) -> None:
        """Change settings for the next runs (e.g. `pre_merge_commands=[...]`)."""
        values = {**self.settings.model_dump(), **changes}
        self.settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]

    async def once(self) -> int:
        """One poll cycle of the real daemon code, waiting for the work it started."""
        # The daemon's own client (its view and kept answers), a new one each cycle: every
        # cycle is also a restart.
        github = github_client(
            self.settings,
            known_secrets(self.settings),
            api_url=self.github.url,
            retry=FAST_RETRY,
            write_interval=0,
        )
        # The same sandbox the daemon builds for its own runner (None with SANDBOX=off).
        sandbox = await start_sandbox(self.settings)
        claude = SdkClaudeRunner(str(bundled_cli_path()), env=self.claude_env, sandbox=sandbox)
        with State(self.state_file) as state:
            return await serve(self.settings, state, once=True, github=github, claude=claude)

    def request_merge(self, number: int, user: str = "carol") -> int:
        """A writer's `/merge` naming the head they checked (`/merge <sha>`), which is what
        may land; an unnamed `/merge` needs the daemon to have seen the head before."""
        self.github.set_permission(user, "write")
        head = self.github.pull(number)["head"]["sha"]
        return self.github.comment(number, f"/merge {head}", user=user)

    def bot_comments(self, number: int) -> list[str]:
        """The bodies of the daemon's own comments on issue or pull request `number`."""
        return [
            c["body"]
            for c in self.github.comments_on(number)
            if c["user"]["login"] == "orchestrator-bot"
        ]

    def item(self, kind: WorkItemType, number: int) -> WorkItem | None:
        with State(self.state_file, lock=False) as state:
            return state.get(kind, number)

    def run_cli(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The daemon as a user starts it: `python -m scripts.orchestrator.main`, in a process."""
        env = {
            **self.claude_env,
            "PATH": os.environ.get("PATH", ""),
            "GITHUB_REPO": self.settings.github_repo,
            "GITHUB_TOKEN": self.github.token,
            "GITHUB_API_URL": self.github.url,
            "REPO_PATH": str(self.settings.repo_path),
            "WORKTREE_BASE": str(self.settings.worktree_base),
            "STATE_FILE": str(self.state_file),
            "CLAUDE_CLI_PATH": str(bundled_cli_path()),
            "MAX_TURNS": str(self.settings.max_turns),
            **(extra_env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "scripts.orchestrator.main", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def world(
    fake_github: FakeGitHub,
    scripted_model: ScriptedModel,
    git_world: GitWorld,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[World]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        github_repo=fake_github.full_name,
        github_token=SecretStr(fake_github.token),
        github_api_url=fake_github.url,
        repo_path=git_world.clone,
        worktree_base=tmp_path / "worktrees",
        state_file=tmp_path / "state.json",
        claude_cli_path=str(bundled_cli_path()),
        max_turns=10,
        claude_timeout=60,
        check_timeout=60,
        ci_wait_timeout=5,
        # The sandbox is on, as for users; the checks may read the Python running the tests.
        sandbox_read_paths=sorted({Path(sys.prefix), Path(sys.base_prefix)}),
    )
    # alice files and labels the issues of the world's stories: a maintainer. Outsiders
    # (eve, mallory) have no permission unless a test gives them one.
    fake_github.set_permission("alice", "write")
    yield World(fake_github, scripted_model, git_world, claude_env, tmp_path, settings)
    assert fake_github.unknown_routes == [], "the daemon called routes the fake lacks"
