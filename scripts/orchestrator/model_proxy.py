"""A proxy to the model's API that holds Claude's credential, so that its sandbox never does.

The daemon serves it on a Unix socket in a private directory; each sandboxed run of the CLI
reaches it through that socket (bound into the sandbox, bridged to a loopback port by socat) and
holds only placeholders for the credential variables. The proxy forwards each request to the
one upstream (the daemon's ANTHROPIC_BASE_URL, else Anthropic's API) with the real credential in
place of the placeholder, and streams the answer back as it arrives.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .config import MODEL_KEYS

log = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "https://api.anthropic.com"
# The CLI's credentials: it sends ANTHROPIC_API_KEY as `x-api-key`, the others as a bearer token.
CREDENTIAL_ENV = MODEL_KEYS  # config reads them from .env too
SOCKET_NAME = "model-api.sock"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Hop-by-hop headers (RFC 9110 §7.6.1, and the older proxy ones) stay on their hop.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
     "te", "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
# Nor do the client's Host and length (httpx sets the upstream's), nor `expect` (httpx sends
# the body at once).
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect"}
# An answer streams for minutes, with pauses while the model thinks; the CLI's own API timeout
# is 10 minutes.
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)
# The Messages API takes requests up to 32 MB; a run may not make the daemon hold more.
MAX_BODY = 32 * 1024 * 1024
# Connections at once (each run makes a few): beyond, uvicorn answers 503 instead of holding a
# file descriptor per connection a hijacked run opens.
MAX_CONNECTIONS = 64
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def placeholder(name: str) -> str:
    """What the sandboxed CLI holds instead of the credential variable `name`."""
    return f"placeholder-{name.lower().replace('_', '-')}"


class ModelProxy:
    """The proxy, served by uvicorn on a thread (and event loop) of its own, so that a busy
    daemon loop never delays a model's stream. `start` and `stop` it, or use it as a context
    manager; `env` is the CLI's environment as the daemon would give it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.upstream = httpx.URL(env.get("ANTHROPIC_BASE_URL") or DEFAULT_UPSTREAM)
        self._real = {placeholder(name): env[name] for name in CREDENTIAL_ENV if env.get(name)}
        self.cli_env = {
            name: placeholder(name) if env.get(name) else "" for name in CREDENTIAL_ENV
        }  # what the CLI gets instead: a placeholder for each credential the daemon has
        self._directory: Path | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def socket_path(self) -> Path:
        if self._directory is None:
            raise RuntimeError("model proxy not started")
        return self._directory / SOCKET_NAME

    def start(self) -> ModelProxy:
        """Listen on a fresh private socket and serve it; return once requests are answered."""
        if self._server is not None:
            raise RuntimeError("model proxy already started")
        if not self._real:
            log.warning(
                "no model credential in the environment (%s): the model's API will refuse "
                "Claude's runs", ", ".join(CREDENTIAL_ENV)
            )  # fmt: skip
        # mkdtemp makes the directory 0700: only the daemon's user reaches the socket.
        self._directory = Path(tempfile.mkdtemp(prefix="model-proxy-"))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            listener.listen(128)
        except OSError:
            listener.close()
            self.stop()
            raise
        config = uvicorn.Config(
            build_app(self.upstream, self._real),
            http="h11",
            ws="none",
            lifespan="on",
            log_config=None,  # uvicorn's records go through the daemon's (redacting) logging
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # its only client is the sandbox: no X-Forwarded-* to trust
            server_header=False,  # the upstream's own `server` and `date` pass through
            date_header=False,
            timeout_keep_alive=30,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, args=([listener],), name="model-proxy", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the model proxy did not start")
            time.sleep(0.005)
        log.debug("model proxy for %s on %s", self.upstream, self.socket_path)
        return self

    def stop(self) -> None:
        """Stop serving (a stream still open after a second is cut) and remove the socket."""
        server, thread, directory = self._server, self._thread, self._directory
        self._server = self._thread = self._directory = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.warning("the model proxy did not stop within %g s", STOP_TIMEOUT)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> ModelProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def build_app(upstream: httpx.URL, credentials: Mapping[str, str]) -> Starlette:
    """The ASGI app: every path is forwarded to `upstream`; anything else (an absolute URI, a
    CONNECT) matches no route and is refused. `credentials` maps placeholder to real value."""
    forward = _Forward(upstream, credentials)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # trust_env: the daemon's own HTTPS_PROXY, if it has one, is the way to the upstream.
        async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, trust_env=True) as client:
            yield {"client": client}

    async def refuse(request: Request, exc: Exception) -> JSONResponse:
        return _error(
            400,
            f"model proxy: {request.method} {request.scope.get('raw_path', b'').decode('latin-1')}"
            f" refused; only paths of {upstream} are forwarded",
        )

    return Starlette(
        routes=[Route("/{path:path}", forward, methods=METHODS)],
        exception_handlers={404: refuse, 405: refuse},
        lifespan=lifespan,
    )


class _Forward:
    """One request to the upstream and its answer, relayed as it arrives."""

    def __init__(self, upstream: httpx.URL, credentials: Mapping[str, str]) -> None:
        self.upstream = upstream
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        url = upstream_url(self.upstream, scope["raw_path"], scope["query_string"])
        if url is None:
            await _error(400, f"model proxy: only paths of {self.upstream} are forwarded")(
                scope, receive, send
            )
            return
        body = await _body(request)
        if body is None:
            await _error(413, f"model proxy: a request body is limited to {MAX_BODY} bytes")(
                scope, receive, send
            )
            return
        headers = forwarded_headers(request.headers.raw, self.credentials)
        # httpx.Request, not client.build_request: no header of httpx's own is added.
        outgoing = httpx.Request(request.method, url, headers=headers, content=body)
        client: httpx.AsyncClient = request.state.client
        async with anyio.create_task_group() as group:
            # The CLI may hang up while the upstream is still thinking: stop waiting for it.
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            try:
                reply = await client.send(outgoing, stream=True)
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                message = f"model proxy: cannot reach {self.upstream} ({why})"
                log.warning("%s", message)
                await _error(502, message)(scope, receive, send)
            else:
                try:
                    await _relay(reply, send)
                finally:
                    with anyio.CancelScope(shield=True):
                        await reply.aclose()
            group.cancel_scope.cancel()


async def _relay(reply: httpx.Response, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": reply.status_code,
         "headers": response_headers(reply.headers.raw)}
    )  # fmt: skip
    # aiter_raw: the bytes as they come (still compressed if they were), one send per read.
    try:
        async for chunk in reply.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError as exc:
        # Returning with the answer incomplete makes uvicorn cut the connection: the CLI sees
        # the stream break, as it would have without the proxy.
        log.warning("model proxy: the answer from %s broke off (%r)", reply.url, exc)
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _body(request: Request) -> bytes | None:
    """The request's body, or None past MAX_BODY (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    # Once the body is read, `receive` answers only when the client is gone (or the answer
    # is complete, when there is nothing left to cancel).
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def upstream_url(upstream: httpx.URL, raw_path: bytes, query: bytes) -> httpx.URL | None:
    """`raw_path?query` on the upstream, below its own path; None unless it stays there.

    A dot segment (`/../`, also percent-encoded) would climb out of the upstream's own path,
    to another route of a gateway that holds the same key: refused.
    """
    if not raw_path.startswith(b"/") or _DOT_SEGMENT.search(raw_path.split(b"?")[0]):
        return None
    path = upstream.raw_path.split(b"?")[0].rstrip(b"/") + raw_path
    url = upstream.copy_with(raw_path=path + (b"?" + query if query else b""))
    same = (url.scheme, url.host, url.port) == (upstream.scheme, upstream.host, upstream.port)
    return url if same else None


_DOT_SEGMENT = re.compile(rb"(?:^|/)(?:\.|%2e){1,2}(?:/|$)", re.IGNORECASE)


def forwarded_headers(
    raw: Iterable[tuple[bytes, bytes]], credentials: Mapping[str, str]
) -> list[tuple[bytes, bytes]]:
    """The client's headers for the upstream: no hop-by-hop header, and each credential header
    holding a placeholder holds the real value instead; any other credential is dropped."""
    headers = list(raw)
    dropped = NOT_FORWARDED | _connection_options(headers)
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        key = name.lower().decode("latin-1")
        if key in dropped:
            continue
        if key == "x-api-key":
            real = credentials.get(value.decode("latin-1").strip())
            if real is not None:
                out.append((name, real.encode()))
        elif key == "authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            real = credentials.get(token.strip()) if scheme.lower() == "bearer" else None
            if real is not None:
                out.append((name, b"Bearer " + real.encode()))
        else:
            out.append((name, value))
    return out


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's headers for the client, without hop-by-hop ones."""
    headers = list(raw)
    dropped = HOP_BY_HOP | _connection_options(headers)
    return [
        (name.lower(), value) for name, value in headers if name.lower().decode() not in dropped
    ]


def _connection_options(headers: Iterable[tuple[bytes, bytes]]) -> set[str]:
    """The headers that `Connection` names, which are hop-by-hop too."""
    return {
        option.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for option in value.decode("latin-1").split(",")
    }


def _error(status: int, message: str) -> JSONResponse:
    # The Messages API's own error shape, so the CLI reports the message.
    return JSONResponse(
        {"type": "error", "error": {"type": "api_error", "message": message}}, status_code=status
    )
