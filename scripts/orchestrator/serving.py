"""Serve mode: webhooks, the dashboard and the metrics on one HTTP server beside the loop."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings
from .core.webhook_events import Wake
from .core.work import WorkItem, WorkItemType
from .daemon import LAST_CYCLE_META, Daemon
from .dashboard import RateView
from .dashboard_tail import transcript_files
from .github_cache import RateBudget
from .metrics import Metrics
from .ports import JobView, StateStore
from .startup import StartupError
from .webhooks import Hook, Hooks, WebhookReceiver

log = logging.getLogger(__name__)

COOKIE = "orchestrator_dashboard"
STOP_TIMEOUT = 5.0  # seconds the server gets to close its connections when the daemon stops
MAX_CONNECTIONS = 100


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_serving(settings: Settings) -> None:
    """Refuse, before anything starts, what serve mode must not run with."""
    if not is_loopback(settings.serve_host) and settings.dashboard_token is None:
        raise StartupError(
            f"SERVE_HOST={settings.serve_host} is reachable from other machines: set "
            "DASHBOARD_TOKEN, or serve on 127.0.0.1 and forward to it"
        )


def listen(settings: Settings) -> socket.socket:
    """The server's socket, bound now: a port in use is one line at start, not a traceback."""
    family = socket.AF_INET6 if ":" in settings.serve_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.serve_host, settings.serve_port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"SERVE_HOST={settings.serve_host} SERVE_PORT={settings.serve_port}: cannot listen "
            f"there ({exc.strerror or exc}); choose another SERVE_PORT"
        ) from exc
    sock.setblocking(False)
    return sock


class TokenGate:
    """Who may see the dashboard and the metrics; webhooks have their own signature check.

    Without DASHBOARD_TOKEN (loopback only) a request must name a loopback host: a web page
    whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused. With it, every
    request shows the token: `Authorization: Bearer TOKEN`, or `?token=TOKEN` once, which sets
    a cookie holding a value made from the token, never the token itself.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self._app = app
        self._token = token
        self._cookie = (
            hmac.new(token.encode(), b"claude-orchestrator dashboard", "sha256").hexdigest()
            if token is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/webhook":
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        if self._token is None:
            if is_loopback(_host_name(request.headers.get("host", ""))):
                await self._app(scope, receive, send)
            else:
                await PlainTextResponse("unknown host\n", 400)(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and _same(given, self._token):
            # Once: the token leaves the address bar (and the history) for a cookie. The
            # redirect stays on the host and scheme the browser used (a proxy's https too).
            rest = request.url.remove_query_params("token")
            target = rest.path + (f"?{rest.query}" if rest.query else "")
            redirect = RedirectResponse(target, 303)
            https = request.url.scheme == "https" or (
                request.headers.get("x-forwarded-proto") == "https"
            )
            assert self._cookie is not None
            redirect.set_cookie(COOKIE, self._cookie, httponly=True, samesite="strict",
                                secure=https, path="/")  # fmt: skip
            await redirect(scope, receive, send)
            return
        bearer = request.headers.get("authorization", "")
        shown = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if _same(shown, self._token) or _same(request.cookies.get(COOKIE), self._cookie):
            await self._app(scope, receive, send)
            return
        refused = PlainTextResponse(
            "the dashboard needs DASHBOARD_TOKEN: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await refused(scope, receive, send)


def _same(given: str | None, expected: str | None) -> bool:
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _host_name(host: str) -> str:
    """`127.0.0.1:8765` -> `127.0.0.1`, `[::1]:8765` -> `::1`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


@dataclass
class WiredSource:
    """What the dashboard shows, read from the daemon, the state, the rate budget, LOG_DIR."""

    settings: Settings
    state: StateStore
    daemon: Daemon
    budget: RateBudget
    receiver: WebhookReceiver

    repo: str = field(init=False)
    html_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.repo = self.settings.github_repo
        self.html_url = self.settings.html_url

    def items(self) -> Sequence[WorkItem]:
        return self.state.items()

    def jobs(self) -> Sequence[JobView]:
        return self.daemon.jobs()

    def last_poll(self) -> datetime | None:
        raw = self.state.get_meta(LAST_CYCLE_META)
        return datetime.fromisoformat(raw) if raw else None

    def rate(self) -> RateView | None:
        return rate_view(self.budget)

    def transcripts(self, kind: WorkItemType, number: int) -> list[Path]:
        return transcript_files(self.settings.log_dir, kind, number)

    def webhooks(self) -> str:
        return webhooks_line(self.settings, self.receiver.last_delivery)


def rate_view(budget: RateBudget) -> RateView | None:
    """GitHub's rate budget as the dashboard shows it; None before GitHub's first answer."""
    if budget.limit is None or budget.remaining is None:
        return None
    return RateView(remaining=budget.remaining, limit=budget.limit, resets_at=budget.reset_at)


def webhooks_line(settings: Settings, last: float | None) -> str:
    """The webhooks, in one line: off, or when the last delivery came (`time.monotonic()`)."""
    if settings.webhook_secret is None:
        return f"off (no WEBHOOK_SECRET): polling every {settings.poll_interval:g}s"
    if last is None:
        return "on, none received yet"
    return f"on, last delivery {time.monotonic() - last:.0f}s ago"


def build_app(routes: Sequence[BaseRoute], token: str | None) -> ASGIApp:
    app = Starlette(routes=list(routes))
    return TokenGate(app, token)


class _Server(uvicorn.Server):
    """uvicorn in the daemon's own loop; the daemon owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_http(
    settings: Settings,
    dashboard: Sequence[BaseRoute],
    receiver: WebhookReceiver,
    metrics: Metrics,
    sock: socket.socket,
) -> AsyncIterator[None]:
    """The HTTP server runs while the block does; it stops with it."""
    routes: list[BaseRoute] = [
        Route("/webhook", receiver.endpoint, methods=["POST"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        *dashboard,
    ]
    token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else None
    config = uvicorn.Config(
        build_app(routes, token),
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,  # uvicorn's records go through the daemon's (redacting) logging
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,
        # Connections at once: beyond, 503 at once, so held connections (a slow client, or
        # one sending its request a byte at a time) cannot take the daemon's descriptors.
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=10,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="serve")
    host, port = sock.getsockname()[:2]
    log.info("serving on http://%s:%d: the dashboard at /, webhooks at /webhook, metrics at "
             "/metrics", host if ":" not in host else f"[{host}]", port)  # fmt: skip
    try:
        yield
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:  # the server's own failure must not hide the daemon's outcome
            log.exception("the HTTP server failed")


def webhook_receiver(settings: Settings, hooks: Hooks, metrics: Metrics) -> WebhookReceiver:
    """The receiver of POST /webhook: each accepted delivery wakes its repository's daemon."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    if secret is None:
        log.warning("WEBHOOK_SECRET is not set: webhooks are refused; polling every %gs",
                    settings.poll_interval)  # fmt: skip
    return WebhookReceiver(secret=secret, hooks=hooks, observe=metrics.webhook)


def repo_hook(
    settings: Settings, wake: Callable[[], None], own: Callable[[], str | None]
) -> tuple[Hook, Callable[[Settings | None], None]]:
    """A repository's hook, and the `on_settings` of its daemon that keeps the hook's ready
    label the one its settings file names."""
    current: list[Settings | None] = [settings]

    def woken(_delivery: Wake) -> None:
        wake()

    def ready_label() -> str | None:
        now = current[0]
        return now.ready_label if now is not None else None

    def changed(mine: Settings | None) -> None:
        current[0] = mine

    return Hook(settings.github_repo, woken, own, ready_label), changed


def since_last(receiver: WebhookReceiver, repo: str | None = None) -> Callable[[], float | None]:
    """Seconds since the last verified delivery (for `repo`), None before the first."""

    def since() -> float | None:
        last = receiver.last_delivery if repo is None else receiver.last_for(repo)
        return None if last is None else time.monotonic() - last

    return since
