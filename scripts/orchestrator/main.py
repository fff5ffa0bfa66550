"""Entry point: parse the command line, load settings and state, run the daemon loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from . import __version__, logs
from .config import (
    ConfigError,
    Settings,
    load_settings,
    raw_setting,
    repo_state_file,
    repositories_setting,
    state_file_setting,
)
from .reexec import inherited_secrets, restart_without_secrets, secrets_in_environment

# The GitHub client, Claude's SDK and the checks (about a second of imports) are imported
# where they are used: the daemon restarts itself once before it needs them (reexec.py).
if TYPE_CHECKING:
    from .core.redact import Redactor
    from .preflight import Finding

log = logging.getLogger(__name__)

PROG = "claude-orchestrator"
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Watch a GitHub repository and run Claude Code: implement issues labelled ready,\n"
            "review new pull requests, and merge on a /merge comment after the checks pass.\n"
            "Settings come from the environment and ./.env (see .env.example).\n\n"
            "Without a command the daemon runs until Ctrl-C or SIGTERM."
        ),
        epilog=(
            "exit codes (the daemon): 0 stopped cleanly, or --once finished; 1 a poll or a\n"
            "job met an unexpected error (the log says which); 2 a setting or the setup is\n"
            "wrong (one line says which); 130 interrupted during start-up.\n\n"
            f"{PROG} COMMAND --help describes each command."
        ),
    )
    _verbose(parser, default=False)
    parser.add_argument(
        "--once", action="store_true", help="run one poll cycle, wait for its work, then exit"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read GitHub, decide, and print what one cycle would do; writes nothing to "
        "GitHub, the git remote or the state",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="report what the daemon needs (settings, git, GitHub, Claude Code, sandbox, "
        "labels) and exit 0 only if all is well; writes nothing to GitHub without --fix",
        description=(
            "Report each thing the daemon needs as ok, warning or problem, with a fix under\n"
            "each one that is not ok: the settings, git, the repository, GitHub (token,\n"
            "permissions, labels), WORKTREE_BASE, STATE_FILE, Claude Code and its credential,\n"
            "and the sandbox. A wrong setting is one problem among the others: what needs no\n"
            "settings is still checked. It only reads: it writes nothing to GitHub (but --fix\n"
            "creates the missing labels) and creates nothing on disk."
        ),
        epilog="exit codes: 0 no problem (warnings allowed); 2 at least one problem.",
    )
    check.add_argument("--fix", action="store_true", help="create the missing labels")
    commands.add_parser(
        "serve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run the daemon with an HTTP server: GitHub's webhooks start work at once, a "
        "live dashboard, Prometheus metrics",
        description=(
            "Run the daemon as without a command, plus an HTTP server on SERVE_HOST:SERVE_PORT\n"
            "(127.0.0.1:8765): POST /webhook takes the repository's webhooks (signed with\n"
            "WEBHOOK_SECRET; without it they are refused) and polls at once; / is a read-only\n"
            "dashboard with each Claude run's transcript live; /metrics is Prometheus text.\n"
            "Polling goes on: every WEBHOOK_POLL_INTERVAL seconds while webhooks arrive,\n"
            "every POLL_INTERVAL when they stop. A SERVE_HOST other than loopback needs\n"
            "DASHBOARD_TOKEN."
        ),
        epilog=(
            "exit codes: as the daemon's; 2 also when SERVE_PORT cannot be listened on, or\n"
            "SERVE_HOST is not a loopback address and DASHBOARD_TOKEN is not set."
        ),
    )
    demo = commands.add_parser(
        "demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="watch the whole loop run on a local fake GitHub with a scripted model: no "
        "credentials, under a minute",
        description=(
            "Run the real daemon in a throwaway sandbox: a fake GitHub on 127.0.0.1, a sample\n"
            "repository, an issue labelled ready and a person's pull request, with the real\n"
            "Claude Code CLI on a scripted model. It tells what happens as it happens, then\n"
            "removes the sandbox. Needs bubblewrap and socat; no credentials."
        ),
        epilog=(
            "exit codes: 0 the pull request was merged; 1 the story failed (one line says\n"
            "where); 2 it cannot run (no sandbox, no credential for --real-claude);\n"
            "130 interrupted."
        ),
    )
    demo.add_argument("--keep", action="store_true", help="keep the sandbox and say where")
    demo.add_argument(
        "--real-claude",
        action="store_true",
        help="use the real model (needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN)",
    )
    commands.add_parser(
        "status",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="print the work items in STATE_FILE (works while the daemon runs)",
        description=(
            "Print the work items in STATE_FILE as a table: item, status, attempts, head,\n"
            "pull request, cost, time and last error, with the counts under it. It reads the\n"
            "file without its lock, so it works while the daemon runs. It reads only\n"
            "STATE_FILE (environment, then ./.env): no GitHub token needed. With STATE_URL\n"
            "set, it reads GITHUB_REPO's state in that database instead."
        ),
        epilog=(
            "exit codes: 0 shown (also when there are no items); 2 STATE_FILE is wrong or the\n"
            "file cannot be read."
        ),
    )
    clear = commands.add_parser(
        "clear",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{PROG} clear [-h] [-v] [--repo OWNER/REPO] {{issue N | pr N | --all}}",
        help="forget work items so they are processed again: clear issue N, clear pr N, "
        "clear --all (not while the daemon runs)",
        description=(
            "Forget work items in STATE_FILE (or STATE_URL's database, for GITHUB_REPO) so\n"
            "that the daemon processes them again:\n"
            "  clear issue N   issue #N starts afresh if it is open with the ready label\n"
            "  clear pr N      pull request #N's review and merge items: it is reviewed again,\n"
            "                  and a writer comments /merge again to merge it\n"
            "  clear --all     every item; the comment cursor and the other\n"
            "                  repository-wide records stay\n"
            "The daemon must be stopped: it holds the file while it runs."
        ),
        epilog=(
            "exit codes: 0 cleared (or --all with nothing to clear); 1 the issue or pull\n"
            "request has no work item; 2 a wrong request, a state file that cannot be read or\n"
            "written, or one the running daemon holds."
        ),
    )
    commands.add_parser(
        "migrate-state",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="copy STATE_FILE into STATE_URL's PostgreSQL database (once, daemon stopped)",
        description=(
            "Copy the work items and records of STATE_FILE into the PostgreSQL database that\n"
            "STATE_URL names, for GITHUB_REPO; the file is left as it was. Refused when the\n"
            "database already holds that repository's state, or while a daemon holds either."
        ),
        epilog="exit codes: 0 copied; 2 a setting is wrong, or the copy was refused.",
    )
    for listing in (commands.choices["status"], clear):
        listing.add_argument(
            "--repo", metavar="OWNER/REPO", help="one of GITHUB_REPOS (clear needs it then)"
        )
    clear.add_argument("kind", nargs="?", choices=("issue", "pr"), help="what to clear")
    clear.add_argument("number", nargs="?", type=int, help="the issue or pull request")
    clear.add_argument("--all", action="store_true", dest="everything", help="every item")
    clear.set_defaults(usage_error=clear.error)
    for command in commands.choices.values():
        _verbose(command, default=argparse.SUPPRESS)
    return parser


def _verbose(parser: argparse.ArgumentParser, *, default: object) -> None:
    """-v, accepted before the command and after it. A command's own -v has no default, so
    that it does not undo a -v given before the command."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logging")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.verbose)
    # The commands that need neither GitHub nor the settings' checks.
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(keep=args.keep, real_claude=args.real_claude, verbose=args.verbose)
    if args.command == "migrate-state":
        return _migrate_command()
    if args.command in ("status", "clear"):
        return _items_command(args)
    if args.command == "check" and not args.verbose:
        _quiet()  # check prints its table and nothing else
    handed_over = inherited_secrets()
    try:
        overrides: dict[str, Any] = {name: SecretStr(v) for name, v in handed_over.items()}
        settings = load_settings(**overrides)
    except ConfigError as exc:
        if args.command == "check":
            from .preflight import preflight_unconfigured

            return _report(asyncio.run(preflight_unconfigured(exc)))
        return _fail(str(exc))
    if secrets_in_environment():
        # /proc/<pid>/environ would show the token for the daemon's whole life.
        secrets = {"github_token": settings.token}
        for name in ("webhook_secret", "dashboard_token", "state_url"):
            value: SecretStr | None = getattr(settings, name)
            if value is not None:
                secrets[name] = value.get_secret_value()
        restart_without_secrets(secrets, sys.argv[1:] if argv is None else argv)
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """The commands that talk to GitHub: `check`, `--dry-run` and the daemon."""
    from .startup import StartupError, raise_fd_limit
    from .state import StateError
    from .state_open import check_one_repository, open_state
    from .wiring import known_secrets, serve

    redactor = known_secrets(settings)  # the one redactor: logs, comments, state
    logs.configure(args.verbose, redactor)
    raise_fd_limit()
    if args.command == "check":
        if not args.verbose:
            _quiet()
        return _report(asyncio.run(_preflight(settings, redactor, fix=args.fix)))
    if args.dry_run:
        return _dry_run(settings, redactor)
    if settings.several:
        return _fleet(args, settings, redactor)
    try:
        check_one_repository(settings)
        state = open_state(settings)
    except StateError as exc:
        return _fail(str(exc))
    with state:
        try:
            http = args.command == "serve"
            return asyncio.run(serve(settings, state, once=args.once, redactor=redactor, http=http))
        except StartupError as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
            state.save()
            return 130


def _fleet(args: argparse.Namespace, settings: Settings, redactor: Redactor) -> int:
    """The daemon over several repositories (GITHUB_REPOS)."""
    from .fleet import serve_fleet
    from .startup import StartupError
    from .state import StateError

    http = args.command == "serve"
    try:
        return asyncio.run(serve_fleet(settings, once=args.once, redactor=redactor, http=http))
    except (StartupError, StateError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:  # before the signal handlers were installed: nothing started
        return 130


def _quiet() -> None:
    """Only errors reach the log: a command that prints a report prints only that."""
    logging.getLogger().setLevel(logging.ERROR)


def _items_command(args: argparse.Namespace) -> int:
    from .status import clear_items, show_status

    if args.command == "clear" and (
        args.everything == (args.kind is not None) or (args.kind is None) != (args.number is None)
    ):
        args.usage_error("give `issue N`, `pr N` or `--all`")  # exits 2, with clear's usage
    try:
        stores = _stores(args.repo, one=args.command == "clear")
    except ConfigError as exc:
        return _fail(str(exc))
    codes: list[int] = []
    for repo, state_file, store in stores:
        if len(stores) > 1:
            print(f"{repo}:" if not codes else f"\n{repo}:")
        if args.command == "status":
            codes.append(show_status(state_file, store=store))
        else:
            codes.append(clear_items(state_file, kind=args.kind, number=args.number,
                                     everything=args.everything, store=store))  # fmt: skip
    return max(codes)


Store = tuple[str, Path, "Callable[[bool], Any] | None"]


def _stores(chosen: str | None, *, one: bool) -> list[Store]:
    """Each repository's state (`chosen`'s alone if given) as `status` and `clear` read it:
    its file, and how to open it when it is in STATE_URL's database. With several
    repositories, `one` (clear) needs `chosen`."""
    state_file = state_file_setting()
    watched = repositories_setting()
    url = _database_url()
    repos = watched
    if chosen is not None:
        repos = [r for r in watched if r.lower() == chosen.lower()]
        if not repos:
            raise ConfigError(f"--repo {chosen} is not watched: expected one of "
                              f"{', '.join(watched) or 'GITHUB_REPO (not set)'}")  # fmt: skip
    elif one and len(watched) > 1:
        raise ConfigError(f"{len(watched)} repositories are watched (GITHUB_REPOS): say which "
                          f"with --repo, one of {', '.join(watched)}")  # fmt: skip
    if url is not None:
        if not repos:
            raise ConfigError("GITHUB_REPO is required with STATE_URL: it names whose state it is")
        return [(repo, Path("STATE_URL"), _database_opener(url, repo)) for repo in repos]
    if len(watched) <= 1:
        return [(repos[0] if repos else "", state_file, None)]
    return [(repo, repo_state_file(state_file, repo), None) for repo in repos]


def _migrate_command() -> int:
    """`migrate-state`: it needs STATE_FILE, STATE_URL and GITHUB_REPO (or each of GITHUB_REPOS,
    from its own file), and no GitHub token."""
    from .state import StateError
    from .state_open import migrate_state

    try:
        state_file = state_file_setting()
        repos = repositories_setting()
        url = _database_url()
    except ConfigError as exc:
        return _fail(str(exc))
    if url is None:
        return _fail("STATE_URL is not set: it names the database to copy the state into")
    if not repos:
        return _fail("GITHUB_REPO is required with STATE_URL: it names whose state it is")
    files = {r: repo_state_file(state_file, r) if len(repos) > 1 else state_file for r in repos}
    if len(repos) > 1:
        files = {r: f for r, f in files.items() if f.is_file()}
        if not files:
            return _fail(f"no repository's state file is beside STATE_FILE={state_file}: "
                         "nothing to copy")  # fmt: skip
    for repo, path in files.items():
        try:
            print(migrate_state(path, url, repo))
        except (StateError, ValueError) as exc:
            return _fail(str(exc))
    return 0


def _database_url() -> str | None:
    """STATE_URL (None when unset), checked as the daemon checks it."""
    url = raw_setting("STATE_URL")
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "STATE_URL is not valid: expected a PostgreSQL URL such as postgresql://user@host/db"
        )
    return url


def _database_opener(url: str, repo: str) -> Callable[[bool], Any]:
    """How to open `repo`'s state in STATE_URL's database, with or without its lock."""
    from .state_pg import PgState

    return lambda lock: PgState(url, repo, lock=lock)


def _dry_run(settings: Settings, redactor: Redactor) -> int:
    from .dry_run import UnmodelledWrite, dry_run
    from .startup import StartupError
    from .state import StateError

    try:
        return asyncio.run(dry_run(settings, redactor, sys.stdout))
    except (StartupError, StateError) as exc:
        return _fail(str(exc))
    except UnmodelledWrite as exc:
        print(f"{PROG}: dry run stopped before a write it cannot show ({exc}); nothing was sent",
              file=sys.stderr)  # fmt: skip
        return 1


async def _preflight(settings: Settings, redactor: Redactor, *, fix: bool) -> list[Finding]:
    from .preflight_repos import preflight_all

    return await preflight_all(settings, redactor, fix=fix)


def _report(findings: list[Finding]) -> int:
    from .preflight import Level, report

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
