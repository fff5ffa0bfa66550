"""Entry point: parse the command line, load settings and state, run the daemon loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from . import __version__, logs
from .checks import ShellChecks
from .claude_runner import SdkClaudeRunner
from .clock import SystemClock
from .config import ConfigError, Settings, load_settings, state_file_setting
from .core.redact import Redactor
from .daemon import Daemon
from .github_watcher import GitHubClient
from .model_proxy import CREDENTIAL_ENV
from .ports import Checks, Claude, Clock, Git, GitHub, SecretScan, StateStore, Workflow
from .preflight import Finding, Level, preflight, report
from .reexec import inherited_token, restart_without_secrets, secrets_in_environment
from .secret_scan import SecretScanner
from .startup import (
    StartupError,
    check_start,
    exposed_by_cli,
    missing_model_credential,
    open_mirror,
    raise_fd_limit,
    start_sandbox,
)
from .state import State, StateError
from .workflows.comment_feed import CommentFeed
from .workflows.implement import ImplementWorkflow
from .workflows.merge import MergeWorkflow
from .workflows.pull_heads import PullHeads
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
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read GitHub, decide, and print what one cycle would do; writes nothing to "
        "GitHub, the git remote or the state",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="report what the daemon needs (settings, git, GitHub, Claude Code, sandbox, "
        "labels) and exit 0 only if all is well; writes nothing to GitHub without --fix",
    )
    check.add_argument("--fix", action="store_true", help="create the missing labels")
    demo = commands.add_parser(
        "demo",
        help="watch the whole loop run on a local fake GitHub with a scripted model: no "
        "credentials, under a minute",
    )
    demo.add_argument("--keep", action="store_true", help="keep the sandbox and say where")
    demo.add_argument(
        "--real-claude",
        action="store_true",
        help="use the real model (needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN)",
    )
    commands.add_parser(
        "status", help="print the work items in STATE_FILE (works while the daemon runs)"
    )
    clear = commands.add_parser(
        "clear",
        help="forget work items so they are processed again: clear issue N, clear pr N, "
        "clear --all (not while the daemon runs)",
    )
    clear.add_argument("kind", nargs="?", choices=("issue", "pr"), help="what to clear")
    clear.add_argument("number", nargs="?", type=int, help="the issue or pull request")
    clear.add_argument("--all", action="store_true", dest="everything", help="every item")
    return parser


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
        heads = PullHeads(github, state)
        feed = CommentFeed(github, state)
        checks = ShellChecks(sandbox)
        scanner = SecretScanner(redactor)
        adapters = Adapters(github, worktrees, claude, checks, scanner, SystemClock(), redactor)
        daemon = Daemon(
            state,
            build_workflows(settings, state, adapters, feed, heads),
            max_concurrent=settings.max_concurrent,
            poll_interval=settings.poll_interval,
            repo=settings.github_repo,
            # The heads first: a comment read in this cycle was written after their answer,
            # or its head is one the writer may not have seen.
            before_cycle=[heads.refresh, feed.refresh],
            after_cycle=[feed.commit],
        )
        # Claude's sandboxed runs share one model proxy, stopped when the daemon stops.
        serving: contextlib.AbstractAsyncContextManager[None] = (
            claude.serving() if isinstance(claude, SdkClaudeRunner) else contextlib.nullcontext()
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, daemon.request_stop)
        try:
            async with serving:
                return await daemon.run(once=once)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.verbose)
    # The commands that need neither GitHub nor the settings' checks.
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(keep=args.keep, real_claude=args.real_claude, verbose=args.verbose)
    if args.command in ("status", "clear"):
        return _items_command(parser, args)
    handed_over = inherited_token()
    try:
        overrides: dict[str, Any] = {"github_token": SecretStr(handed_over)} if handed_over else {}
        settings = load_settings(**overrides)
    except ConfigError as exc:
        if args.command == "check":
            return _report([Finding("configuration", Level.PROBLEM, str(exc))])
        return _fail(str(exc))
    if secrets_in_environment():
        # /proc/<pid>/environ would show the token for the daemon's whole life.
        restart_without_secrets(settings.token, sys.argv[1:] if argv is None else argv)
    redactor = known_secrets(settings)  # the one redactor: logs, comments, state
    logs.configure(args.verbose, redactor)
    raise_fd_limit()
    if args.command == "check":
        return _report(asyncio.run(_preflight(settings, redactor, fix=args.fix)))
    if args.dry_run:
        return _dry_run(settings, redactor)
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


def _items_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .status import clear_items, show_status

    try:
        state_file = state_file_setting()
    except ConfigError as exc:
        return _fail(str(exc))
    if args.command == "status":
        return show_status(state_file)
    if args.everything == (args.kind is not None) or (args.kind is not None) != (
        args.number is not None
    ):
        parser.error("clear takes `issue N`, `pr N` or `--all`")
    return clear_items(state_file, kind=args.kind, number=args.number, everything=args.everything)


def _dry_run(settings: Settings, redactor: Redactor) -> int:
    from .dry_run import UnmodelledWrite, dry_run

    try:
        return asyncio.run(dry_run(settings, redactor, sys.stdout))
    except (StartupError, StateError) as exc:
        return _fail(str(exc))
    except UnmodelledWrite as exc:
        print(f"{PROG}: dry run stopped before a write it cannot show ({exc}); nothing was sent",
              file=sys.stderr)  # fmt: skip
        return 1


async def _preflight(settings: Settings, redactor: Redactor, *, fix: bool) -> list[Finding]:
    github = GitHubClient(
        settings.token, settings.github_repo, api_url=settings.github_api_url, redactor=redactor
    )
    async with github:
        found = await preflight(settings, github, fix=fix)
    return [Finding("configuration", Level.OK, f"GITHUB_REPO={settings.github_repo}"), *found]


def _report(findings: list[Finding]) -> int:
    print(report(findings))
    return EXIT_CONFIG if any(f.level is Level.PROBLEM for f in findings) else 0


def known_secrets(settings: Settings) -> Redactor:
    """A redactor for the GitHub token and the model's credential, in every form it knows."""
    model = [os.environ.get(name, "") for name in CREDENTIAL_ENV]
    return Redactor([settings.token, *model])


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def cli() -> None:
    """The `claude-orchestrator` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
