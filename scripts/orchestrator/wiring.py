"""The daemon's wiring: the real adapters, the workflows on them, signals, and the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from .checks import ShellChecks
from .claude_runner import SdkClaudeRunner
from .claude_slots import ClaudeSlots, RepoClaude
from .clock import SystemClock
from .config import Settings
from .core.pace import next_poll, with_webhooks
from .core.redact import Redactor
from .core.work import Status, WorkItemType
from .daemon import Daemon
from .github_cache import RateBudget, cache_file, drop_other_caches
from .github_view import ListingView, listings_file
from .github_watcher import GitHubClient
from .model_proxy import CREDENTIAL_ENV
from .ports import (
    NO_TELEMETRY,
    Checks,
    Claude,
    Clock,
    Git,
    GitHub,
    SecretScan,
    StateStore,
    Telemetry,
    Workflow,
)
from .repo_settings import RepoSettings
from .sandbox import Sandbox
from .secret_scan import SecretScanner
from .startup import (
    StartupError,
    check_start,
    exposed_by_cli,
    hold_mirror,
    missing_model_credential,
    open_mirror,
    start_sandbox,
)
from .state import Prunable, daily_pruning
from .transcripts import Transcripts
from .workflows.branch_work import BranchWork
from .workflows.commands import courtesies_sent
from .workflows.comment_feed import CommentFeed
from .workflows.followup import FollowUpWorkflow
from .workflows.followup_run import followup_branch
from .workflows.implement import ImplementWorkflow, branch_for
from .workflows.merge import MergeWorkflow
from .workflows.pull_heads import PullHeads
from .workflows.review import ReviewWorkflow
from .worktree_manager import WorktreeManager

log = logging.getLogger(__name__)

COURTESY_GRACE = 5.0  # seconds the last acknowledgements get once the loop has ended


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
    settings: Settings,
    state: StateStore,
    adapters: Adapters,
    feed: CommentFeed,
    heads: PullHeads,
    base_locks: dict[str, asyncio.Lock] | None = None,
) -> list[Workflow]:
    """The workflows, wired to their ports: implement, review, merge (with Claude's fixes for
    failing checks) and follow-ups. `base_locks`: the merges' locks, kept across rebuilds."""
    a = adapters
    locks = base_locks if base_locks is not None else {}
    work = BranchWork(settings, a.git, a.claude, a.scanner, a.redactor)
    return [
        ImplementWorkflow(
            settings, state, a.github, a.git, a.claude, a.scanner, a.redactor, a.clock
        ),
        ReviewWorkflow(
            settings, state, a.github, a.git, a.claude, feed, heads, a.redactor, a.clock
        ),
        MergeWorkflow(
            settings,
            state,
            a.github,
            a.git,
            a.checks,
            feed,
            heads,
            a.redactor,
            a.clock,
            fixer=work,
            base_locks=locks,
        ),
        FollowUpWorkflow(settings, state, a.github, a.git, work, feed, a.redactor, a.clock),
    ]


def github_client(settings: Settings, redactor: Redactor, **options: Any) -> GitHubClient:
    """The daemon's GitHub client: its answers kept beside the state, in its folder or in
    STATE_URL's database (so a restarted daemon's, or a taking-over one's, reads are answered
    304) and the open pull requests and ready issues in a view kept
    current by one read of what changed (`github_view`). `options` for the tests and demo."""
    repo = f"{settings.github_api_url} {settings.github_repo}"
    view = ListingView(listings_file(settings.state_file), settings.ready_label, repo)
    options.setdefault("api_url", settings.github_api_url)
    if settings.state_url is not None:
        # Beside the state: a daemon that takes the repository over has its validators too.
        from .http_cache_pg import PgCacheStrategy, token_scope

        url = settings.state_url.get_secret_value()
        options.setdefault("cache", PgCacheStrategy(url, token_scope(settings.token)))
    else:
        cache = cache_file(settings.state_file, settings.token)
        drop_other_caches(cache)
        options.setdefault("cache_path", cache)
    return GitHubClient(settings.token, settings.github_repo, redactor=redactor, view=view,
                        **options)  # fmt: skip


def build_daemon(
    settings: Settings,
    state: StateStore,
    adapters: Adapters,
    *,
    github: GitHubClient | None = None,
    telemetry: Telemetry = NO_TELEMETRY,
    webhooks: tuple[float, Callable[[], float | None]] | None = None,
    slots: ClaudeSlots | None = None,
    on_settings: Callable[[Settings | None], None] | None = None,
) -> Daemon:
    """The daemon over the three workflows; their Claude runs share MAX_CONCURRENT slots
    (`slots`: shared with other repositories' daemons, whose log lines it then names itself
    among). With the real `github` client: its view is refreshed first in each cycle, the
    poll slows down when the rate limit runs low, and the state is pruned once a day.
    `on_settings` hears the repository's settings each time its settings file changes them
    (None: a wrong file, the repository waits)."""
    runs: ClaudeSlots | RepoClaude
    if slots is None:
        runs = slots = ClaudeSlots(adapters.claude, settings.max_concurrent, state=state,
                                   daily_budget=settings.daily_max_budget_usd)  # fmt: skip
    else:
        runs = RepoClaude(slots, adapters.claude, settings.github_repo)
    adapters = replace(adapters, claude=runs)
    heads = PullHeads(adapters.github, state)
    feed = CommentFeed(adapters.github, state)
    # The heads first: a comment read in this cycle was written after their answer, or its
    # head is one the writer may not have seen. The view before both: they read it.
    before: list[Callable[[], Awaitable[None]]] = [heads.refresh, feed.refresh]
    after: list[Callable[[], Awaitable[None]]] = [feed.commit]
    pace = None
    locks: dict[str, asyncio.Lock] = {}
    built: list[Daemon] = []  # the daemon, once built, for its repository's settings

    in_use: list[Settings | None] = [settings]

    def rebuild(mine: Settings | None) -> None:
        if mine == in_use[0]:
            return
        in_use[0] = mine
        if on_settings is not None:
            on_settings(mine)
        if mine is None:  # the repository waits: its commands wait too (the cursor stays)
            built[0].use_sources([])
            return
        feed.forget_triggers()  # the new workflows watch their own commands
        built[0].use_sources(build_workflows(mine, state, adapters, feed, heads, locks))

    if github is not None:
        # The repository's own settings file before anything reads with its settings.
        before[:0] = [github.refresh_view, RepoSettings(settings, github, state, rebuild).refresh]
        pace = Pacer(settings.poll_interval, github.rate, webhooks)
        if isinstance(state, Prunable):  # the JSON file's or PostgreSQL's
            retention = timedelta(days=settings.state_retention_days)
            after.append(daily_pruning(state, adapters.github, retention))
    built.append(Daemon(
        state,
        build_workflows(settings, state, adapters, feed, heads, locks),
        runs=runs,
        shutdown_grace=settings.shutdown_grace,
        poll_interval=settings.poll_interval,
        repo=settings.github_repo,
        before_cycle=before,
        after_cycle=after,
        pace=pace,
        # Room to prepare the next runs while the slots are busy, and no more.
        max_claude_jobs=2 * settings.max_concurrent,
        telemetry=telemetry,
        claude_gate=slots.day_spent,
        tagged=runs is not slots,
    ))  # fmt: skip
    return built[0]


class Pacer:
    """The wait before the next poll (`core.pace`); one line when it slows down, and one when
    it is back to the interval."""

    def __init__(
        self,
        interval: float,
        rate: RateBudget,
        webhooks: tuple[float, Callable[[], float | None]] | None = None,
    ) -> None:
        """`webhooks`: serve mode's interval while webhooks arrive, and the seconds since
        the last one (None before the first)."""
        self._interval = interval
        self._rate = rate
        self._webhooks = webhooks
        self._slowed = False

    def __call__(self) -> float:
        rate = self._rate
        interval = self._interval
        if self._webhooks is not None:
            quiet, since = self._webhooks
            interval = with_webhooks(interval, quiet, since())
        pace = next_poll(interval, limit=rate.limit, remaining=rate.remaining,
                         until_reset=rate.until_reset())  # fmt: skip
        if pace.slowed and not self._slowed and rate.reset_at is not None:
            log.warning("GitHub's rate limit runs low (%s of %s requests left until %s): "
                        "polling every %.0fs until then", rate.remaining, rate.limit,
                        rate.reset_at.strftime("%H:%M:%S UTC"), pace.delay)  # fmt: skip
        elif self._slowed and not pace.slowed:
            log.info("GitHub's rate limit is fine again: polling every %gs", self._interval)
        self._slowed = pace.slowed
        return pace.delay


def make_worktrees(settings: Settings) -> WorktreeManager:
    """The daemon's git for its repository: its mirror and the jobs' worktrees."""
    return WorktreeManager(
        settings.repo_path,
        settings.worktree_base,
        remote=settings.git_remote,
        token=settings.token,
        url=settings.clone_url,
        keep_worktrees=settings.keep_worktrees,
    )


def make_runner(settings: Settings, sandbox: Sandbox | None, redactor: Redactor) -> SdkClaudeRunner:
    """The Claude Code CLI's runner, its transcripts in LOG_DIR (old ones pruned now)."""
    assert settings.claude_cli_path is not None
    if sandbox is not None and (exposed := exposed_by_cli(settings.claude_cli_path)):
        raise StartupError(
            f"CLAUDE_CLI_PATH={settings.claude_cli_path} sits in {exposed}, which the "
            "sandbox would then show to Claude's runs: install the CLI in a folder of "
            "its own (e.g. npm's global prefix) and point CLAUDE_CLI_PATH at it"
        )
    transcripts = Transcripts(
        settings.log_dir,
        max_bytes=settings.transcript_max_bytes,
        retention=timedelta(days=settings.log_retention_days),
        redactor=redactor,
    )
    transcripts.prune()  # at start; the runs prune again at most once a day
    return SdkClaudeRunner(
        settings.claude_cli_path,
        model=settings.claude_model,
        sandbox=sandbox,
        transcripts=transcripts,
    )


def unfinished_branches(state: StateStore) -> set[str]:
    """The implement and follow-up branches a resumed attempt may still push from."""
    unfinished = (Status.PENDING, Status.IN_PROGRESS)
    return {
        branch_for(i.number) for i in state.items(WorkItemType.ISSUE) if i.status in unfinished
    } | {
        followup_branch(i.number)
        for i in state.items(WorkItemType.FOLLOW_UP)
        if i.status in unfinished
    }


async def serve(
    settings: Settings,
    state: StateStore,
    *,
    once: bool,
    github: GitHubClient | None = None,
    claude: Claude | None = None,
    redactor: Redactor | None = None,
    http: bool = False,
) -> int:
    """Run the daemon until it is stopped by a signal (or after one cycle with `once`);
    with `http`, serve mode: webhooks, the dashboard and the metrics beside it.

    `github` and `claude` replace the real adapters (the tests and the demo use local ones);
    `redactor` is the one the logs use (default: one that knows the token).
    """
    redactor = redactor or known_secrets(settings)
    if claude is None and (why := missing_model_credential(settings)) is not None:
        # Else the first ready issue would fail in public with the CLI's "Please run /login".
        raise StartupError(why)
    sock = None
    if http:  # refused or taken: said before anything else starts
        # Serve mode's modules (the dashboard's templates, the metrics) load only for it.
        from .serving import check_serving, listen

        check_serving(settings)
        sock = listen(settings)
    if github is None:
        github = github_client(settings, redactor)
    worktrees = make_worktrees(settings)
    with sock if sock is not None else contextlib.nullcontext():
        async with github:
            await check_start(settings, github, worktrees)
            with hold_mirror(settings):
                return await _run(settings, state, once, github, claude, redactor, worktrees,
                                  sock)  # fmt: skip


async def _run(
    settings: Settings,
    state: StateStore,
    once: bool,
    github: GitHubClient,
    claude: Claude | None,
    redactor: Redactor,
    worktrees: WorktreeManager,
    sock: socket.socket | None,
) -> int:
    """The daemon on its own git: the mirror, the sandbox, the adapters, signals, the loop;
    with `sock`, the HTTP server on it."""
    await open_mirror(settings, worktrees)
    # What a killed daemon left; an unfinished issue's branch may hold its unpushed commit.
    await worktrees.prune_leftovers(keep_branches=unfinished_branches(state))
    sandbox = await start_sandbox(settings)
    if claude is None:
        claude = make_runner(settings, sandbox, redactor)
    checks = ShellChecks(sandbox)
    scanner = SecretScanner(redactor)
    adapters = Adapters(github, worktrees, claude, checks, scanner, SystemClock(), redactor)
    web: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
    if sock is None:
        daemon = build_daemon(settings, state, adapters, github=github)
    else:
        from .dashboard import dashboard_routes
        from .metrics import Metrics, budget_reading
        from .serving import WiredSource, repo_hook, serve_http, since_last, webhook_receiver
        from .webhooks import only

        metrics = Metrics(budget_reading(github.rate))
        telemetry = metrics.repo(settings.github_repo, state)
        github.wire.observers.append(telemetry.github_observer)
        woken: list[Daemon] = []  # the receiver wakes the daemon built after it
        hook, on_settings = repo_hook(settings, lambda: woken[0].wake(),
                                      lambda: github.known_login)  # fmt: skip
        receiver = webhook_receiver(settings, only(hook), metrics)
        # Its own repository's deliveries: an organisation's webhook sends the others' too.
        quiet = (settings.webhook_poll_interval, since_last(receiver, settings.github_repo))
        daemon = build_daemon(settings, state, adapters, github=github, telemetry=telemetry,
                              webhooks=quiet, on_settings=on_settings)  # fmt: skip
        woken.append(daemon)
        source = WiredSource(settings, state, daemon, github.rate, receiver)
        web = serve_http(settings, dashboard_routes(source), receiver, metrics, sock)
    # Claude's sandboxed runs share one model proxy, stopped when the daemon stops.
    serving: contextlib.AbstractAsyncContextManager[None] = (
        claude.serving() if isinstance(claude, SdkClaudeRunner) else contextlib.nullcontext()
    )
    with stop_on_signals(daemon.request_stop):
        async with serving, web:
            code = await daemon.run(once=once)
            # The 👀 on commands go out beside the work: the last ones still get sent.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(courtesies_sent(), COURTESY_GRACE)
            return code


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `stop` with the signal's name while inside. The first: no new
    work, Claude's runs get SHUTDOWN_GRACE; the second: at once."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def known_secrets(settings: Settings) -> Redactor:
    """A redactor for the GitHub token, serve mode's secrets and the model's credential, in
    every form it knows."""
    model = [os.environ.get(name, "") for name in CREDENTIAL_ENV]
    serving = [
        s.get_secret_value() for s in (settings.webhook_secret, settings.dashboard_token) if s
    ]
    database: list[str] = []
    if settings.state_url is not None:  # psycopg is imported only for a database's state
        from .state_pg import secrets_of

        database = secrets_of(settings.state_url.get_secret_value())
    return Redactor([settings.token, *serving, *model, *database])
