"""Entry point: parse the command line, load settings and state, run the daemon loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr

from . import __version__, logs
from .checks import ShellChecks
from .claude_runner import SdkClaudeRunner
from .clock import SystemClock
from .config import ConfigError, Settings, load_settings
from .core.errors import GitError, GitHubError, MalformedAnswer
from .core.redact import Redactor
from .daemon import Daemon
from .github_watcher import GitHubClient
from .ports import Checks, Claude, Clock, Git, GitHub, StateStore, Workflow
from .reexec import inherited_token, restart_without_secrets, secrets_in_environment
from .sandbox import Bwrap, Sandbox, SandboxUnavailable
from .state import State, StateError
from .workflows.comment_feed import CommentFeed
from .workflows.implement import ImplementWorkflow
from .workflows.merge import MergeWorkflow
from .workflows.review import ReviewWorkflow
from .worktree_manager import WorktreeManager

log = logging.getLogger(__name__)

PROG = "claude-orchestrator"
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Watch a GitHub repository and run Claude Code: implement issues labelled ready, "
            "review new pull requests, and merge on a /merge comment after the checks pass. "
            "Settings come from the environment and ./.env (see .env.example)."
        ),
    )
    parser.add_argument(
        "--once", action="store_true", help="run one poll cycle, wait for its work, then exit"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


class StartupError(Exception):
    """The daemon cannot work with this repository; one line for the user, exit code 2."""


@dataclass(frozen=True)
class Adapters:
    """What the workflows work through; `serve` builds the real ones, tests pass fakes."""

    github: GitHub
    git: Git
    claude: Claude
    checks: Checks
    clock: Clock
    redactor: Redactor


def build_workflows(
    settings: Settings, state: StateStore, adapters: Adapters, feed: CommentFeed
) -> list[Workflow]:
    """The three workflows, wired to their ports."""
    a = adapters
    return [
        ImplementWorkflow(settings, state, a.github, a.git, a.claude, a.redactor, a.clock),
        ReviewWorkflow(settings, state, a.github, a.git, a.claude, feed, a.redactor, a.clock),
        MergeWorkflow(settings, state, a.github, a.git, a.checks, feed, a.redactor, a.clock),
    ]


async def serve(
    settings: Settings,
    state: StateStore,
    *,
    once: bool,
    github: GitHubClient | None = None,
    claude: Claude | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Run the daemon until it is stopped by a signal (or after one cycle with `once`).

    `github` and `claude` replace the real adapters (the tests and the demo use local ones);
    `redactor` is the one the logs use (default: one that knows the token).
    """
    redactor = redactor or Redactor([settings.token])
    if github is None:
        github = GitHubClient(
            settings.token, settings.github_repo, api_url=settings.github_api_url,
            redactor=redactor,
        )  # fmt: skip
    worktrees = WorktreeManager(
        settings.repo_path,
        settings.worktree_base,
        remote=settings.git_remote,
        token=settings.token,
    )
    async with github:
        await check_start(settings, github, worktrees)
        await open_mirror(settings, worktrees)
        sandbox = await start_sandbox(settings)
        if claude is None:
            assert settings.claude_cli_path is not None
            if sandbox is not None and (exposed := exposed_by_cli(settings.claude_cli_path)):
                raise StartupError(
                    f"CLAUDE_CLI_PATH={settings.claude_cli_path} sits in {exposed}, which the "
                    "sandbox would then show to Claude's runs: install the CLI in a folder of "
                    "its own (e.g. npm's global prefix) and point CLAUDE_CLI_PATH at it"
                )
            claude = SdkClaudeRunner(
                settings.claude_cli_path, model=settings.claude_model, sandbox=sandbox
            )
        feed = CommentFeed(github, state)
        checks = ShellChecks(sandbox)
        adapters = Adapters(github, worktrees, claude, checks, SystemClock(), redactor)
        daemon = Daemon(
            state,
            build_workflows(settings, state, adapters, feed),
            max_concurrent=settings.max_concurrent,
            poll_interval=settings.poll_interval,
            repo=settings.github_repo,
            before_cycle=[feed.refresh],
            after_cycle=[feed.commit],
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, daemon.request_stop)
        try:
            return await daemon.run(once=once)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def start_sandbox(settings: Settings) -> Sandbox | None:
    """The sandbox for pre-merge commands; refuse to start without one, unless SANDBOX=off."""
    if settings.sandbox == "off":
        log.warning(
            "SANDBOX=off: pull requests' code runs with the daemon's own rights and can read "
            "its token; turn the sandbox on (install bubblewrap) for any repository that "
            "accepts outside contributions"
        )
        return None
    bwrap = Bwrap()
    try:
        version = await bwrap.check()
    except SandboxUnavailable as exc:
        raise StartupError(
            f"SANDBOX=bwrap: {exc}. Install bubblewrap, or set SANDBOX=off to run pull "
            "requests' code without a sandbox (unsafe)"
        ) from None
    # The daemon's mirror, read-only: a check may run git, never change the daemon's git.
    reads = [*settings.sandbox_read_paths, settings.git_mirror]
    network = "with" if settings.sandbox_check_network else "without"
    log.info("sandbox: %s; pre-merge commands run %s network", version, network)
    return Sandbox(
        bwrap,
        read_paths=tuple(reads),
        network=settings.sandbox_check_network,
        withheld_env=frozenset(name.upper() for name in Settings.model_fields),
    )


async def check_start(settings: Settings, github: GitHubClient, worktrees: WorktreeManager) -> None:
    """Fail at start, in one line, on what would otherwise fail on every poll."""
    try:
        url = await worktrees.record_remote()
    except GitError:
        raise StartupError(
            f"GIT_REMOTE={settings.git_remote!r} is not a remote of REPO_PATH={settings.repo_path}"
        ) from None
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and (parsed.username or parsed.password):
        # Jobs read the clone's .git (read-only): a credential in its config is theirs.
        raise StartupError(
            f"the {settings.git_remote} URL of REPO_PATH={settings.repo_path} carries a "
            f"credential ({parsed.scheme}://…@{parsed.hostname}): remove it (git remote "
            f"set-url {settings.git_remote} {parsed.scheme}://{parsed.hostname}{parsed.path}); "
            "the daemon authenticates its pushes with GITHUB_TOKEN"
        )
    named = repo_of_url(url)
    if named is not None and named.lower() != settings.github_repo.lower():
        raise StartupError(
            f"REPO_PATH={settings.repo_path} is a clone of {named}, not of "
            f"GITHUB_REPO={settings.github_repo}: run the daemon in a clone of the watched "
            "repository, or set REPO_PATH to one"
        )
    expected = git_host(settings.github_api_url)
    host = foreign_host(url, settings.github_api_url)
    if host is not None:
        # The token goes with every push: only ever to the GitHub the settings name.
        raise StartupError(
            f"REPO_PATH={settings.repo_path} pushes to {host}, not to {expected} (the host of "
            f"GITHUB_API_URL={settings.github_api_url}): point {settings.git_remote} at "
            f"{expected}, or set GITHUB_API_URL to that host's API"
        )
    try:
        await github.default_branch()
    except GitHubError as exc:
        if isinstance(exc, MalformedAnswer):
            why = (
                f"{exc} (is GITHUB_API_URL={settings.github_api_url} GitHub's API root? "
                "GitHub Enterprise: https://HOST/api/v3)"
            )
        elif exc.status == 401:
            why = "GitHub refused GITHUB_TOKEN (401 Bad credentials)"
        elif exc.status in (403, 404):
            why = (
                f"GITHUB_REPO={settings.github_repo} is not visible with this token ({exc.status})"
            )
        else:
            why = f"cannot reach GitHub at GITHUB_API_URL={settings.github_api_url} ({exc.message})"
        raise StartupError(why) from None


async def open_mirror(settings: Settings, worktrees: WorktreeManager) -> None:
    """Move the daemon's git out of REPO_PATH into its private mirror (made on first start)."""
    try:
        made = await worktrees.use_mirror(settings.git_mirror)
    except (OSError, GitError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc.result.stderr.strip()
        raise StartupError(
            f"WORKTREE_BASE={settings.worktree_base}: cannot keep the daemon's git in "
            f"{settings.git_mirror} ({why}); expected a directory the daemon can write"
        ) from None
    if made:
        log.info("git: made the daemon's own copy of %s in %s", settings.github_repo,
                 settings.git_mirror)  # fmt: skip


def repo_of_url(url: str) -> str | None:
    """`owner/repo` of a GitHub-style remote URL; None for a local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ssh", "git"):
        path = parsed.path
    elif match := re.match(r"^[\w.-]+@[\w.-]+:(.+)$", url):  # scp-like: git@github.com:o/r
        path = match.group(1)
    else:
        return None
    parts = path.strip("/").removesuffix(".git").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def exposed_by_cli(cli: str) -> Path | None:
    """The home directory (or /) if the CLI's folder, which Claude's sandbox can read, holds it."""
    folder = Path(shutil.which(cli) or cli).resolve().parent
    home = Path.home().resolve()
    return folder if folder == Path("/") or home.is_relative_to(folder) else None


def host_of_url(url: str) -> str | None:
    """The host a remote URL points at; None for a local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ssh", "git"):
        return parsed.hostname
    if match := re.match(r"^[\w.-]+@([\w.-]+):", url):  # scp-like: git@github.com:o/r
        return match.group(1)
    return None


def foreign_host(url: str, api_url: str) -> str | None:
    """The host `url` points at if it is not the GitHub of `api_url` (a local path is fine)."""
    host, expected = host_of_url(url), git_host(api_url)
    if host is None or host.lower() in (expected, f"ssh.{expected}"):
        return None
    return host


def git_host(api_url: str) -> str:
    """The git host of a GitHub API root: github.com for api.github.com, else its own host."""
    host = (urlparse(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    handed_over = inherited_token()
    try:
        overrides: dict[str, Any] = {"github_token": SecretStr(handed_over)} if handed_over else {}
        settings = load_settings(**overrides)
    except ConfigError as exc:
        return _fail(str(exc))
    if secrets_in_environment():
        # /proc/<pid>/environ would show the token for the daemon's whole life.
        restart_without_secrets(settings.token, sys.argv[1:] if argv is None else argv)
    redactor = Redactor([settings.token])  # the one redactor: logs, comments, state
    logs.configure(args.verbose, redactor)
    try:
        state = State(settings.state_file)
    except StateError as exc:
        return _fail(str(exc))
    with state:
        try:
            return asyncio.run(serve(settings, state, once=args.once, redactor=redactor))
        except StartupError as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
            state.save()
            return 130


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def cli() -> None:
    """The `claude-orchestrator` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
