"""Several repositories in one daemon: each its own state, client, git and loop; Claude's slots,
the sandbox, the model proxy and the token's rate limit shared."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from .checks import ShellChecks
from .claude_slots import ClaudeSlots
from .clock import SystemClock
from .config import Settings
from .core.redact import Redactor
from .github_rest import TokenLimits
from .github_watcher import GitHubClient
from .ports import StateStore
from .secret_scan import SecretScanner
from .startup import (
    StartupError,
    check_start,
    hold_mirror,
    missing_model_credential,
    open_mirror,
    start_sandbox,
)
from .state_open import open_daemon_state, open_state
from .wiring import (
    COURTESY_GRACE,
    Adapters,
    build_daemon,
    github_client,
    make_runner,
    make_worktrees,
    stop_on_signals,
    unfinished_branches,
)
from .workflows.commands import courtesies_sent
from .worktree_manager import WorktreeManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Repository:
    """One watched repository's own parts."""

    settings: Settings
    state: StateStore
    github: GitHubClient
    worktrees: WorktreeManager


async def serve_fleet(settings: Settings, *, once: bool, redactor: Redactor) -> int:
    """Watch every repository of GITHUB_REPOS until stopped (or for one cycle each with
    `once`); 0, or 1 when a repository's loop met an unexpected error."""
    if (why := missing_model_credential(settings)) is not None:
        raise StartupError(why)
    limits = TokenLimits()  # GitHub counts one token's requests together
    with contextlib.ExitStack() as files, open_daemon_state(settings) as own:
        async with contextlib.AsyncExitStack() as clients:
            repositories = []
            for name in settings.repositories:
                mine = settings.for_repo(name)
                state = open_state(mine)
                files.enter_context(state)
                github = await clients.enter_async_context(
                    github_client(mine, redactor, limits=limits)
                )
                worktrees = make_worktrees(mine)
                await check_start(mine, github, worktrees)
                files.enter_context(hold_mirror(mine))
                await open_mirror(mine, worktrees)
                await worktrees.prune_leftovers(keep_branches=unfinished_branches(state))
                repositories.append(Repository(mine, state, github, worktrees))
            return await _run(settings, own, repositories, once, redactor)


async def _run(
    settings: Settings,
    own: StateStore,
    repositories: list[Repository],
    once: bool,
    redactor: Redactor,
) -> int:
    """One daemon per repository over shared slots, stopped together by a signal."""
    sandbox = await start_sandbox(settings)
    runner = make_runner(settings, sandbox, redactor)
    slots = ClaudeSlots(runner, settings.max_concurrent, state=own,
                        daily_budget=settings.daily_max_budget_usd)  # fmt: skip
    daemons = []
    for repo in repositories:
        claude, checks = runner, ShellChecks(None)
        if sandbox is not None:
            # A job sees its own repository's git, never another's (a private one).
            shown = (*settings.sandbox_read_paths, repo.settings.git_mirror)
            mine = dataclasses.replace(sandbox, read_paths=shown)
            claude, checks = runner.with_sandbox(mine), ShellChecks(mine)
        adapters = Adapters(repo.github, repo.worktrees, claude, checks,
                            SecretScanner(redactor), SystemClock(), redactor)  # fmt: skip
        daemons.append(
            build_daemon(repo.settings, repo.state, adapters, github=repo.github, slots=slots)
        )
    log.info("watching %d repositories: %s", len(daemons),
             ", ".join(r.settings.github_repo for r in repositories))  # fmt: skip

    def stop(why: str) -> None:
        for daemon in daemons:
            daemon.request_stop(why)

    with stop_on_signals(stop):
        async with runner.serving():
            runs = [asyncio.create_task(daemon.run(once=once)) for daemon in daemons]
            try:
                codes: list[int] = await asyncio.gather(*runs)
            finally:  # one loop's crash stops the others, which hand their items back
                for run in runs:
                    run.cancel()
                await asyncio.gather(*runs, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(courtesies_sent(), COURTESY_GRACE)
    return max(codes)
