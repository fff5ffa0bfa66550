"""The model proxy alone: what it forwards, what it swaps, what it refuses, and how it streams."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.orchestrator import model_proxy
from scripts.orchestrator.model_proxy import ModelProxy, placeholder

KEY = "sk-ant-real-" + "k" * 20
TOKEN = "sk-ant-oat-real-" + "t" * 20
FIRST, SECOND = b"event: one\ndata: {}\n\n", b"event: two\ndata: {}\n\n"
WAIT = 10.0  # any bounded wait here ends at once unless something is broken


class Upstream(ThreadingHTTPServer):
    """A stand-in for the model's API on 127.0.0.1 that records what reaches it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()  # lets /stream send its second event
        self.released_in_time: bool | None = None
        self.hanging = threading.Event()  # /hang has its request
        self.hung_up = threading.Event()  # /hang saw its client close the connection

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        if self.path.endswith("/stream"):
            self._stream()
        elif self.path.endswith("/hang"):
            self._hang()
        elif self.path.endswith("/broken"):  # promises more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(FIRST)
            self.close_connection = True
        else:
            data = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "X-Upstream-Hop")
            self.send_header("X-Upstream-Hop", "1")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("X-Request-Id", "req_1")
            self.end_headers()
            self.wfile.write(data)

    def _hang(self) -> None:
        self.server.hanging.set()
        self.connection.settimeout(WAIT)
        try:  # the proxy closes its connection once its own client has gone
            if self.connection.recv(1) == b"":
                self.server.hung_up.set()
        except OSError:
            pass
        self.close_connection = True

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(FIRST)
        self.wfile.flush()
        self.server.released_in_time = self.server.release.wait(WAIT)
        self.wfile.write(SECOND)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(WAIT)


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[ModelProxy]:
    env = {"ANTHROPIC_BASE_URL": upstream.url + "/gateway", "ANTHROPIC_API_KEY": KEY,
           "CLAUDE_CODE_OAUTH_TOKEN": TOKEN, "ANTHROPIC_AUTH_TOKEN": ""}  # fmt: skip
    with ModelProxy(env) as started:
        yield started


def client(proxy: ModelProxy) -> httpx.Client:
    """A client of the proxy's socket, as socat makes the CLI one."""
    transport = httpx.HTTPTransport(uds=str(proxy.socket_path))
    return httpx.Client(transport=transport, base_url="http://127.0.0.1:41999", timeout=WAIT)


def raw_request(proxy: ModelProxy, request: bytes) -> bytes:
    """Send `request` as it is (httpx would not write an absolute URI or a CONNECT)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(proxy.socket_path))
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_an_answer_streams_through_event_by_event(upstream: Upstream, proxy: ModelProxy) -> None:
    with client(proxy) as http, http.stream("POST", "/v1/stream", content=b"{}") as reply:
        chunks = reply.iter_raw()
        got = b""
        while len(got) < len(FIRST):  # the first event arrives while the second is held back
            got += next(chunks)
        assert got == FIRST
        upstream.release.set()
        assert b"".join(chunks) == SECOND
    assert upstream.released_in_time, "the proxy held the first event until the stream ended"


def test_the_placeholder_is_swapped_for_the_real_credential(
    upstream: Upstream, proxy: ModelProxy
) -> None:
    assert proxy.cli_env == {
        "ANTHROPIC_API_KEY": placeholder("ANTHROPIC_API_KEY"),
        "ANTHROPIC_AUTH_TOKEN": "",  # the daemon has none: the CLI gets none
        "CLAUDE_CODE_OAUTH_TOKEN": placeholder("CLAUDE_CODE_OAUTH_TOKEN"),
    }
    key, token = proxy.cli_env["ANTHROPIC_API_KEY"], proxy.cli_env["CLAUDE_CODE_OAUTH_TOKEN"]
    with client(proxy) as http:
        http.post("/v1/messages", headers={"x-api-key": key})
        http.post("/v1/messages", headers={"Authorization": f"Bearer {token}"})
        http.post("/v1/messages", headers={"x-api-key": "sk-ant-someone-elses"})
        http.post("/v1/messages", headers={"Authorization": f"Basic {token}"})
    sent = [{k.lower(): v for k, v in headers.items()} for _, _, headers, _ in upstream.requests]
    assert sent[0]["x-api-key"] == KEY and "authorization" not in sent[0]
    assert sent[1]["authorization"] == f"Bearer {TOKEN}" and "x-api-key" not in sent[1]
    # A credential the proxy did not hand out is never passed on, nor replaced.
    assert not {"x-api-key", "authorization"} & (sent[2].keys() | sent[3].keys())


def test_hop_by_hop_headers_stay_on_their_hop(upstream: Upstream, proxy: ModelProxy) -> None:
    headers = {"Connection": "keep-alive, X-Client-Hop", "X-Client-Hop": "1", "TE": "trailers",
               "Proxy-Authorization": "Basic eA==", "anthropic-version": "2023-06-01",
               "Host": "elsewhere.example", "User-Agent": "claude-cli/2"}  # fmt: skip
    with client(proxy) as http:
        reply = http.post("/v1/messages?beta=true", headers=headers, content=b'{"a": 1}')
    assert reply.json() == {"path": "/gateway/v1/messages?beta=true"}  # below the base URL
    assert reply.headers["x-request-id"] == "req_1"
    assert not {"x-upstream-hop", "keep-alive"} & reply.headers.keys()
    ((method, _, sent, body),) = upstream.requests
    sent = {k.lower(): v for k, v in sent.items()}
    assert (method, body, sent["anthropic-version"]) == ("POST", b'{"a": 1}', "2023-06-01")
    assert sent["host"] == upstream.url.removeprefix("http://")  # the Host asked for is ignored
    assert not {"x-client-hop", "te", "proxy-authorization"} & sent.keys()
    assert sent["user-agent"] == "claude-cli/2"  # not httpx's own


@pytest.mark.parametrize(
    "request_line",
    [b"GET http://evil.example/steal HTTP/1.1", b"CONNECT evil.example:443 HTTP/1.1",
     b"TRACE /v1/messages HTTP/1.1"],
)  # fmt: skip
def test_another_host_is_refused(
    upstream: Upstream, proxy: ModelProxy, request_line: bytes
) -> None:
    answer = raw_request(proxy, request_line + b"\r\nHost: evil.example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"only paths of " + upstream.url.encode() in answer
    assert upstream.requests == []  # nothing went anywhere


def test_an_unreachable_upstream_is_a_502_that_says_so() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with (
        ModelProxy({"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": KEY}) as proxy,
        client(proxy) as http,
    ):
        reply = http.post("/v1/messages", content=b"{}")
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error["type"] == "api_error" and f"cannot reach {url} (ConnectError" in error["message"]
    assert KEY not in reply.text


def test_an_answer_that_breaks_off_breaks_off_for_the_client_too(
    upstream: Upstream, proxy: ModelProxy, caplog: pytest.LogCaptureFixture
) -> None:
    with client(proxy) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/broken")
        assert http.post("/v1/messages").status_code == 200  # the control: the proxy goes on
    assert "broke off" in caplog.text


def test_a_client_that_hangs_up_frees_the_upstream(upstream: Upstream, proxy: ModelProxy) -> None:
    """A CLI killed (e.g. by CLAUDE_TIMEOUT) while the model thinks: the proxy stops waiting."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(proxy.socket_path))
        sock.sendall(b"POST /v1/hang HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert upstream.hanging.wait(WAIT)
    assert upstream.hung_up.wait(WAIT)


def test_the_socket_is_private_and_gone_after_stop(upstream: Upstream) -> None:
    proxy = ModelProxy({"ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_API_KEY": KEY}).start()
    path: Path = proxy.socket_path
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(path.stat().st_mode)
    finally:
        proxy.stop()
    assert not path.parent.exists()


# -- limits a hijacked run cannot pass (found by an outside review) ------------------------------


@pytest.mark.parametrize(
    "path",
    [b"/../admin/keys", b"/v1/../../admin", b"/%2e%2e/admin", b"/v1/%2E%2E/x", b"/./v1/messages"],
)
def test_a_dot_segment_cannot_climb_out_of_the_upstreams_path(
    upstream: Upstream, proxy: ModelProxy, path: bytes
) -> None:
    """On a gateway (`ANTHROPIC_BASE_URL=https://gw/anthropic`), other routes of the same host
    would otherwise get the real key."""
    answer = raw_request(proxy, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert upstream.requests == []
    with client(proxy) as http:  # the control: a path below the gateway's goes through
        assert http.post("/v1/messages", json={}).status_code == 200
    assert [path for _, path, _, _ in upstream.requests] == ["/gateway/v1/messages"]


def test_a_body_beyond_the_limit_is_refused_unread(
    upstream: Upstream, proxy: ModelProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_proxy, "MAX_BODY", 1000)
    with client(proxy) as http:
        assert http.post("/v1/messages", content=b"x" * 1001).status_code == 413
        chunks = (b"x" * 400 for _ in range(3))  # no length given: counted as it comes
        assert http.post("/v1/messages", content=chunks).status_code == 413
        assert upstream.requests == []
        assert http.post("/v1/messages", content=b"x" * 1000).status_code == 200  # the control
    assert len(upstream.requests) == 1


def test_the_daemon_may_open_as_many_files_as_its_hard_limit_allows() -> None:
    import resource

    from scripts.orchestrator.startup import raise_fd_limit

    raise_fd_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY
