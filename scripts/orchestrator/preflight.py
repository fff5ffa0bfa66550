"""`check`: everything the daemon needs, each reported as ok or as a problem with its fix."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import proc
from .config import (
    MODEL_KEYS,
    TOKEN_REQUIRED_MESSAGE,
    ConfigError,
    Settings,
    find_claude_cli,
    raw_setting,
)
from .github_http import GitHubError
from .github_watcher import GitHubClient
from .preflight_findings import Finding as Finding
from .preflight_findings import Level as Level
from .preflight_findings import report as report
from .preflight_github import github_checks
from .sandbox import Bwrap
from .startup import (
    StartupError,
    check_clone,
    github_failure,
    model_credential_problem,
    probe_sandbox,
    start_sandbox,
)
from .state import State, StateError
from .worktree_manager import WorktreeManager

MIN_GIT = (2, 31)  # GIT_CONFIG_COUNT and `rev-parse --path-format`
CLI_TIMEOUT = 30.0
# `check` asks GitHub once per question, without retries: an unreachable GitHub is one
# finding within this many seconds, not a minute of retries.
GITHUB_TIMEOUT = 10.0
# What the CLI authenticates with when the sandbox hides the home directory's login.
CLAUDE_KEYS = MODEL_KEYS
Check = tuple[str, Callable[[], Awaitable[Finding | list[Finding]]]]


async def preflight(
    settings: Settings, github: GitHubClient, *, fix: bool = False
) -> list[Finding]:
    """Every check, in the order a user fixes things. None writes to GitHub, except that with
    `fix` the missing labels are created, and none creates anything on disk."""
    worktrees = WorktreeManager(
        settings.repo_path, settings.worktree_base, remote=settings.git_remote,
        token=settings.token, url=settings.clone_url,
    )  # fmt: skip
    sandboxed = settings.sandbox != "off"
    checks: list[Check] = [
        ("git", _git),
        ("repository", lambda: _clone(settings, worktrees)),
        ("GitHub", lambda: github_checks(settings, github, fix)),
        ("WORKTREE_BASE", lambda: _worktree_base(settings)),
        ("STATE_FILE", lambda: _state(settings)),
        *([("STATE_URL", lambda: _database(settings))] if settings.state_url else []),
        ("Claude Code", lambda: _claude(settings.claude_cli_path, sandboxed=sandboxed)),
        ("sandbox", lambda: _sandbox(settings)),
    ]
    return [_configured(settings), *await _each(checks, settings)]


async def preflight_unconfigured(
    error: ConfigError, env_file: Path = Path(".env")
) -> list[Finding]:
    """When the settings cannot be read: their problem, and what needs no settings (git, the
    Claude Code CLI and its credential, the sandbox's programs), read from the variables as
    given."""
    given = _given_or_none(env_file)
    sandboxed = (given("sandbox") or "bwrap").strip().lower() != "off"
    checks: list[Check] = [
        ("git", _git),
        ("Claude Code", lambda: _unconfigured_claude(given("claude_cli_path"), sandboxed)),
        ("sandbox", lambda: _sandbox_programs(sandboxed)),
    ]
    return [_configuration_problem(error), *await _each(checks)]


async def _each(checks: list[Check], settings: Settings | None = None) -> list[Finding]:
    """The checks' findings, in order; one that fails is a problem with its fix."""
    findings: list[Finding] = []
    for name, check in checks:
        try:
            found = await check()
        except GitHubError as exc:
            if settings is None:  # only the checks with settings ask GitHub
                raise
            failure = github_failure(settings, exc)
            found = Finding(name, Level.PROBLEM, failure.problem, failure.fix)
        except StartupError as exc:
            found = Finding(name, Level.PROBLEM, exc.problem, exc.fix)
        findings += found if isinstance(found, list) else [found]
    return findings


def _configured(settings: Settings) -> Finding:
    env_file = Path(".env").absolute()  # where load_settings reads it
    if env_file.is_file():
        source = f"settings from the environment and {env_file}"
    else:
        source = f"settings from the environment; no .env in {env_file.parent}"
    return Finding(
        "configuration", Level.OK, f"GITHUB_REPO={settings.github_repo} ({source})"
    )  # fmt: skip


def _configuration_problem(error: ConfigError) -> Finding:
    if str(error) == TOKEN_REQUIRED_MESSAGE:
        fix = "set GITHUB_TOKEN in the environment or .env, or run `gh auth login`"
    else:
        fix = "correct it in the environment or .env (.env.example lists every setting)"
    return Finding("configuration", Level.PROBLEM, str(error), fix)


def _given_or_none(env_file: Path) -> Callable[[str], str | None]:
    """A setting's text as given, or None if it is not given or cannot be read."""

    def given(name: str) -> str | None:
        try:
            return raw_setting(name, env_file) or None
        except ConfigError:  # a .env that cannot be read: its problem is already reported
            return None

    return given


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


async def _worktree_base(settings: Settings) -> Finding:
    base = settings.worktree_base
    if (why := _unwritable(base)) is not None:
        return Finding(
            "WORKTREE_BASE", Level.PROBLEM, f"{base} is not writable: {why}",
            "set WORKTREE_BASE to a directory the daemon can write",
        )  # fmt: skip
    mirror = "present" if (settings.git_mirror / "HEAD").is_file() else "made at first start"
    return Finding("WORKTREE_BASE", Level.OK, f"{base} (the daemon's git: {mirror})")


async def _state(settings: Settings) -> Finding:
    path = settings.state_file
    if path.is_dir():
        return Finding(
            "STATE_FILE", Level.PROBLEM, f"{path} is a directory",
            "set STATE_FILE to a file in a directory the daemon can write",
        )  # fmt: skip
    if (why := _unwritable(path.parent)) is not None:
        return Finding(
            "STATE_FILE", Level.PROBLEM, f"{path.parent} is not writable: {why}",
            "set STATE_FILE to a file in a directory the daemon can write",
        )  # fmt: skip
    try:
        with State(path, lock=False):  # reads, and writes nothing
            pass
    except StateError as exc:
        return Finding("STATE_FILE", Level.PROBLEM, str(exc), "restore or remove the file")
    holder = _lock_holder(path)
    if holder is not None:
        return Finding("STATE_FILE", Level.OK, f"{path} (held by a running daemon, pid {holder})")
    if not path.exists():
        return Finding("STATE_FILE", Level.OK, f"{path} (made at first start)")
    return Finding("STATE_FILE", Level.OK, str(path))


async def _database(settings: Settings) -> Finding:
    """STATE_URL reachable and of a schema this daemon knows (nothing is created)."""
    from .state_pg import SCHEMA_VERSION, probe

    assert settings.state_url is not None
    try:
        where, version = probe(settings.state_url.get_secret_value())
    except StateError as exc:
        return Finding("STATE_URL", Level.PROBLEM, str(exc),
                       "check the host, the database, the user and the password")  # fmt: skip
    if version > SCHEMA_VERSION:
        newer = f"{where}: schema version {version}, from a newer orchestrator"
        fix = "upgrade this orchestrator, or set STATE_URL to another database"
        return Finding("STATE_URL", Level.PROBLEM, newer, fix)
    said = "tables made at first start" if version == 0 else f"schema version {version}"
    return Finding("STATE_URL", Level.OK, f"{where} ({said})")


def _unwritable(path: Path) -> str | None:
    """Why the daemon could not make or write the directory `path`, if it could not: judged on
    `path` or its nearest existing parent, so that nothing is created to find out."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the daemon's user cannot write in {existing}"
    return None


def _lock_holder(path: Path) -> str | None:
    """The pid of the daemon that holds the state file's lock, if one does; the lock file is
    only read (a shared lock, given back at once), never made."""
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDONLY)
    except OSError:  # no lock file (no daemon ever ran), or not ours to read
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken
    return None


async def _claude(cli: str | None, *, sandboxed: bool) -> Finding:
    cli = cli or "claude"
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
    why = model_credential_problem(sandboxed=sandboxed)
    if why is not None:
        problem, fix = why
        return Finding("Claude Code", Level.PROBLEM, f"{cli} {version}; {problem}", fix)
    return Finding("Claude Code", Level.OK, f"{cli} {version}; logged in")


async def _unconfigured_claude(cli: str | None, sandboxed: bool) -> Finding:
    try:
        found = find_claude_cli(cli)
    except ConfigError as exc:
        return Finding(
            "Claude Code", Level.PROBLEM, str(exc),
            "install the CLI (npm install -g @anthropic-ai/claude-code) or set CLAUDE_CLI_PATH",
        )  # fmt: skip
    return await _claude(found, sandboxed=sandboxed)


async def _sandbox(settings: Settings) -> Finding:
    sandbox = await start_sandbox(settings)
    if sandbox is None:
        return _sandbox_off()
    network = "with" if settings.sandbox_check_network else "without"
    return Finding(
        "sandbox", Level.OK,
        f"{sandbox.version}; pre-merge commands {network} network; Claude reaches only the "
        "model's API",
    )  # fmt: skip


async def _sandbox_programs(sandboxed: bool) -> Finding:
    """bubblewrap and socat work here (what the sandbox needs besides the settings)."""
    if not sandboxed:
        return _sandbox_off()
    bwrap = Bwrap()
    version = await probe_sandbox(bwrap)
    return Finding("sandbox", Level.OK, f"{version}, {bwrap.socat_path()}")


def _sandbox_off() -> Finding:
    return Finding(
        "sandbox", Level.WARNING,
        "off (SANDBOX=off): pull requests' code and Claude's runs can read the token",
        "install bubblewrap and socat and unset SANDBOX",
    )  # fmt: skip
