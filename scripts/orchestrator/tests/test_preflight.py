"""`check`: all ok in the test world, and one test per problem it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.orchestrator import preflight as pf
from scripts.orchestrator import startup
from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.github_watcher import GitHubClient
from scripts.orchestrator.preflight import Finding, Level, preflight
from scripts.orchestrator.sandbox import Bwrap
from scripts.orchestrator.state import State

from .fixtures_world import FAST_RETRY, World


async def findings(world: World, token: str | None = None) -> dict[str, Finding]:
    github = GitHubClient(
        token or world.github.token, world.settings.github_repo, api_url=world.github.url,
        retry=FAST_RETRY,
    )  # fmt: skip
    async with github:
        return {f.name: f for f in await preflight(world.settings, github)}


def test_check_in_a_working_setup_reports_all_ok(world: World) -> None:
    result = world.run_cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 8, result.stdout
    sandbox = next(line for line in lines if line.split()[1] == "sandbox")
    assert "bubblewrap" in sandbox and "socat" in sandbox
    assert world.github.token not in result.stdout + result.stderr
    assert {r.method for r in world.github.requests} == {"GET"}, "check wrote to GitHub"


def test_a_configuration_problem_is_reported_with_exit_2(world: World) -> None:
    result = world.run_cli("check", extra_env={"POLL_INTERVAL": "soon"})
    assert result.returncode == 2
    assert result.stdout.startswith("problem  configuration  POLL_INTERVAL='soon' is not valid")


async def test_a_clone_of_another_host_is_a_problem(world: World) -> None:
    git(world.git.clone, "remote", "set-url", "origin", "https://evil.example/acme/widgets.git")
    found = (await findings(world))["repository"]
    assert found.level is Level.PROBLEM and "pushes to evil.example" in found.detail


async def test_a_refused_token_is_a_problem(world: World) -> None:
    found = (await findings(world, token="ghp_" + "x" * 36))["GitHub"]
    assert found.level is Level.PROBLEM and "refused GITHUB_TOKEN" in found.detail


async def test_an_unwritable_worktree_base_is_a_problem(world: World, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    world.configure(worktree_base=tmp_path / "a-file" / "worktrees")
    found = (await findings(world))["WORKTREE_BASE"]
    assert found.level is Level.PROBLEM and "not writable" in found.detail and found.fix


async def test_a_state_held_by_a_running_daemon_is_fine_a_broken_one_is_not(
    world: World,
) -> None:
    with State(world.state_file):
        found = (await findings(world))["STATE_FILE"]
    assert found.level is Level.OK and "held by a running daemon" in found.detail
    world.state_file.write_text("{not json")
    found = (await findings(world))["STATE_FILE"]
    assert found.level is Level.PROBLEM


async def test_claude_without_a_credential_is_a_problem(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in pf.CLAUDE_KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    found = (await findings(world))["Claude Code"]
    assert found.level is Level.PROBLEM and "no credential" in found.detail
    # A login in the home directory: the sandbox hides it; without the sandbox it is enough.
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / ".credentials.json").write_text("{}")
    found = (await findings(world))["Claude Code"]
    assert found.level is Level.PROBLEM and "hides the login" in found.detail
    world.configure(sandbox="off")
    assert (await findings(world))["Claude Code"].level is Level.OK
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    world.configure(sandbox="bwrap")
    found = (await findings(world))["Claude Code"]
    assert found.level is Level.OK and "ANTHROPIC_API_KEY" in found.detail


async def test_a_broken_claude_cli_is_a_problem(world: World) -> None:
    world.configure(claude_cli_path="/bin/false")
    found = (await findings(world))["Claude Code"]
    assert found.level is Level.PROBLEM and "npm install" in found.fix


async def test_the_sandbox_off_is_a_warning_a_missing_one_a_problem(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.configure(sandbox="off")
    assert (await findings(world))["sandbox"].level is Level.WARNING
    world.configure(sandbox="bwrap")
    monkeypatch.setattr(startup, "Bwrap", lambda: Bwrap("bwrap-that-is-not-there"))
    found = (await findings(world))["sandbox"]
    assert found.level is Level.PROBLEM and "apt-get install bubblewrap" in found.detail


async def test_an_old_git_is_a_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'git version 2.20.1'\n")
    fake.chmod(0o755)
    assert (await pf._git()).level is Level.OK  # the control: this machine's git
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    found = await pf._git()
    assert found.level is Level.PROBLEM and "2.20.1" in found.detail
