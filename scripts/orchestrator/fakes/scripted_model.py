"""A local HTTP server speaking the Anthropic Messages API, answering from per-test scripts."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import claude_agent_sdk

from .model_script import (
    ApiError,
    Delay,
    Hang,
    RecordedRequest,
    Reply,
    RequestKind,
    ScriptError,
    Step,
    Text,
    ToolCall,
    ToolCalls,
    error_body,
    is_side_request,
    parse_request,
    render,
    side_answer,
)

log = logging.getLogger(__name__)

DEFAULT_CONVERSATION = "default"
_SOCKET_TIMEOUT = 30.0  # an idle keep-alive connection never outlives this
_PROBES = frozenset({"/api/hello"})


class ScriptedModel:
    """A scripted Messages API on 127.0.0.1; a context manager that starts and stops it.

    `steps` is the default script; `script_for(marker, steps)` gives conversations whose first
    user message contains `marker` their own. A conversation is one CLI session (the
    `X-Claude-Code-Session-Id` header); each of its main requests consumes the next step of its
    script, and an exhausted script answers `Text(exhausted_reply)`.
    """

    def __init__(
        self,
        steps: Iterable[Step] = (),
        *,
        exhausted_reply: str = "Done.",
        side_reply: str = "Scripted side reply.",
        reply_delay: float = 0.0,
        is_side: Callable[[RecordedRequest], bool] = is_side_request,
    ) -> None:
        self.exhausted_reply = exhausted_reply
        self.side_reply = side_reply
        self.reply_delay = reply_delay
        self._is_side = is_side
        self._lock = threading.Condition()
        self._scripts: dict[str, deque[Step]] = {DEFAULT_CONVERSATION: deque(steps)}
        self._markers: list[str] = []
        self._sessions: dict[str, str] = {}  # CLI session -> script key
        self._failed: dict[str, str] = {}  # CLI session -> why the script failed it
        self._requests: list[RecordedRequest] = []
        self._unknown_routes: list[str] = []
        self._errors: list[str] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> ScriptedModel:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("scripted model already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Release held requests, close every connection and wait (bounded) for the threads."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + timeout
        server.close_connections(deadline)
        thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._thread = None

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the CLI as `ANTHROPIC_BASE_URL`."""
        if self._server is None:
            raise RuntimeError("scripted model not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---- scripting ----------------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        """Append steps to the default script."""
        with self._lock:
            self._scripts[DEFAULT_CONVERSATION].extend(steps)

    def script_for(self, marker: str, steps: Iterable[Step]) -> None:
        """Give conversations whose first user message contains `marker` their own script."""
        with self._lock:
            if marker not in self._scripts:
                self._markers.append(marker)
                self._scripts[marker] = deque()
            self._scripts[marker].extend(steps)

    def remaining(self, conversation: str = DEFAULT_CONVERSATION) -> int:
        """How many steps of a script are still unconsumed."""
        with self._lock:
            return len(self._scripts[conversation])

    # ---- records ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every Messages API request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def main_requests(self, conversation: str | None = None) -> list[RecordedRequest]:
        """The conversation turns (of one script's conversations, if named)."""
        return [
            r
            for r in self.requests
            if r.kind is RequestKind.MAIN and conversation in (None, r.conversation)
        ]

    def side_requests(self) -> list[RecordedRequest]:
        """The CLI's helper calls, which no script answered."""
        return [r for r in self.requests if r.kind is RequestKind.SIDE]

    @property
    def unknown_routes(self) -> list[str]:
        """`METHOD /path` of requests that were not Messages API calls (answered 404)."""
        with self._lock:
            return list(self._unknown_routes)

    @property
    def errors(self) -> list[str]:
        """Script failures (a raising callable step, an unresolvable path), answered 400."""
        with self._lock:
            return list(self._errors)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until `count` main requests have arrived; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(r.kind is RequestKind.MAIN for r in self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fewer than {count} main requests after {timeout}s")
                self._lock.wait(left)
            return [r for r in self._requests if r.kind is RequestKind.MAIN]

    # ---- answering (called on handler threads) ------------------------------------------

    def _record(
        self, path: str, headers: Mapping[str, str], body: Mapping[str, Any]
    ) -> tuple[RecordedRequest, Step]:
        """Record the request and choose what answers it, atomically with respect to scripts."""
        with self._lock:
            request = parse_request(len(self._requests), path, headers, body)
            if request.kind is RequestKind.MAIN and self._is_side(request):
                request = replace(request, kind=RequestKind.SIDE)
            step: Step
            if request.kind is RequestKind.MAIN:
                key = self._conversation_of(request)
                request = replace(request, conversation=key)
                step = self._next_step(request, key)
            else:
                step = side_answer(request, self.side_reply)
            self._requests.append(request)
            self._lock.notify_all()
        if self.reply_delay > 0 and request.kind is RequestKind.MAIN:
            step = Delay(self.reply_delay, step)
        return request, step

    def _next_step(self, request: RecordedRequest, key: str) -> Step:
        why = self._failed.get(self._session_of(request))
        if why is not None:
            # Keep failing: a one-off 400 would let the CLI's re-send consume the next step.
            return ApiError(400, "invalid_request_error", f"scripted model: {why}")
        script = self._scripts[key]
        if not script:
            return Text(self.exhausted_reply)
        step = script.popleft()
        if isinstance(step, ApiError) and step.times != 1:
            script.appendleft(step if step.times is None else replace(step, times=step.times - 1))
        return step

    @staticmethod
    def _session_of(request: RecordedRequest) -> str:
        # Without the CLI's session header, the prompt is the best identity available.
        return request.session_id or request.first_user_text

    def _conversation_of(self, request: RecordedRequest) -> str:
        session = self._session_of(request)
        if session not in self._sessions:
            prompt = request.first_user_text
            marker = next((m for m in self._markers if m in prompt), DEFAULT_CONVERSATION)
            self._sessions[session] = marker
        return self._sessions[session]

    def _note_unknown(self, route: str) -> None:
        with self._lock:
            self._unknown_routes.append(route)
        log.info("scripted model: unknown route %s", route)

    def _note_error(self, request: RecordedRequest, message: str) -> None:
        with self._lock:
            self._errors.append(f"request {request.index}: {message}")
            self._failed.setdefault(self._session_of(request), message)
        log.warning("scripted model: request %d: %s", request.index, message)


class _Server(ThreadingHTTPServer):
    """Threaded server that tracks its connections so that stopping it is bounded."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model
        self._live: dict[socket.socket, threading.Thread] = {}  # connection -> its handler
        self._live_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True
        )
        with self._live_lock:
            self._live[request] = worker
        worker.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError as exc:
            # The CLI dropping a connection (e.g. when it is killed mid-stream) is normal.
            log.debug("scripted model: connection from %s ended: %s", client_address, exc)
        finally:
            self.shutdown_request(request)
            with self._live_lock:
                self._live.pop(request, None)

    def close_connections(self, deadline: float) -> None:
        """Wake handlers blocked on idle keep-alive reads, then join them until `deadline`."""
        with self._live_lock:
            live = list(self._live.items())
        for connection, _ in live:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("scripted model: socket already closed: %s", exc)
        for _, worker in live:
            worker.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _SOCKET_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("scripted model: " + format, *args)

    def do_GET(self) -> None:
        # The CLI checks that the API is reachable unless non-essential traffic is disabled.
        if self.path.split("?", 1)[0] in _PROBES:
            self._send_json(200, {})
        else:
            self._not_found()

    do_HEAD = do_GET

    def do_POST(self) -> None:
        model = self.server.model
        path = self.path.split("?", 1)[0]
        body = self._read_json()
        if body is None:
            self._send_json(400, error_body("invalid_request_error", "body is not a JSON object"))
            return
        if path == "/v1/messages/count_tokens":
            model._record(self.path, dict(self.headers), body)
            self._send_json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            return
        if path != "/v1/messages":
            self._not_found()
            return
        self._answer(*model._record(self.path, dict(self.headers), body))

    def _answer(self, request: RecordedRequest, step: Step) -> None:
        model = self.server.model
        while True:
            if isinstance(step, Delay):
                if model._stopping.wait(step.seconds):
                    self.close_connection = True
                    return
                step = step.step
            elif isinstance(step, Hang):
                model._stopping.wait()
                self.close_connection = True
                return
            elif isinstance(step, ApiError):
                self._send_json(step.status, error_body(step.error_type, step.message))
                return
            elif isinstance(step, (Text, ToolCall, ToolCalls)):
                break
            else:
                try:
                    step = step(request)
                except Exception as exc:  # noqa: BLE001 - a test's callable may fail any way
                    self._fail(request, f"callable step raised {exc!r}")
                    return
        try:
            reply = render(step, request, f"msg_{request.index:04d}")
        except ScriptError as exc:
            self._fail(request, str(exc))
            return
        if request.stream:
            self._send_events(reply)
        else:
            self._send_json(200, reply.as_json())

    def _fail(self, request: RecordedRequest, message: str) -> None:
        # 400 because the CLI does not back off on it; its re-sends with fewer beta features
        # get the same 400, because the model now fails this session's every request.
        self.server.model._note_error(request, message)
        self._send_json(400, error_body("invalid_request_error", f"scripted model: {message}"))

    def _send_events(self, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No length is known up front, so the end of the stream is the end of the connection.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for event, data in reply.as_events():
            self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _not_found(self) -> None:
        self.server.model._note_unknown(f"{self.command} {self.path}")
        self._send_json(404, error_body("not_found_error", f"no route {self.path}"))

    def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def bundled_cli_path() -> Path:
    """The Claude Code CLI shipped inside the claude-agent-sdk wheel."""
    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def claude_cli_env(model_url: str, home: Path, *, max_retries: int | None = 0) -> dict[str, str]:
    """The environment (on top of the inherited one) that points the CLI at a scripted model.

    `home` becomes HOME, where the CLI keeps settings and sessions; `max_retries=0` makes an
    API error end the run at once instead of after the CLI's backoff.
    """
    env = {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "scripted-model-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # Credentials or providers inherited from the developer's shell would take precedence
        # over the API key or send requests elsewhere; the SDK merges env, so blank them.
        "ANTHROPIC_AUTH_TOKEN": "",
        "CLAUDE_CODE_OAUTH_TOKEN": "",
        "CLAUDE_CODE_USE_BEDROCK": "",
        "CLAUDE_CODE_USE_VERTEX": "",
    }
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    return env
