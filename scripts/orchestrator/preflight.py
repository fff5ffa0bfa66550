"""`check`: everything the daemon needs, each reported as ok or as a problem with its fix."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from . import proc
from .config import Settings
from .github_watcher import GitHubClient
from .startup import StartupError, check_clone, check_github, start_sandbox
from .state import State, StateError, StateLockedError
from .worktree_manager import WorktreeManager

MIN_GIT = (2, 31)  # GIT_CONFIG_COUNT and `rev-parse --path-format`
CLI_TIMEOUT = 30.0
# What the CLI authenticates with when the sandbox hides the home directory's login.
CLAUDE_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


class Level(Enum):
    OK = "ok"
    WARNING = "warning"  # works, but the user should know
    PROBLEM = "problem"  # the daemon would refuse to start, or fail on its first item


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    name: str
    level: Level
    detail: str
    fix: str = ""


async def preflight(settings: Settings, github: GitHubClient) -> list[Finding]:
    """Every check, in the order a user fixes things; none writes to GitHub."""
    worktrees = WorktreeManager(settings.repo_path, settings.worktree_base, token=settings.token)
    checks: list[tuple[str, Callable[[], Awaitable[Finding]]]] = [
        ("git", _git),
        ("repository", lambda: _clone(settings, worktrees)),
        ("GitHub", lambda: _github(settings, github)),
        ("WORKTREE_BASE", lambda: _worktree_base(settings)),
        ("STATE_FILE", lambda: _state(settings)),
        ("Claude Code", lambda: _claude(settings)),
        ("sandbox", lambda: _sandbox(settings)),
    ]
    findings = []
    for name, check in checks:
        try:
            findings.append(await check())
        except StartupError as exc:
            findings.append(Finding(name, Level.PROBLEM, str(exc)))
    return findings


def report(findings: list[Finding]) -> str:
    """The report as printed: one line per finding, a fix under each problem."""
    width = max(len(f.name) for f in findings)
    lines = []
    for finding in findings:
        lines.append(f"{finding.level.value:8} {finding.name:{width}}  {finding.detail}")
        if finding.fix:
            lines.append(f"{'':8} {'':{width}}  fix: {finding.fix}")
    return "\n".join(lines)


async def _git() -> Finding:
    done = await proc.run(["git", "--version"], cwd=Path("/"), timeout=CLI_TIMEOUT)
    match = re.search(r"(\d+)\.(\d+)", done.stdout)
    if not done.ok or match is None:
        return Finding("git", Level.PROBLEM, "git is not installed", "install git 2.31 or later")
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_GIT:
        return Finding(
            "git", Level.PROBLEM, done.stdout.strip(), "install git 2.31 or later"
        )  # fmt: skip
    return Finding("git", Level.OK, done.stdout.strip())


async def _clone(settings: Settings, worktrees: WorktreeManager) -> Finding:
    url = await check_clone(settings, worktrees)
    return Finding("repository", Level.OK, f"REPO_PATH={settings.repo_path} ({url})")


async def _github(settings: Settings, github: GitHubClient) -> Finding:
    await check_github(settings, github)
    who = await github.login()
    account = f"as {who}" if who else "as an app installation"
    return Finding(
        "GitHub", Level.OK, f"{settings.github_repo} visible {account} at {settings.github_api_url}"
    )


async def _worktree_base(settings: Settings) -> Finding:
    base = settings.worktree_base
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=base, prefix=".check-"):
            pass
    except OSError as exc:
        return Finding(
            "WORKTREE_BASE", Level.PROBLEM, f"{base} is not writable ({exc.strerror})",
            "set WORKTREE_BASE to a directory the daemon can write",
        )  # fmt: skip
    mirror = "present" if (settings.git_mirror / "HEAD").is_file() else "made at first start"
    return Finding("WORKTREE_BASE", Level.OK, f"{base} (the daemon's git: {mirror})")


async def _state(settings: Settings) -> Finding:
    path = settings.state_file
    if not os.access(path.parent if path.parent.exists() else Path.cwd(), os.W_OK):
        return Finding(
            "STATE_FILE", Level.PROBLEM, f"{path.parent} is not writable",
            "set STATE_FILE to a file in a directory the daemon can write",
        )  # fmt: skip
    try:
        with State(path):
            pass
    except StateLockedError:
        return Finding("STATE_FILE", Level.OK, f"{path} (held by a running daemon)")
    except StateError as exc:
        return Finding("STATE_FILE", Level.PROBLEM, str(exc), "restore or remove the file")
    return Finding("STATE_FILE", Level.OK, str(path))


async def _claude(settings: Settings) -> Finding:
    cli = settings.claude_cli_path or "claude"
    done = await proc.run([cli, "--version"], cwd=Path("/"), timeout=CLI_TIMEOUT)
    if not done.ok:
        return Finding(
            "Claude Code", Level.PROBLEM, f"{cli} --version failed: {done.stderr.strip()[-200:]}",
            "install the CLI (npm install -g @anthropic-ai/claude-code) or set CLAUDE_CLI_PATH",
        )  # fmt: skip
    version = done.stdout.strip()
    keys = [name for name in CLAUDE_KEYS if os.environ.get(name)]
    if keys:
        return Finding("Claude Code", Level.OK, f"{cli} {version}; authenticates with {keys[0]}")
    login = Path.home() / ".claude" / ".credentials.json"
    if not login.is_file():
        return Finding(
            "Claude Code", Level.PROBLEM, f"{cli} {version}; no credential",
            "set ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN (made by `claude setup-token`)",
        )  # fmt: skip
    if settings.sandbox != "off":
        return Finding(
            "Claude Code", Level.PROBLEM,
            f"{cli} {version}; logged in, but the sandbox hides the login in your home",
            "set CLAUDE_CODE_OAUTH_TOKEN (made by `claude setup-token`) or ANTHROPIC_API_KEY",
        )  # fmt: skip
    return Finding("Claude Code", Level.OK, f"{cli} {version}; logged in")


async def _sandbox(settings: Settings) -> Finding:
    sandbox = await start_sandbox(settings)
    if sandbox is None:
        return Finding(
            "sandbox", Level.WARNING,
            "off (SANDBOX=off): pull requests' code and Claude's runs can read the token",
            "install bubblewrap and socat and unset SANDBOX",
        )  # fmt: skip
    network = "with" if settings.sandbox_check_network else "without"
    return Finding(
        "sandbox", Level.OK,
        f"{sandbox.version}; pre-merge commands {network} network; Claude reaches only the "
        "model's API",
    )  # fmt: skip
