"""The HTTP side: a threaded loopback server whose handler hands each request to the App, or
to the git service for the repositories' git (`/{owner}/{repo}.git/...`)."""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..git_http import read_body
from .app import App, RawResponse
from .git_service import GitService

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, git: GitService) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.git = git
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-reply (or a connection cut by stop()) is routine for
        # a test server; keep it out of the test output.
        log.debug(
            "fake GitHub connection from %s ended with an error", client_address, exc_info=True
        )


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as clients expect from GitHub.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm and delayed ACKs each
    # kept-alive request would then wait ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = read_body(self.rfile, headers)
        response: RawResponse
        if self.server.git.serves(self.path):
            response = self.server.git.handle(self.command, self.path, headers, raw)
        else:
            response = self.server.app.handle(self.command, self.path, headers, raw)
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        # 204 and 304 have no body by definition; everything else says how long it is, so
        # the connection can stay open.
        if response.status not in (204, 304):
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.status not in (204, 304) and response.body:
            self.wfile.write(response.body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the fake's clock, so a client that trusts the server's
        # time sees the same time as the timestamps in the bodies.
        return email.utils.format_datetime(self.server.app.site.now(), usegmt=True)

    def version_string(self) -> str:
        return "GitHub.com"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake GitHub: " + format, *args)


class HttpServer:
    """Owns the listening socket and the thread that serves it; stop() is bounded."""

    def __init__(self, app: App, git: GitService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = _Server((host, port), app, git)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-github",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.app.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(STOP_TIMEOUT)
        # Close kept-alive connections too: their handler threads would otherwise wait for
        # a next request that never comes.
        with self._server.sockets_lock:
            sockets = list(self._server.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("connection already closed while stopping the fake GitHub")
        self._server.server_close()
