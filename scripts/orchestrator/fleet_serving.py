"""Serve mode beside several repositories: one HTTP server whose webhooks wake the repository
they name, whose dashboard has an overview at `/` and each repository's pages under
`/repos/owner/name/`, and whose metrics name each repository."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from .config import Settings
from .core.work import WorkItem, WorkItemType
from .daemon import LAST_CYCLE_META, Daemon
from .dashboard import RateView, dashboard_routes, environment, render, static_route
from .dashboard_rows import Group, ago, table, until
from .dashboard_tail import transcript_files
from .github_rest import TokenLimits
from .github_watcher import GitHubClient
from .metrics import Metrics, RepoMetrics, budget_reading
from .ports import JobView, StateStore
from .serving import rate_view, repo_hook, webhook_receiver, webhooks_line
from .webhooks import Hook

if TYPE_CHECKING:
    from .wakes_pg import PgWakes

Now = Callable[[], datetime]


@dataclass
class _Held:
    """A repository worked on here: its state, and its daemon once built."""

    state: StateStore
    hook: Hook
    daemon: Daemon | None = None


@dataclass(frozen=True)
class Attached:
    """What a repository's daemon is built with in serve mode; `started` once it is built."""

    telemetry: RepoMetrics
    webhooks: tuple[float, Callable[[], float | None]]
    on_settings: Callable[[Settings | None], None]
    started: Callable[[Daemon], None]


class FleetServing:
    """The webhooks, metrics and dashboard of a daemon's repositories. A repository is
    `attach`ed when its daemon is built here and `detach`ed when it is let go (another daemon
    may take it): its items leave the metrics, and a delivery for it is passed to the daemon
    that holds it (with STATE_URL's `wakes`), or wakes nothing."""

    def __init__(
        self, settings: Settings, limits: TokenLimits, *, wakes: PgWakes | None = None
    ) -> None:
        """`wakes`: STATE_URL's, through which deliveries for the other daemons' repositories
        wake them (and theirs for this daemon's count for its polling pace)."""
        self.settings = settings
        self.budget = limits.rate
        self.shared = settings.state_url is not None
        self.metrics = Metrics(budget_reading(limits.rate))
        self.receiver = webhook_receiver(settings, self._hook, self.metrics)
        self._held: dict[str, _Held] = {}  # by repository, in lower case
        self._names = {r.lower(): r for r in settings.repositories}
        self._wakes = wakes

    def _hook(self, name: str) -> Hook | None:
        held = self._held.get(name.lower())
        if held is not None and held.daemon is not None:
            return held.hook
        repo = self._names.get(name.lower())
        if repo is None or self._wakes is None:
            return None
        # Another daemon's (or nobody's yet): its own label and account are its to judge, so
        # every delivery that could wake it is passed on; a needless wake is one more poll.
        wakes = self._wakes
        return Hook(repo, lambda _delivery: wakes.send(repo))

    def since(self, repo: str) -> Callable[[], float | None]:
        """Seconds since the last delivery for `repo`, here or passed on by another daemon."""

        def since() -> float | None:
            passed = self._wakes.heard_at(repo) if self._wakes is not None else None
            times = [t for t in (self.receiver.last_for(repo), passed) if t is not None]
            return time.monotonic() - max(times) if times else None

        return since

    def held(self, repo: str) -> tuple[StateStore, Daemon] | None:
        held = self._held.get(repo.lower())
        if held is None or held.daemon is None:
            return None
        return held.state, held.daemon

    def attach(self, mine: Settings, state: StateStore, github: GitHubClient) -> Attached:
        repo = mine.github_repo
        telemetry = self.metrics.repo(repo, state)
        github.wire.observers.append(telemetry.github_observer)
        hook, on_settings = repo_hook(mine, lambda: self._wake(repo), lambda: github.known_login)
        self._held[repo.lower()] = held = _Held(state, hook)
        quiet = (mine.webhook_poll_interval, self.since(repo))

        def started(daemon: Daemon) -> None:
            held.daemon = daemon

        return Attached(telemetry, quiet, on_settings, started)

    def detach(self, repo: str) -> None:
        self._held.pop(repo.lower(), None)
        self.metrics.forget(repo)

    def _wake(self, repo: str) -> None:
        if (held := self.held(repo)) is not None:
            held[1].wake()

    def routes(self, *, now: Now = lambda: datetime.now(timezone.utc)) -> list[BaseRoute]:
        """The overview at `/`, each repository's dashboard under `/repos/owner/name/`."""
        sources = [RepoSource(self, self.settings.for_repo(r)) for r in self.settings.repositories]
        tails = [0]  # the live tails open, on every repository's pages together
        mounts: list[BaseRoute] = [
            Mount(f"/repos/{source.repo}", name=f"repo{i}",
                  routes=dashboard_routes(source, now=now, prefix=f"repo{i}:", home="fleet",
                                          tails=tails))
            for i, source in enumerate(sources)
        ]  # fmt: skip
        cased = Route("/repos/{owner}/{name}/{rest:path}", self._cased, methods=["GET"])
        overview = Route("/", self._overview(sources, now), methods=["GET"], name="fleet")
        return [overview, static_route(), *mounts, cased]

    async def _cased(self, request: Request) -> Response:
        """A repository's pages asked for in another case (GitHub's names ignore it): sent to
        the pages under the name as GITHUB_REPOS writes it."""
        params = request.path_params
        repo = self._names.get(f"{params['owner']}/{params['name']}".lower())
        if repo is None:
            raise HTTPException(404, "no such repository here")
        target = f"/repos/{repo}/{params['rest']}"
        if target == request.url.path:  # the right case, but no such page
            raise HTTPException(404, "no such page")
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(target + query, 308)

    def _overview(self, sources: Sequence[RepoSource], now: Now) -> Callable[[Request], object]:
        env = environment(f"{len(sources)} repositories", "")

        async def overview(request: Request) -> Response:
            at = now()
            rows = [source.summary(f"repo{i}:dashboard", at) for i, source in enumerate(sources)]
            rate = rate_view(self.budget)
            return render(
                env, request, "fleet.html", home="fleet", rows=rows, groups=list(Group),
                here=sum(1 for r in rows if r.here), rate=rate, now=at,
                resets=until(rate.resets_at, at) if rate else "",
                webhooks=webhooks_line(self.settings, self.receiver.last_delivery),
            )  # fmt: skip

        return overview


@dataclass(frozen=True)
class Summary:
    """One repository's line on the overview."""

    repo: str
    route: str  # its dashboard's route name
    github: str
    here: bool
    where: str
    counts: dict[Group, int]
    last_poll: str


@dataclass
class RepoSource:
    """One repository's `DashboardSource`: its items while it is worked on here, none else."""

    serving: FleetServing
    settings: Settings
    repo: str = field(init=False)
    html_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.repo = self.settings.github_repo
        self.html_url = self.settings.html_url

    def items(self) -> Sequence[WorkItem]:
        held = self.serving.held(self.repo)
        return held[0].items() if held is not None else []

    def jobs(self) -> Sequence[JobView]:
        held = self.serving.held(self.repo)
        return held[1].jobs() if held is not None else []

    def last_poll(self) -> datetime | None:
        held = self.serving.held(self.repo)
        raw = held[0].get_meta(LAST_CYCLE_META) if held is not None else None
        return datetime.fromisoformat(raw) if raw else None

    def rate(self) -> RateView | None:
        return rate_view(self.serving.budget)

    def transcripts(self, kind: WorkItemType, number: int) -> list[Path]:
        return transcript_files(self.settings.log_dir, kind, number, repo=self.repo)

    def webhooks(self) -> str:
        if self.serving.held(self.repo) is None:
            return self._away()
        since = self.serving.since(self.repo)()
        return webhooks_line(self.settings, None if since is None else time.monotonic() - since)

    def summary(self, route: str, at: datetime) -> Summary:
        here = self.serving.held(self.repo) is not None
        rows = table(self.items(), self.jobs(), self.html_url, at)
        return Summary(self.repo, route, self.html_url, here, "here" if here else self._away(),
                       {g: len(rows[g]) for g in Group},
                       ago(self.last_poll(), at) if here else "")  # fmt: skip

    def _away(self) -> str:
        if self.serving.shared:
            return "worked on by another daemon (or waiting for one)"
        return "not worked on now (starting, or stopped)"
