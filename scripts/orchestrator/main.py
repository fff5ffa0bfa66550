"""Entry point: parse the command line, load settings and state, run the daemon loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from . import __version__, logs
from .config import ConfigError, Settings, load_settings, state_file_setting
from .core.redact import Redactor
from .github_watcher import GitHubClient
from .preflight import Finding, Level, preflight, report
from .reexec import inherited_token, restart_without_secrets, secrets_in_environment
from .startup import (
    StartupError,
    raise_fd_limit,
)
from .state import State, StateError
from .wiring import known_secrets, serve

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


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def cli() -> None:
    """The `claude-orchestrator` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
