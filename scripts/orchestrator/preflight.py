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
from .config import MODEL_KEYS, Settings
from .core.models import RepoAccess
from .github_http import GitHubError
from .github_watcher import GitHubClient
from .startup import (
    StartupError,
    check_clone,
    check_github,
    missing_model_credential,
    start_sandbox,
)
from .state import State, StateError, StateLockedError
from .worktree_manager import WorktreeManager

MIN_GIT = (2, 31)  # GIT_CONFIG_COUNT and `rev-parse --path-format`
CLI_TIMEOUT = 30.0
# What the CLI authenticates with when the sandbox hides the home directory's login.
CLAUDE_KEYS = MODEL_KEYS
# What a fine-grained token or a GitHub App needs; GitHub's answers do not say what it has.
# Workflows: none, so that GitHub itself refuses a change to .github/workflows/ (README).
PERMISSIONS_NEEDED = (
    "Contents, Issues and Pull requests: read and write; Commit statuses, Checks and Metadata: "
    "read; Workflows: none"
)
# Scopes `repo` contains: beside it they give nothing more.
REPO_PARTS = frozenset(
    {"repo:status", "repo_deployment", "public_repo", "repo:invite", "security_events"}
)
# The labels' colors and descriptions when `check --fix` creates them.
READY_LOOK = ("0e8a16", "Claude Code implements the issue (a writer's label counts)")
FAILED_LOOK = ("d73a4a", "Claude Code could not implement the issue; label it ready to try again")


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


async def preflight(
    settings: Settings, github: GitHubClient, *, fix: bool = False
) -> list[Finding]:
    """Every check, in the order a user fixes things. None writes to GitHub, except that with
    `fix` the missing labels are created."""
    worktrees = WorktreeManager(
        settings.repo_path, settings.worktree_base, token=settings.token, url=settings.clone_url
    )
    checks: list[tuple[str, Callable[[], Awaitable[Finding | list[Finding]]]]] = [
        ("git", _git),
        ("repository", lambda: _clone(settings, worktrees)),
        ("GitHub", lambda: _github(settings, github, fix)),
        ("WORKTREE_BASE", lambda: _worktree_base(settings)),
        ("STATE_FILE", lambda: _state(settings)),
        ("Claude Code", lambda: _claude(settings)),
        ("sandbox", lambda: _sandbox(settings)),
    ]
    findings: list[Finding] = []
    for name, check in checks:
        try:
            found = await check()
        except (StartupError, GitHubError) as exc:
            found = Finding(name, Level.PROBLEM, str(exc))
        findings += found if isinstance(found, list) else [found]
    return findings


def report(findings: list[Finding]) -> str:
    """The report as printed: one line per finding, and its fix under it if it has one."""
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
    if settings.repo_path is None:
        own = f"no clone given: the daemon keeps its own, in {settings.git_mirror}, from {url}"
        return Finding("repository", Level.OK, own)
    return Finding("repository", Level.OK, f"REPO_PATH={settings.repo_path} ({url})")


async def _github(settings: Settings, github: GitHubClient, fix: bool) -> list[Finding]:
    """The token and the repository, then what the token may do there and the labels; the
    later ones only once GitHub answers at all."""
    await check_github(settings, github)
    who = await github.login()
    account = f"as {who}" if who else "as an app installation"
    visible = f"{settings.github_repo} visible {account} at {settings.github_api_url}"
    access = await github.access()
    # An App installation's `permissions` describe no account, and are no evidence of what
    # the App may do (semantic-release/github#182: all false for a token that could push).
    role = [] if who is None else [_permissions(settings.github_repo, who, access.role)]
    return [
        Finding("GitHub", Level.OK, visible),
        *role,
        _token(settings, who, access),
        await _labels(settings, github, fix),
    ]


def _permissions(repo: str, who: str, role: str | None) -> Finding:
    """The account's role: pushing and merging need write."""
    if role is None:
        return Finding(
            "permissions", Level.WARNING, f"GitHub did not say what {who} may do in {repo}",
            f"check that {who} has write access to {repo}",
        )  # fmt: skip
    if role in ("none", "read", "triage"):
        return Finding(
            "permissions", Level.PROBLEM,
            f"{who} has {role} access to {repo}: it cannot push branches or merge pull requests",
            f"give {who} write access to {repo} (Settings, Collaborators and teams), or use "
            "the token of an account that has it",
        )  # fmt: skip
    if role == "admin":
        return Finding(
            "permissions", Level.WARNING,
            f"{who} has admin access to {repo}, more than the daemon needs (write): an admin's "
            "merge may bypass branch protection",
            f"run the daemon as an account with write access to {repo} (a machine user)",
        )  # fmt: skip
    return Finding(
        "permissions", Level.OK,
        f"{who} has {role} access to {repo}: enough to push branches, comment, label and "
        "merge (whether branch protection lets a merge through shows only at the merge)",
    )  # fmt: skip


def _token(settings: Settings, who: str | None, access: RepoAccess) -> Finding:
    """A classic token's scopes, judged; what any other token needs, since GitHub does not
    say what it has (only a write would show it)."""
    if access.scopes is None:
        kind = "a fine-grained token" if who else "an App installation's token"
        where = "the token's settings" if who else "the App's settings (Permissions & events)"
        return Finding(
            "token", Level.WARNING,
            f"{kind}: GitHub does not say what it may do, and only a write would show it; "
            f"it needs {PERMISSIONS_NEEDED}",
            f"check its repository permissions in {where}",
        )  # fmt: skip
    granted = access.scopes
    shown = f"a classic token with scopes: {', '.join(sorted(granted)) or 'none'}"
    needed = {"repo"} if access.private else {"repo", "public_repo"}
    if not granted & needed:
        return Finding(
            "token", Level.PROBLEM,
            f"{shown}; it needs `repo`" + ("" if access.private else " or `public_repo`"),
            "make a token with the `repo` scope (`public_repo` is enough for a public "
            "repository) and no other",
        )  # fmt: skip
    allowed = needed | (REPO_PARTS if "repo" in granted else set())
    if settings.allow_sensitive_changes:
        allowed.add("workflow")
    extra = sorted(granted - allowed)
    if extra:
        why = (
            "; `workflow` lets a push change .github/workflows/, which the daemon must not"
            if "workflow" in extra
            else ""
        )
        return Finding(
            "token", Level.WARNING, f"{shown}; more than needed: {', '.join(extra)}{why}",
            "make a token with only `repo` (`public_repo` for a public repository)",
        )  # fmt: skip
    if settings.allow_sensitive_changes and "workflow" not in granted:
        return Finding(
            "token", Level.WARNING,
            f"{shown}; with ALLOW_SENSITIVE_CHANGES=true it needs `workflow` too, or GitHub "
            "refuses pushes that change .github/workflows/",
            "add the `workflow` scope, or unset ALLOW_SENSITIVE_CHANGES",
        )  # fmt: skip
    public = "repo" in granted and not access.private
    return Finding("token", Level.OK, shown + ("; `public_repo` would be enough" if public else ""))


async def _labels(settings: Settings, github: GitHubClient, fix: bool) -> Finding:
    """READY_LABEL and FAILED_LABEL exist; with `fix`, the missing ones are created."""
    looks = {
        settings.ready_label: ("READY_LABEL", *READY_LOOK),
        settings.failed_label: ("FAILED_LABEL", *FAILED_LOOK),
    }
    missing = [name for name in looks if not await github.has_label(name)]
    if not missing:
        return Finding("labels", Level.OK, f"{' and '.join(looks)} exist")
    if not fix:
        labels, them = ("labels", "them") if len(missing) > 1 else ("label", "it")
        named = " and ".join(f"{name} ({looks[name][0]})" for name in missing)
        return Finding(
            "labels", Level.PROBLEM, f"{settings.github_repo} lacks the {labels} {named}",
            f"run `check --fix` to create {them}, or create {them} on GitHub (Issues, Labels)",
        )  # fmt: skip
    for name in missing:
        _, color, description = looks[name]
        try:
            await github.create_label(name, color=color, description=description)
        except GitHubError as exc:
            return Finding(
                "labels", Level.PROBLEM, f"could not create the label {name}: {exc}",
                "create it on GitHub (Issues, Labels), or give the token write access to issues",
            )  # fmt: skip
    return Finding("labels", Level.OK, f"created {' and '.join(missing)}")


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
    # The same rule that refuses the daemon at start.
    why = missing_model_credential(settings)
    if why is not None:
        problem, _, fix = why.partition(": ")
        return Finding("Claude Code", Level.PROBLEM, f"{cli} {version}; {problem}", fix)
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
