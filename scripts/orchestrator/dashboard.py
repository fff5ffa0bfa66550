"""Serve mode's read-only dashboard: the work items, the daemon's health, Claude's transcripts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .core.work import WorkItem, WorkItemType, item_key, said
from .dashboard_rows import Group, ago, github_link, table, until
from .dashboard_tail import open_transcript, tail
from .ports import JobView
from .transcripts import TRANSCRIPT_NAME

ASSETS = Path(__file__).with_name("dashboard_assets")
STATIC = {"dashboard.css": "text/css", "tail.js": "text/javascript", "favicon.svg": "image/svg+xml"}
OVERVIEW_CAP = 50  # rows per group on the overview; the filtered views page through the rest
PAGE_SIZE = 100
MAX_TAILS = 32  # live transcripts open at once; more get 503 (each polls its file)
SHOWN_BYTES = 512 * 1024  # of a finished transcript on its item's page; the rest by its link
# Nothing but this server's own files; no inline script or style, no frames, no forms elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class RateView:
    """GitHub's rate-limit budget as last seen."""

    remaining: int
    limit: int
    resets_at: datetime | None


class DashboardSource(Protocol):
    """What the dashboard shows, read from the daemon; every method is cheap and never blocks."""

    repo: str  # owner/name
    html_url: str  # https://github.com/owner/name

    def items(self) -> Sequence[WorkItem]: ...
    def jobs(self) -> Sequence[JobView]: ...
    def last_poll(self) -> datetime | None: ...
    def rate(self) -> RateView | None: ...

    def transcripts(self, kind: WorkItemType, number: int) -> list[Path]:
        """The item's transcripts, oldest first (`dashboard_tail.transcript_files`)."""
        ...

    def webhooks(self) -> str:
        """One line: "healthy, last delivery 12 s ago", "off", …"""
        ...


def environment(repo: str, html_url: str) -> Environment:
    """The templates, for a page about `repo` (`html_url`: its page on GitHub, or "")."""
    env = Environment(
        loader=FileSystemLoader(ASSETS / "templates"),
        autoescape=True,  # titles, errors and transcripts are untrusted text
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(repo=repo, html_url=html_url)
    return env


def render(
    env: Environment, request: Request, template: str, *, prefix: str = "", home: str = "",
    **context: Any,
) -> HTMLResponse:  # fmt: skip
    """`template` as a page; `url(route)` names a route among `prefix`'s (a `Mount`'s name
    and a colon), and the brand links to the route `home` (else this dashboard's own)."""

    def url(route: str, /, **params: Any) -> str:
        # Paths only, under wherever the routes are mounted: no host a proxy could garble.
        return request.url_for(prefix + route, **params).path

    top = request.url_for(home).path if home else url("dashboard")
    html = env.get_template(template).render(url=url, home=top, **context)
    return HTMLResponse(html, headers=HEADERS)


def static_route() -> Route:
    """The dashboard's own CSS, script and icon."""
    static = {name: (ASSETS / "static" / name).read_bytes() for name in STATIC}

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404, "no such file")
        return Response(static[name], media_type=STATIC[name], headers=HEADERS)

    return Route("/static/{name}", asset, methods=["GET"], name="dashboard_static")


def dashboard_routes(
    source: DashboardSource,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    poll: float = 0.2,
    prefix: str = "",
    home: str = "",
    tails: list[int] | None = None,
) -> list[BaseRoute]:
    """The dashboard's routes, all GET; `poll` is how often a live tail looks at its file.
    Mounted among other repositories' (`Mount(..., name=N)`), `prefix` is `N:`, `home` the
    route of the page above them, and `tails` the count of live tails open that they share
    (MAX_TAILS for them all: each holds one of the server's connections)."""
    env = environment(source.repo, source.html_url)

    def page(request: Request, template: str, **context: Any) -> HTMLResponse:
        return render(env, request, template, prefix=prefix, home=home, **context)

    async def overview(request: Request) -> Response:
        wanted = request.query_params.get("status", "")
        if wanted and wanted not in Group._value2member_map_:
            raise HTTPException(400, f"status must be one of {', '.join(g.value for g in Group)}")
        at = now()
        rows = table(source.items(), source.jobs(), source.html_url, at)
        counts = {g: len(rows[g]) for g in Group}
        if wanted:
            group = Group(wanted)
            pages = max(1, -(-counts[group] // PAGE_SIZE))
            number = _int(request.query_params.get("page"), 1, 1, pages)
            start = (number - 1) * PAGE_SIZE
            shown = {group: rows[group][start : start + PAGE_SIZE]}
            paging = {"page": number, "pages": pages, "start": start}
        else:
            shown = {g: rows[g][:OVERVIEW_CAP] for g in Group}
            paging = {}
        rate = source.rate()
        return page(
            request, "index.html", groups=list(Group), shown=shown, counts=counts,
            total=sum(counts.values()), wanted=wanted, paging=paging, rate=rate,
            resets=until(rate.resets_at, at) if rate else "", last_poll=source.last_poll(),
            last_poll_ago=ago(source.last_poll(), at), webhooks=source.webhooks(), now=at,
        )  # fmt: skip

    async def item_page(request: Request) -> Response:
        kind, number = _item_of(request)
        at = now()
        rows = table(source.items(), source.jobs(), source.html_url, at)
        row = next((r for g in rows.values() for r in g
                    if r.kind is kind and r.number == number), None)  # fmt: skip
        files = source.transcripts(kind, number)
        if row is None and not files:
            raise HTTPException(404, f"no {said(kind, number)}")
        live = _job(source, kind, number) is not None
        newest = files[-1] if files else None
        shown = _shown(newest) if newest is not None and not live else None
        return page(
            request, "item.html", kind=kind, number=number, what=said(kind, number), row=row,
            github=github_link(source.html_url, kind, number), files=[_file(f) for f in files],
            newest=newest.name if newest else None, live=live, shown=shown, now=at,
        )  # fmt: skip

    async def transcript(request: Request) -> Response:
        kind, number = _item_of(request)
        name = request.path_params["name"]
        if not TRANSCRIPT_NAME.fullmatch(name):
            raise HTTPException(404, "no such transcript")
        # The name only picks among the item's own files: no path is built from it.
        path = next((p for p in source.transcripts(kind, number) if p.name == name), None)
        try:
            body = None
            if path is not None:
                with open_transcript(path) as f:
                    body = f.read()
        except OSError:  # pruned since it was listed, or a link put in its place
            body = None
        if body is None:
            raise HTTPException(404, "no such transcript")
        return Response(body, media_type="text/plain; charset=utf-8", headers=HEADERS)

    # Each polls its file and holds a connection: a bound, so open pages cannot load the
    # daemon nor take the connections webhooks need.
    open_tails = tails if tails is not None else [0]

    async def live_tail(request: Request) -> Response:
        kind, number = _item_of(request)
        if open_tails[0] >= MAX_TAILS:
            raise HTTPException(503, "too many live transcripts open", {"Retry-After": "10"})

        async def events() -> AsyncIterator[str]:
            open_tails[0] += 1
            try:
                async for event in tail(
                    lambda: source.transcripts(kind, number),
                    lambda: _job(source, kind, number) is not None,
                    request.is_disconnected,
                    resume=request.headers.get("last-event-id"),
                    poll=poll,
                ):
                    yield event
            finally:
                open_tails[0] -= 1

        # `X-Accel-Buffering`: a buffering proxy in front would hold the lines back.
        headers = {**HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    item = "/items/{kind}/{number:int}"
    return [
        Route("/", overview, methods=["GET"], name="dashboard"),
        Route(item, item_page, methods=["GET"], name="dashboard_item"),
        Route(f"{item}/transcripts/{{name}}", transcript, methods=["GET"],
              name="dashboard_transcript"),
        Route(f"{item}/tail", live_tail, methods=["GET"], name="dashboard_tail"),
        static_route(),
    ]  # fmt: skip


def _job(source: DashboardSource, kind: WorkItemType, number: int) -> JobView | None:
    key = item_key(kind, number)
    return next((job for job in source.jobs() if job.key == key), None)


def _item_of(request: Request) -> tuple[WorkItemType, int]:
    try:
        kind = WorkItemType(request.path_params["kind"])
    except ValueError:
        raise HTTPException(404, "no such kind of item") from None
    return kind, request.path_params["number"]


@dataclass(frozen=True)
class Line:
    """A transcript's line as shown: its record's type, and the line itself."""

    type: str
    text: str


@dataclass(frozen=True)
class Shown:
    """The end of a finished transcript, as its item's page shows it."""

    lines: list[Line]
    skipped: int  # bytes left out before the first line shown
    error: str


def _shown(path: Path) -> Shown:
    try:
        with open_transcript(path) as f:
            size = f.seek(0, 2)
            skipped = max(0, size - SHOWN_BYTES)
            f.seek(skipped)
            data = f.read()
    except OSError as exc:
        return Shown([], 0, f"cannot read {path.name}: {exc.strerror or exc}")
    if skipped:  # the first line shown would be cut: start at the next whole one
        cut = data.find(b"\n") + 1
        skipped, data = skipped + cut, data[cut:]
    return Shown([_line(raw) for raw in data.decode("utf-8", "replace").splitlines()], skipped, "")


def _line(text: str) -> Line:
    try:
        record = json.loads(text)
    except ValueError:
        return Line("text", text)
    kind = record.get("type") if isinstance(record, dict) else None
    return Line(kind if isinstance(kind, str) else "json", text)


def _file(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return {"name": path.name, "size": _bytes(size)}


def _bytes(size: int | None) -> str:
    if size is None:
        return "gone"
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:,.1f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:,.1f} MB"


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        value = default
    return min(max(value, low), high)
