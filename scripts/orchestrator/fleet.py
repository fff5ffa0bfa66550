"""Several repositories in one daemon, and several daemons on one database: each repository
leased to one daemon at a time, with its own state, client, git and loop there; Claude's slots,
the sandbox, the model proxy and the token's rate limit shared by a daemon's repositories."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from .checks import ShellChecks
from .claude_runner import SdkClaudeRunner
from .claude_slots import ClaudeSlots
from .clock import SystemClock
from .config import Settings
from .core.redact import Redactor
from .daemon import Daemon
from .github_rest import TokenLimits
from .leases import Leases, LocalLeases
from .sandbox import Sandbox
from .secret_scan import SecretScanner
from .startup import (
    StartupError,
    check_start,
    hold_mirror,
    missing_model_credential,
    open_mirror,
    start_sandbox,
)
from .state import StateError
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

if TYPE_CHECKING:  # serve mode's modules, and the database's, load only for them
    from .fleet_serving import FleetServing
    from .wakes_pg import PgWakes

log = logging.getLogger(__name__)

MAX_TICK = 10.0  # seconds between the leases' renewals at most


async def serve_fleet(
    settings: Settings, *, once: bool, redactor: Redactor, http: bool = False
) -> int:
    """Watch the repositories of GITHUB_REPOS until stopped (or for one cycle each with
    `once`): all of them, or with STATE_URL a fair share beside the other daemons there;
    with `http`, serve mode's webhooks, dashboard and metrics for them all.
    0, or 1 when a repository's loop met an unexpected error."""
    if (why := missing_model_credential(settings)) is not None:
        raise StartupError(why)
    sock = None
    if http:  # refused or taken: said before anything else starts
        from .serving import check_serving, listen

        check_serving(settings)
        sock = listen(settings)
    with sock if sock is not None else contextlib.nullcontext():
        return await _serve_fleet(settings, once, redactor, sock)


async def _serve_fleet(
    settings: Settings, once: bool, redactor: Redactor, sock: socket.socket | None
) -> int:
    leases = open_leases(settings)
    with contextlib.closing(leases), open_daemon_state(settings) as own:
        sandbox = await start_sandbox(settings)
        runner = make_runner(settings, sandbox, redactor)
        slots = ClaudeSlots(runner, settings.max_concurrent, state=own,
                            daily_budget=settings.daily_max_budget_usd)  # fmt: skip
        limits = TokenLimits()  # GitHub counts one token's requests together
        fleets: list[Fleet] = []  # the wakes heard wake the fleet built after them
        wakes = open_wakes(settings, lambda repo: fleets[0].wake(repo) if fleets else None)
        web: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        serving = None
        if sock is not None:
            from .fleet_serving import FleetServing
            from .serving import serve_http

            serving = FleetServing(settings, limits, wakes=wakes)
            web = serve_http(settings, serving.routes(), serving.receiver, serving.metrics,
                             sock)  # fmt: skip
        fleet = Fleet(settings, redactor, leases, slots, runner, sandbox, limits=limits,
                      serving=serving)  # fmt: skip
        fleets.append(fleet)
        shared = (
            ""
            if isinstance(leases, LocalLeases)
            else (
                f", a share of them beside the other daemons on STATE_URL (leases of "
                f"{settings.lease_seconds:g}s)"
            )
        )
        log.info("watching %d repositories: %s%s", len(settings.repositories),
                 ", ".join(settings.repositories), shared)  # fmt: skip
        relay = contextlib.closing(wakes) if wakes is not None else contextlib.nullcontext()
        with stop_on_signals(fleet.request_stop), relay:
            async with runner.serving(), web:
                code = await fleet.run(once=once)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(courtesies_sent(), COURTESY_GRACE)
                return code


def open_wakes(settings: Settings, wake: Callable[[str], None]) -> PgWakes | None:
    """With STATE_URL, the wakes passed between the daemons there: a webhook's delivery to any
    of them wakes the one that holds its repository (served or not)."""
    if settings.state_url is None:
        return None
    from .wakes_pg import PgWakes

    url = settings.state_url.get_secret_value()
    return PgWakes(url, settings.repositories, wake, asyncio.get_running_loop())


def open_leases(settings: Settings) -> Leases:
    """The leases: in STATE_URL's database, shared with the other daemons there; else this
    daemon's alone."""
    if settings.state_url is None:
        return LocalLeases()
    from .leases_pg import PgLeases

    return PgLeases(settings.state_url.get_secret_value(), settings.lease_seconds)


class Fleet:
    """Takes repositories (leases), runs a daemon on each, and lets them go: a lost lease stops
    that repository's daemon at once; a newcomer beside it gets its share as an idle one is
    let go. Every repository's daemon is stopped by `request_stop`."""

    def __init__(
        self,
        settings: Settings,
        redactor: Redactor,
        leases: Leases,
        slots: ClaudeSlots,
        runner: SdkClaudeRunner,
        sandbox: Sandbox | None,
        *,
        limits: TokenLimits | None = None,
        serving: FleetServing | None = None,
    ) -> None:
        """`limits`: the token's, shared by the repositories' clients; `serving`: serve
        mode's webhooks, metrics and dashboard, which each repository joins while here."""
        self._settings = settings
        self._redactor = redactor
        self._leases = leases
        self._slots = slots
        self._runner = runner
        self._sandbox = sandbox
        self._limits = limits or TokenLimits()
        self._serving = serving
        self._daemons: dict[str, Daemon] = {}
        self._tasks: dict[str, asyncio.Task[int]] = {}
        self._codes: list[int] = []
        self._stop = asyncio.Event()
        self._renewed = asyncio.get_running_loop().time()
        self._live = 1  # the daemons alive, as the last heartbeat counted them
        # Daemons start their look at the list at different places: fewer collisions.
        names = settings.repositories
        turn = int(hashlib.sha256(leases.owner.encode()).hexdigest(), 16) % len(names)
        self._order = names[turn:] + names[:turn]

    def wake(self, repo: str) -> None:
        """Poll `repo` now, if it is worked on here (a webhook's wake)."""
        daemon = self._daemons.get(self._name(repo))
        if daemon is not None:
            daemon.wake()

    def request_stop(self, why: str = "stop requested") -> None:
        """No new repository; each one's daemon stops as on its own (a second request: at
        once)."""
        self._stop.set()
        for daemon in self._daemons.values():
            daemon.request_stop(why)

    async def run(self, *, once: bool) -> int:
        """Take the share and keep it until stopped (or until each repository's one cycle
        ended): the leases are renewed by a task of their own the whole time, through slow
        starts, the last cycle of `--once` and the stop's grace."""
        keeper = asyncio.create_task(self._renewing())
        try:
            await self._beat()  # how many daemons share the repositories, before taking any
            first = True
            while True:
                await self._take(first=first, once=once)
                first = False
                if once or self._stop.is_set():
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._tick)
        except BaseException:  # a repository that cannot start: the others stop at once
            self.request_stop("the start failed")
            self.request_stop("the start failed")
            raise
        finally:
            while self._tasks:  # each repository's loop ends by itself (once) or by the stop
                await asyncio.wait(list(self._tasks.values()))
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        return max(self._codes, default=0)

    @property
    def _tick(self) -> float:
        return min(MAX_TICK, self._leases.seconds / 3)

    async def _renewing(self) -> None:
        """Every tick: say this daemon is alive and renew its leases; a lost one stops its
        repository at once, and leases not renewed in time stop them all (another daemon may
        take them once they end)."""
        while True:
            await asyncio.sleep(self._tick)
            await self._beat()

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        asked = loop.time()  # the database counts the lease from about now
        try:
            # In a thread, bounded: a database that stops answering must not freeze the loop
            # past the leases' end (its calls are synchronous).
            live, lost = await asyncio.wait_for(
                asyncio.to_thread(lambda: (self._leases.beat(), self._leases.renew())),
                self._tick,
            )
        except (StateError, asyncio.TimeoutError) as exc:
            log.warning("could not renew the leases: %s", exc or "no answer in time")
            if self._daemons and loop.time() - self._renewed > self._leases.seconds * 2 / 3:
                log.error("the leases could not be renewed in time: stopping every repository")
                for repo in list(self._daemons):
                    self._halt(repo)
            return
        self._renewed = asked
        self._live = live
        for repo in lost:
            log.error("lost the lease of %s (renewed too late): its work stops at once", repo)
            self._halt(repo)

    async def _take(self, *, first: bool, once: bool) -> None:
        """Take repositories up to the share, and let an extra idle one go."""
        if self._stop.is_set():
            return
        share = math.ceil(len(self._order) / max(self._live, 1))
        for repo in self._order:
            if len(self._daemons) >= share or self._stop.is_set():
                break
            if repo in self._daemons:
                continue
            try:
                taken = await asyncio.wait_for(
                    asyncio.to_thread(self._leases.claim, repo), self._tick
                )
            except (StateError, asyncio.TimeoutError) as exc:
                if first:
                    raise StateError(f"cannot take {repo}: {exc}") from None
                log.warning("could not take %s, tried again later: %s", repo, exc)
                return
            if taken:
                await self._start(repo, once=once, first=first)
        leaving = [r for r, d in self._daemons.items() if d.stopping]
        if len(self._daemons) - len(leaving) > share and not once:
            idle = [r for r, d in self._daemons.items() if not d.jobs() and r not in leaving]
            if idle:
                log.info("%d daemons share %d repositories: letting %s go", self._live,
                         len(self._order), idle[0])  # fmt: skip
                self._daemons[idle[0]].request_stop("another daemon takes it")

    def _let_go(self, repo: str) -> None:
        """The lease given back (if that fails, it ends by itself: it is not renewed)."""
        try:
            self._leases.release(repo)
        except StateError as exc:
            log.warning("could not let %s go (it is free in %gs): %s", repo,
                        self._leases.seconds, exc)  # fmt: skip

    def _halt(self, repo: str) -> None:
        daemon = self._daemons.get(self._name(repo))
        if daemon is not None:
            daemon.request_stop("the lease was lost")
            daemon.request_stop("the lease was lost")  # the second: at once

    def _name(self, repo: str) -> str:
        """The repository as GITHUB_REPOS writes it (the leases hold it in lower case)."""
        return next((r for r in self._order if r.lower() == repo.lower()), repo)

    async def _start(self, repo: str, *, once: bool, first: bool) -> None:
        """`repo`'s daemon, started; a failure to start it is fatal in the first round (a
        setting is wrong) and retried later otherwise (taking over from a daemon that died)."""
        stack = contextlib.AsyncExitStack()
        try:
            daemon = await self._open(repo, stack)
        except (StartupError, StateError) as exc:
            await stack.aclose()
            self._let_go(repo)
            if first:
                raise
            log.error("cannot work on %s now, tried again later: %s", repo, exc)
            return
        if self._stop.is_set():  # stopped while it started: it never runs
            await stack.aclose()
            self._let_go(repo)
            return
        self._daemons[repo] = daemon
        self._tasks[repo] = asyncio.create_task(self._work(repo, daemon, stack, once))

    async def _open(self, repo: str, stack: contextlib.AsyncExitStack) -> Daemon:
        """`repo`'s own parts (its state, client, git and sandbox view) and its daemon."""
        mine = self._settings.for_repo(repo)
        state = open_state(mine, lease=None if self._settings.state_url is None
                           else self._leases.owner)  # fmt: skip
        stack.callback(state.close)
        github = await stack.enter_async_context(
            github_client(mine, self._redactor, limits=self._limits)
        )
        worktrees = make_worktrees(mine)
        await check_start(mine, github, worktrees)
        stack.enter_context(hold_mirror(mine))
        await open_mirror(mine, worktrees)
        await worktrees.prune_leftovers(keep_branches=unfinished_branches(state))
        claude, checks = self._runner, ShellChecks(None)
        if self._sandbox is not None:
            # A job sees its own repository's git, never another's (a private one).
            shown = (*self._settings.sandbox_read_paths, mine.git_mirror)
            view = dataclasses.replace(self._sandbox, read_paths=shown)
            claude, checks = self._runner.with_sandbox(view), ShellChecks(view)
        adapters = Adapters(github, worktrees, claude, checks, SecretScanner(self._redactor),
                            SystemClock(), self._redactor)  # fmt: skip
        if self._serving is None:
            return build_daemon(mine, state, adapters, github=github, slots=self._slots)
        web = self._serving.attach(mine, state, github)
        stack.callback(self._serving.detach, repo)  # before the state closes
        daemon = build_daemon(mine, state, adapters, github=github, slots=self._slots,
                              telemetry=web.telemetry, webhooks=web.webhooks,
                              on_settings=web.on_settings)  # fmt: skip
        web.started(daemon)
        return daemon

    async def _work(
        self, repo: str, daemon: Daemon, stack: contextlib.AsyncExitStack, once: bool
    ) -> int:
        """`repo`'s loop until it ends; then its parts are closed and its lease let go."""
        try:
            code = await daemon.run(once=once)
        except Exception:  # one repository's crash is logged; the others go on
            log.exception("the loop of %s crashed", repo)
            code = 1
        finally:
            await stack.aclose()
            self._daemons.pop(repo, None)
            self._tasks.pop(repo, None)
            self._let_go(repo)
        self._codes.append(code)
        return code
