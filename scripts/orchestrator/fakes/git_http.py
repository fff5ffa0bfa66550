"""Git's smart HTTP on loopback, as GitHub serves it: `git http-backend` behind token auth.

Stricter than github.com: every request, a public repository's fetch too, needs the token as
the Basic password (GitHub takes any user name with it, e.g. `x-access-token`). Without it the
answer is 401 with a `WWW-Authenticate` challenge, which is what makes git ask its credential
helper. The CGI part (`http_backend`, `read_body`, `basic_password`) is shared with the fake
GitHub, which serves its repositories' git beside its API.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

BACKEND_TIMEOUT = 60.0
# What GitHub sends with a 401, so git asks its credential helper for the token.
CHALLENGE = ("WWW-Authenticate", 'Basic realm="GitHub"')


@dataclass(frozen=True)
class GitRequest:
    """One request as the server saw it."""

    method: str
    path: str
    authorized: bool


@dataclass
class CgiReply:
    """What `git http-backend` answered: status, headers in order, body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def basic_password(header: str | None) -> str | None:
    """The password of a Basic `Authorization` header (the user name is not looked at)."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        user_pass = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = user_pass.partition(":")
    return password if colon else None


def read_body(rfile: io.BufferedIOBase, headers: Mapping[str, str]) -> bytes:
    """A request's body; `headers` by lower-case name. git sends packs larger than
    http.postBuffer (1 MiB) in chunks, so chunked transfer is read as well."""
    if headers.get("transfer-encoding", "").lower() != "chunked":
        length = int(headers.get("content-length") or 0)
        return rfile.read(length) if length > 0 else b""
    body = b""
    while size := int(rfile.readline().split(b";")[0], 16):
        body += rfile.read(size)
        rfile.readline()
    rfile.readline()
    return body


def http_backend(
    root: Path,
    method: str,
    path_info: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
) -> CgiReply:
    """Run `git http-backend` for one request on the repository `root/path_info`'s prefix
    (`headers` by lower-case name); pushes are accepted (a user is named)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "REMOTE_USER": "x-access-token",  # lets http-backend accept pushes
        "REQUEST_METHOD": method,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "CONTENT_TYPE": headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_CONTENT_ENCODING": headers.get("content-encoding", ""),
        "GIT_PROTOCOL": headers.get("git-protocol", ""),
    }
    done = subprocess.run(
        ["git", "http-backend"],
        input=body,
        env=env,
        capture_output=True,
        timeout=BACKEND_TIMEOUT,
        check=False,
    )
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    reply = CgiReply(200, body=payload)
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            reply.status = int(value.split()[0])
        elif name:
            reply.headers.append((name, value.strip()))
    return reply


class GitHttpServer:
    """Serves the bare repositories under `root` at http://127.0.0.1:PORT/<path>."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        self.requests: list[GitRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def authorized(self, header: str | None) -> bool:
        return basic_password(header) == self.token


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads `requests` instead."""

        def _serve(self) -> None:
            ok = server.authorized(self.headers.get("Authorization"))
            parts = urlsplit(self.path)
            server.requests.append(GitRequest(self.command, parts.path, ok))
            if not ok:
                self.send_response(401)
                self.send_header(*CHALLENGE)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = read_body(self.rfile, headers)
            reply = http_backend(server.root, self.command, parts.path, parts.query, headers, body)
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    return Handler
