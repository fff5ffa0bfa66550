"""`check`: all ok in the test world, and one test per problem it reports."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from scripts.orchestrator import preflight as pf
from scripts.orchestrator import preflight_github as pg
from scripts.orchestrator import startup
from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.models import RepoAccess
from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.github_http import RetryPolicy
from scripts.orchestrator.github_watcher import GitHubClient
from scripts.orchestrator.preflight import Finding, Level, preflight
from scripts.orchestrator.sandbox import Bwrap
from scripts.orchestrator.state import State
from scripts.orchestrator.state_pg import SCHEMA_VERSION, PgState

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
    assert [line.split()[0] for line in lines] == ["ok"] * 12, result.stdout  # + settings file
    sandbox = next(line for line in lines if line.split()[1] == "sandbox")
    assert "bubblewrap" in sandbox and "socat" in sandbox
    assert world.github.token not in result.stdout + result.stderr
    assert {r.method for r in world.github.requests} == {"GET"}, "check wrote to GitHub"
    # Found by a newcomer: INFO lines came before the table. check prints its table alone.
    assert result.stderr == ""


def test_check_creates_nothing_on_disk(world: World) -> None:
    """Found by a newcomer: `check` made WORKTREE_BASE, the state's directory and its lock
    file. It judges them by the nearest folder that exists, and makes nothing."""
    world.configure(
        worktree_base=world.root / "new" / "worktrees",
        state_file=world.root / "state-dir" / "state.json",
    )
    before = sorted(world.root.iterdir())
    result = world.run_cli("check")
    assert "ok       WORKTREE_BASE" in result.stdout, result.stdout
    assert f"ok       STATE_FILE     {world.state_file} (made at first start)" in result.stdout
    assert sorted(world.root.iterdir()) == before


def test_verbose_check_shows_the_log(world: World) -> None:
    """The control of the quiet check: with -v (after the command, too) the log is there."""
    with_labels(world)
    for args in (["check", "-v"], ["-v", "check"]):
        result = world.run_cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "INFO" in result.stderr and "sandbox: bubblewrap" in result.stderr


def test_a_missing_ready_label_is_a_problem_and_check_fix_creates_both(world: World) -> None:
    result = world.run_cli("check")
    assert result.returncode == 2, result.stdout + result.stderr  # nothing could start
    assert "problem  labels" in result.stdout
    assert world.github.mutations == [], "check wrote to GitHub"
    result = world.run_cli("check", "--fix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok       labels         created ready and claude-failed" in result.stdout
    assert [m.name for m in world.github.mutations] == ["create_label", "create_label"]


def test_a_configuration_problem_is_one_finding_and_the_rest_is_checked(world: World) -> None:
    """Found by a newcomer: a wrong setting stopped the check at its first line. What needs
    no settings (git, Claude Code and its credential, the sandbox) is still checked."""
    result = world.run_cli("check", extra_env={"POLL_INTERVAL": "soon"})
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "problem  configuration  POLL_INTERVAL='soon' is not valid: expected a number"
    )
    assert lines[1].strip().startswith("fix: ") and ".env" in lines[1]
    named = [line.split()[:2] for line in lines if not line.startswith(" ")]
    assert named == [["problem", "configuration"], ["ok", "git"], ["ok", "Claude"],
                     ["ok", "sandbox"]], result.stdout  # fmt: skip
    assert result.stderr == "" and world.github.requests == []


def test_without_settings_the_claude_credential_and_the_sandbox_are_still_judged(
    world: World, tmp_path: Path
) -> None:
    env = {"GITHUB_REPO": "", "ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "",
           "HOME": str(tmp_path), "SANDBOX": "off"}  # fmt: skip
    result = world.run_cli("check", extra_env=env)
    assert result.returncode == 2
    assert "problem  configuration  GITHUB_REPO is required" in result.stdout
    assert "no credential for Claude Code" in result.stdout
    assert "warning  sandbox        off (SANDBOX=off)" in result.stdout
    # A key in .env counts, as it does for the daemon.
    (world.root / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-from-dotenv\n")
    env.pop("ANTHROPIC_API_KEY")
    result = world.run_cli("check", extra_env=env)
    assert "authenticates with ANTHROPIC_API_KEY" in result.stdout, result.stdout


async def test_a_clone_of_another_host_is_a_problem(world: World) -> None:
    git(world.git.clone, "remote", "set-url", "origin", "https://evil.example/acme/widgets.git")
    found = (await findings(world))["repository"]
    assert found.level is Level.PROBLEM and "pushes to evil.example" in found.detail


async def test_the_repository_is_judged_by_git_remote(world: World) -> None:
    """`check` looked at `origin` whatever GIT_REMOTE said; the daemon pushes to GIT_REMOTE."""
    git(world.git.clone, "remote", "add", "upstream", "https://evil.example/acme/widgets.git")
    assert (await findings(world))["repository"].level is Level.OK  # the control: origin
    world.configure(git_remote="upstream")
    found = (await findings(world))["repository"]
    assert found.level is Level.PROBLEM and "pushes to evil.example" in found.detail
    assert found.fix.startswith("point upstream at")


async def test_a_refused_token_is_a_problem(world: World) -> None:
    found = (await findings(world, token="ghp_" + "x" * 36))["GitHub"]
    assert found.level is Level.PROBLEM and "refused GITHUB_TOKEN" in found.detail
    assert "GITHUB_TOKEN" in found.fix and "gh auth login" in found.fix


# -- GitHub's problems: each with its fix ----------------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_github_is_one_finding_at_once(world: World) -> None:
    """Found by a newcomer: a refused connection took three retries (about 10 s) and said
    `(no answer (ConnectError))`, with no fix."""
    url = f"http://127.0.0.1:{closed_port()}"
    result = world.run_cli("check", extra_env={"GITHUB_API_URL": url})
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("problem  GitHub")]
    assert lines[at] == (
        f"problem  GitHub         cannot reach GitHub at GITHUB_API_URL={url}: the connection "
        "was refused"
    )
    fix = lines[at + 1].strip()
    assert fix.startswith("fix: ") and "HTTPS_PROXY" in fix and "GITHUB_API_URL" in fix
    assert result.stderr == ""  # no retry warnings


async def test_a_failing_github_is_asked_once(world: World) -> None:
    world.github.faults.fail_next(502, method="GET", path=r"^/repos/acme/widgets$")
    github = GitHubClient(world.github.token, "acme/widgets", api_url=world.github.url,
                          retry=RetryPolicy(max_retries=0))  # fmt: skip
    async with github:
        found = {f.name: f for f in await preflight(world.settings, github)}["GitHub"]
    assert found.level is Level.PROBLEM
    assert found.detail.startswith(f"GitHub at GITHUB_API_URL={world.github.url} answered 502")
    assert found.fix
    assert len(world.github.requests_to("GET", "/repos/acme/widgets")) == 1


async def github_finding(world: World, api_url: str, timeout: float = 5.0) -> Finding:
    github = GitHubClient(world.github.token, "acme/widgets", api_url=api_url,
                          retry=RetryPolicy(max_retries=0), timeout=timeout)  # fmt: skip
    world.configure(github_api_url=api_url)
    async with github:
        return {f.name: f for f in await preflight(world.settings, github)}["GitHub"]


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("refused", "the connection was refused"),
        ("dns", "its host name does not resolve"),
        ("silent", "no answer in time"),
        ("401", "GitHub refused GITHUB_TOKEN (401 Bad credentials)"),
        ("404", "GITHUB_REPO=acme/widgets is not visible with this token (404)"),
        ("rate", "GitHub's rate limit for this token is used up"),
        ("malformed", "may not be GitHub's API root"),
        ("500", "answered 500"),
    ],
)
async def test_every_github_problem_has_a_fix(world: World, fault: str, words: str) -> None:
    api_url = world.github.url
    path = r"^/repos/acme/widgets$"
    match fault:
        case "refused":
            api_url = f"http://127.0.0.1:{closed_port()}"
        case "dns":  # the tests' resolver knows loopback only: a real resolver's failure
            api_url = "https://github.invalid"
        case "silent":
            world.github.faults.slow_next(5.0, path=path)
        case "401" | "404" | "500":
            world.github.faults.fail_next(int(fault), method="GET", path=path)
        case "rate":
            world.github.faults.secondary_limit_next(retry_after=None, path=path)
        case "malformed":
            world.github.faults.fail_next(200, method="GET", path=path,
                                          body={"default_branch": 42}, after=True)  # fmt: skip
    found = await github_finding(world, api_url, timeout=0.5 if fault == "silent" else 5.0)
    assert found.level is Level.PROBLEM
    assert words in found.detail, found.detail
    assert found.fix, found.detail
    # One level of parentheses at most: `(no answer (ConnectError))` was hard to read.
    assert not re.search(r"\([^)]*\(", found.detail), found.detail


async def test_at_start_an_unreachable_github_is_one_line_with_the_hint(world: World) -> None:
    """The daemon's own start-up check: its retries stay, its one line says what to do."""
    url = f"http://127.0.0.1:{closed_port()}"
    world.configure(github_api_url=url)
    github = GitHubClient(world.github.token, "acme/widgets", api_url=url, retry=FAST_RETRY)
    async with github:
        with pytest.raises(startup.StartupError) as refused:
            await startup.check_github(world.settings, github)
    line = str(refused.value)
    assert line.startswith(
        f"cannot reach GitHub at GITHUB_API_URL={url}: the connection was refused; "
    )
    assert "HTTPS_PROXY" in line and "\n" not in line


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
    found = pg._token(SETTINGS, None, RepoAccess(private=True, role="read", scopes=None))
    assert found.level is Level.WARNING
    assert found.detail.startswith("an App installation's token: GitHub does not say")
    assert "the App's settings" in found.fix


def test_a_private_repository_needs_the_repo_scope() -> None:
    public_only = RepoAccess(private=True, role="write", scopes=frozenset({"public_repo"}))
    found = pg._token(SETTINGS, "bot", public_only)
    assert found.level is Level.PROBLEM and found.detail.endswith("it needs `repo`")
    found = pg._token(SETTINGS, "bot", RepoAccess(True, "write", frozenset({"repo"})))
    assert found.level is Level.OK and found.detail == "a classic token with scopes: repo"


def test_an_account_github_says_nothing_about_is_a_warning() -> None:
    found = pg._permissions("acme/widgets", "bot", None)
    assert found.level is Level.WARNING and "did not say" in found.detail


# -- labels ---------------------------------------------------------------------------------


async def test_missing_labels_are_reported_in_the_words_of_start_up(world: World) -> None:
    with_labels(world)
    found = (await findings(world))["labels"]  # the control
    assert found.level is Level.OK and found.detail == "ready and claude-failed exist"
    world.configure(ready_label="implement", failed_label="implement-failed")
    world.github.clear_logs()
    found = (await findings(world))["labels"]
    assert found.level is Level.PROBLEM  # nothing can start without READY_LABEL
    assert found.detail == (
        "acme/widgets lacks the labels implement (READY_LABEL) and implement-failed "
        "(FAILED_LABEL): nobody can pick them in GitHub's label menu until they exist"
    )
    assert (found.detail, found.fix) == startup.labels_missing(
        world.settings, ["implement", "implement-failed"]
    )
    assert found.fix.startswith("run `check --fix` to create them")
    assert world.github.mutations == []
    assert {r.method for r in world.github.requests} == {"GET"}, "check wrote to GitHub"


async def test_fix_creates_the_missing_labels(world: World) -> None:
    world.github.create_label("ready")
    found = (await findings(world))["labels"]
    assert found.level is Level.WARNING  # GitHub makes FAILED_LABEL when it is first added
    found = (await findings(world, fix=True))["labels"]
    assert found.level is Level.OK and found.detail == "created claude-failed"
    [created] = world.github.mutations_named("create_label")
    assert created.body == {
        "name": "claude-failed", "color": pg.FAILED_LOOK[0], "description": pg.FAILED_LOOK[1]
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
    assert found.level is Level.PROBLEM and found.fix
    assert found.detail.endswith(f"is not writable: {tmp_path / 'a-file'} is not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any directory")
async def test_a_read_only_parent_is_a_problem(world: World, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    world.configure(worktree_base=locked / "a" / "worktrees", state_file=locked / "s.json")
    found = await findings(world)
    assert found["WORKTREE_BASE"].level is Level.PROBLEM
    assert found["STATE_FILE"].level is Level.PROBLEM
    assert "cannot write in" in found["STATE_FILE"].detail


async def test_a_state_held_by_a_running_daemon_is_fine_a_broken_one_is_not(
    world: World,
) -> None:
    with State(world.state_file):
        found = (await findings(world))["STATE_FILE"]
    assert found.level is Level.OK
    assert found.detail.endswith(f"(held by a running daemon, pid {os.getpid()})")
    found = (await findings(world))["STATE_FILE"]  # the control: let go
    assert found.level is Level.OK and found.detail == f"{world.state_file} (made at first start)"
    world.state_file.write_text("{not json")
    found = (await findings(world))["STATE_FILE"]
    assert found.level is Level.PROBLEM and found.fix == "restore or remove the file"
    assert world.state_file.read_text() == "{not json"


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


async def test_state_url_is_checked_reading_only(world: World, pg_state_url: str) -> None:
    password = "pw#Hash123"  # libpq takes it as written; URL parsing would not
    world.configure(state_url=pg_state_url.replace("postgres@", f"postgres:{password}@", 1))
    found = (await findings(world))["STATE_URL"]
    assert found.level is Level.OK and found.detail.endswith("(tables made at first start)")
    assert password not in found.detail
    PgState(pg_state_url, world.settings.github_repo).close()  # a daemon made them
    found = (await findings(world))["STATE_URL"]
    assert found.level is Level.OK and found.detail.endswith(f"(schema version {SCHEMA_VERSION})")
    world.configure(state_url=f"postgresql://u:{password}@127.0.0.1:9/db")  # nothing there
    found = (await findings(world))["STATE_URL"]
    assert found.level is Level.PROBLEM and password not in found.detail + (found.fix or "")
