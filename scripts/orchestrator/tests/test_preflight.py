"""`check`: all ok in the test world, and one test per problem it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.orchestrator import preflight as pf
from scripts.orchestrator import startup
from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.models import RepoAccess
from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.github_watcher import GitHubClient
from scripts.orchestrator.preflight import Finding, Level, preflight
from scripts.orchestrator.sandbox import Bwrap
from scripts.orchestrator.state import State

from .fixtures_world import FAST_RETRY, World

SETTINGS = Settings(_env_file=None, github_repo="acme/widgets")  # type: ignore[call-arg]


async def findings(
    world: World, token: str | None = None, *, fix: bool = False
) -> dict[str, Finding]:
    github = GitHubClient(
        token or world.github.token, world.settings.github_repo, api_url=world.github.url,
        retry=FAST_RETRY, write_interval=0,
    )  # fmt: skip
    async with github:
        return {f.name: f for f in await preflight(world.settings, github, fix=fix)}


def with_labels(world: World) -> None:
    """The repository as set up for the daemon: its two labels exist."""
    world.github.create_label(world.settings.ready_label)
    world.github.create_label(world.settings.failed_label)


def test_check_in_a_working_setup_reports_all_ok(world: World) -> None:
    with_labels(world)
    result = world.run_cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 11, result.stdout
    sandbox = next(line for line in lines if line.split()[1] == "sandbox")
    assert "bubblewrap" in sandbox and "socat" in sandbox
    assert world.github.token not in result.stdout + result.stderr
    assert {r.method for r in world.github.requests} == {"GET"}, "check wrote to GitHub"


def test_check_fails_on_missing_labels_and_check_fix_creates_them(world: World) -> None:
    result = world.run_cli("check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "problem  labels" in result.stdout
    assert world.github.mutations == [], "check wrote to GitHub"
    result = world.run_cli("check", "--fix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok       labels         created ready and claude-failed" in result.stdout
    assert [m.name for m in world.github.mutations] == ["create_label", "create_label"]


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


# -- what the token may do ----------------------------------------------------------------------


async def test_an_account_without_push_is_a_problem(world: World) -> None:
    found = (await findings(world))["permissions"]
    assert found.level is Level.OK and "orchestrator-bot has write access" in found.detail
    world.github.add_token("ghp_reader_token", "reader")
    world.github.set_permission("reader", "read")
    found = (await findings(world, token="ghp_reader_token"))["permissions"]
    assert found.level is Level.PROBLEM
    assert "reader has read access to acme/widgets: it cannot push branches" in found.detail
    assert found.fix.startswith("give reader write access to acme/widgets")


async def test_an_admin_account_is_more_than_needed(world: World) -> None:
    world.github.set_permission("orchestrator-bot", "admin")
    found = (await findings(world))["permissions"]
    assert found.level is Level.WARNING and "may bypass branch protection" in found.detail


async def test_the_workflow_scope_is_a_warning(world: World) -> None:
    found = (await findings(world))["token"]  # the control: `repo` alone
    assert found.level is Level.OK and found.detail.startswith("a classic token with scopes: repo")
    world.github.add_token("ghp_workflow_token", "orchestrator-bot", scopes=("repo", "workflow"))
    found = (await findings(world, token="ghp_workflow_token"))["token"]
    assert found.level is Level.WARNING
    assert "more than needed: workflow; `workflow` lets a push change .github/workflows/" in (
        found.detail
    )
    assert "only `repo`" in found.fix
    # The daemon that may change workflows needs it.
    world.configure(allow_sensitive_changes=True)
    assert (await findings(world, token="ghp_workflow_token"))["token"].level is Level.OK
    found = (await findings(world))["token"]
    assert found.level is Level.WARNING and "needs `workflow` too" in found.detail


async def test_other_scopes_beyond_repo_are_a_warning(world: World) -> None:
    world.github.add_token("ghp_broad_token", "orchestrator-bot", scopes=("repo", "delete_repo"))
    found = (await findings(world, token="ghp_broad_token"))["token"]
    assert found.level is Level.WARNING and "more than needed: delete_repo" in found.detail


async def test_a_classic_token_without_repo_is_a_problem(world: World) -> None:
    world.github.add_token("ghp_narrow_token", "orchestrator-bot", scopes=("read:org",))
    found = (await findings(world, token="ghp_narrow_token"))["token"]
    assert found.level is Level.PROBLEM
    assert found.detail == (
        "a classic token with scopes: read:org; it needs `repo` or `public_repo`"
    )
    world.github.add_token("ghp_public_token", "orchestrator-bot", scopes=("public_repo",))
    found = (await findings(world, token="ghp_public_token"))["token"]
    assert found.level is Level.OK  # the control: enough for this public repository


async def test_a_fine_grained_token_is_a_warning_that_says_what_it_needs(world: World) -> None:
    world.github.add_token("github_pat_fine_token", "orchestrator-bot", scopes=None)
    found = (await findings(world, token="github_pat_fine_token"))["token"]
    assert found.level is Level.WARNING
    assert found.detail.startswith("a fine-grained token: GitHub does not say what it may do")
    assert "Contents, Issues and Pull requests: read and write" in found.detail
    assert found.detail.endswith("Workflows: none")


def test_an_app_installation_is_told_what_its_app_needs() -> None:
    # The fake cannot be an App (its /user never answers 403), so the judgement is tested alone.
    found = pf._token(SETTINGS, None, RepoAccess(private=True, role="read", scopes=None))
    assert found.level is Level.WARNING
    assert found.detail.startswith("an App installation's token: GitHub does not say")
    assert "the App's settings" in found.fix


def test_a_private_repository_needs_the_repo_scope() -> None:
    public_only = RepoAccess(private=True, role="write", scopes=frozenset({"public_repo"}))
    found = pf._token(SETTINGS, "bot", public_only)
    assert found.level is Level.PROBLEM and found.detail.endswith("it needs `repo`")
    found = pf._token(SETTINGS, "bot", RepoAccess(True, "write", frozenset({"repo"})))
    assert found.level is Level.OK and found.detail == "a classic token with scopes: repo"


def test_an_account_github_says_nothing_about_is_a_warning() -> None:
    found = pf._permissions("acme/widgets", "bot", None)
    assert found.level is Level.WARNING and "did not say" in found.detail


# -- labels ---------------------------------------------------------------------------------


async def test_missing_labels_are_a_problem_and_nothing_is_written(world: World) -> None:
    with_labels(world)
    found = (await findings(world))["labels"]  # the control
    assert found.level is Level.OK and found.detail == "ready and claude-failed exist"
    world.configure(ready_label="implement", failed_label="implement-failed")
    world.github.clear_logs()
    found = (await findings(world))["labels"]
    assert found.level is Level.PROBLEM
    assert found.detail == (
        "acme/widgets lacks the labels implement (READY_LABEL) and implement-failed (FAILED_LABEL)"
    )
    assert found.fix.startswith("run `check --fix` to create them")
    assert world.github.mutations == []
    assert {r.method for r in world.github.requests} == {"GET"}, "check wrote to GitHub"


async def test_fix_creates_the_missing_labels(world: World) -> None:
    world.github.create_label("ready")
    found = (await findings(world, fix=True))["labels"]
    assert found.level is Level.OK and found.detail == "created claude-failed"
    [created] = world.github.mutations_named("create_label")
    assert created.body == {
        "name": "claude-failed", "color": pf.FAILED_LOOK[0], "description": pf.FAILED_LOOK[1]
    }  # fmt: skip
    found = (await findings(world))["labels"]
    assert found.level is Level.OK and found.detail == "ready and claude-failed exist"


async def test_a_label_the_token_cannot_create_is_a_problem(world: World) -> None:
    refused = {"message": "Resource not accessible by personal access token", "status": "403"}
    world.github.faults.fail_next(403, method="POST", path=r"/labels$", body=refused)
    found = (await findings(world, fix=True))["labels"]
    assert found.level is Level.PROBLEM and found.detail.startswith("could not create the label")


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
