"""The daemon's wiring: the real adapters, the workflows on them, signals, and the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, replace

from .checks import ShellChecks
from .claude_runner import SdkClaudeRunner
from .claude_slots import ClaudeSlots
from .clock import SystemClock
from .config import Settings
from .core.redact import Redactor
from .daemon import Daemon
from .github_watcher import GitHubClient
from .model_proxy import CREDENTIAL_ENV
from .ports import Checks, Claude, Clock, Git, GitHub, SecretScan, StateStore, Workflow
from .secret_scan import SecretScanner
from .startup import (
    StartupError,
    check_start,
    exposed_by_cli,
    missing_model_credential,
    open_mirror,
    start_sandbox,
)
from .workflows.comment_feed import CommentFeed
from .workflows.implement import ImplementWorkflow
from .workflows.merge import MergeWorkflow
from .workflows.pull_heads import PullHeads
from .workflows.review import ReviewWorkflow
from .worktree_manager import WorktreeManager


@dataclass(frozen=True)
class Adapters:
    """What the workflows work through; `serve` builds the real ones, tests pass fakes."""

    github: GitHub
    git: Git
    claude: Claude
    checks: Checks
    scanner: SecretScan
    clock: Clock
    redactor: Redactor


def build_workflows(
    settings: Settings, state: StateStore, adapters: Adapters, feed: CommentFeed, heads: PullHeads
) -> list[Workflow]:
    """The three workflows, wired to their ports."""
    a = adapters
    return [
        ImplementWorkflow(
            settings, state, a.github, a.git, a.claude, a.scanner, a.redactor, a.clock
        ),
        ReviewWorkflow(
            settings, state, a.github, a.git, a.claude, feed, heads, a.redactor, a.clock
        ),
        MergeWorkflow(settings, state, a.github, a.git, a.checks, feed, heads, a.redactor, a.clock),
    ]


def build_daemon(settings: Settings, state: StateStore, adapters: Adapters) -> Daemon:
    """The daemon over the three workflows; their Claude runs share MAX_CONCURRENT slots."""
    slots = ClaudeSlots(adapters.claude, settings.max_concurrent)
    adapters = replace(adapters, claude=slots)
    heads = PullHeads(adapters.github, state)
    feed = CommentFeed(adapters.github, state)
    return Daemon(
        state,
        build_workflows(settings, state, adapters, feed, heads),
        runs=slots,
        shutdown_grace=settings.shutdown_grace,
        poll_interval=settings.poll_interval,
        repo=settings.github_repo,
        # The heads first: a comment read in this cycle was written after their answer,
        # or its head is one the writer may not have seen.
        before_cycle=[heads.refresh, feed.refresh],
        after_cycle=[feed.commit],
    )


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
    redactor = redactor or known_secrets(settings)
    if claude is None and (why := missing_model_credential(settings)) is not None:
        # Else the first ready issue would fail in public with the CLI's "Please run /login".
        raise StartupError(why)
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
        url=settings.clone_url,
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
        checks = ShellChecks(sandbox)
        scanner = SecretScanner(redactor)
        adapters = Adapters(github, worktrees, claude, checks, scanner, SystemClock(), redactor)
        daemon = build_daemon(settings, state, adapters)
        # Claude's sandboxed runs share one model proxy, stopped when the daemon stops.
        serving: contextlib.AbstractAsyncContextManager[None] = (
            claude.serving() if isinstance(claude, SdkClaudeRunner) else contextlib.nullcontext()
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # The first: no new work, Claude's runs get SHUTDOWN_GRACE; the second: at once.
            loop.add_signal_handler(sig, daemon.request_stop, sig.name)
        try:
            async with serving:
                return await daemon.run(once=once)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def known_secrets(settings: Settings) -> Redactor:
    """A redactor for the GitHub token and the model's credential, in every form it knows."""
    model = [os.environ.get(name, "") for name in CREDENTIAL_ENV]
    return Redactor([settings.token, *model])
