"""Script steps for the scripted model, the record of each request, and the replies they render."""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

# The CLI states its working directory in the environment section it sends with every request
# (a system-role message in SDK runs, the system prompt in `claude -p` runs). Tests script
# paths relative to that directory because they cannot know the CLI's absolute paths up front.
_CWD_PATTERNS = (
    re.compile(r"^\s*-?\s*Primary working directory:\s*(/\S.*?)\s*$", re.MULTILINE),
    re.compile(r"^\s*-?\s*Working directory:\s*(/\S.*?)\s*$", re.MULTILINE),
)
# Tools whose `file_path` argument the CLI requires to be absolute.
_PATH_TOOLS = frozenset({"Write", "Edit", "Read", "NotebookEdit"})


class RequestKind(enum.Enum):
    """What a request to the scripted model was for, which decides what answers it."""

    MAIN = "main"  # a turn of a scripted conversation: consumes one step
    SIDE = "side"  # a helper call (titles, summaries, quota probes): never consumes a step
    COUNT_TOKENS = "count_tokens"


@dataclass(frozen=True)
class ToolResult:
    """One `tool_result` block the CLI sent back, joined with the `tool_use` that asked for it."""

    tool_use_id: str
    tool_name: str | None
    tool_input: Mapping[str, Any]
    text: str
    is_error: bool


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the CLI sent it, plus how the scripted model classified and routed it."""

    index: int
    path: str
    kind: RequestKind
    model: str
    stream: bool
    max_tokens: int | None
    system: str
    tool_names: tuple[str, ...]  # every tool in the request, as the CLI listed them
    direct_tool_names: tuple[str, ...]  # those without `defer_loading` (callable right away)
    messages: tuple[JSON, ...]
    session_id: str | None
    headers: Mapping[str, str]
    body: Mapping[str, Any]
    received_at: float = 0.0  # time.monotonic() on arrival
    conversation: str | None = None  # the script's key ("default" or a marker) for MAIN requests

    @property
    def cwd(self) -> Path | None:
        """The working directory the CLI reports in its environment section, if any."""
        for pattern in _CWD_PATTERNS:
            match = pattern.search(self.all_text)
            if match:
                return Path(match.group(1))
        return None

    @property
    def all_text(self) -> str:
        """The system prompt and the text of every message, for substring assertions."""
        parts = [self.system]
        parts.extend(_text_of(m.get("content")) for m in self.messages)
        return "\n".join(parts)

    @property
    def first_user_text(self) -> str:
        """The text of the first user message: the prompt, with the CLI's reminders."""
        return next((_text_of(m.get("content")) for m in self._user_messages()), "")

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        """Tool results in the latest user message: what the previous step's tools returned."""
        users = list(self._user_messages())
        return self._results_in(users[-1:]) if users else ()

    @property
    def all_tool_results(self) -> tuple[ToolResult, ...]:
        """Every tool result in the conversation so far, oldest first."""
        return self._results_in(list(self._user_messages()))

    def _user_messages(self) -> Iterator[JSON]:
        return (m for m in self.messages if m.get("role") == "user")

    def _results_in(self, messages: Sequence[JSON]) -> tuple[ToolResult, ...]:
        calls = {
            block.get("id"): block
            for message in self.messages
            if message.get("role") == "assistant"
            for block in _blocks(message.get("content"))
            if block.get("type") == "tool_use"
        }
        results = []
        for message in messages:
            for block in _blocks(message.get("content")):
                if block.get("type") != "tool_result":
                    continue
                call = calls.get(block.get("tool_use_id"), {})
                results.append(
                    ToolResult(
                        tool_use_id=str(block.get("tool_use_id")),
                        tool_name=call.get("name"),
                        tool_input=call.get("input") or {},
                        text=_text_of(block.get("content")),
                        is_error=bool(block.get("is_error", False)),
                    )
                )
        return tuple(results)


def _blocks(content: object) -> list[JSON]:
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return []


def _text_of(content: object) -> str:
    texts = []
    for block in _blocks(content):
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            texts.append(_text_of(block.get("content")))
    return "\n".join(texts)


def parse_request(
    index: int, path: str, headers: Mapping[str, str], body: Mapping[str, Any]
) -> RecordedRequest:
    """Record a Messages API request body; `kind` is provisional until it is classified."""
    system = body.get("system")
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    raw_max = body.get("max_tokens")
    lowered = {k.lower(): v for k, v in headers.items()}
    return RecordedRequest(
        index=index,
        path=path,
        kind=RequestKind.COUNT_TOKENS if "count_tokens" in path else RequestKind.MAIN,
        model=str(body.get("model", "")),
        stream=bool(body.get("stream", False)),
        max_tokens=raw_max if isinstance(raw_max, int) else None,
        system=system if isinstance(system, str) else _text_of(system),
        tool_names=tuple(str(t.get("name")) for t in tools),
        # The CLI adds a `DeferredToolPlaceholder` with `defer_loading`; such tools are only
        # callable after `ToolSearch` loads them, so they are not part of what a run offers.
        direct_tool_names=tuple(str(t.get("name")) for t in tools if not t.get("defer_loading")),
        messages=tuple(m for m in body.get("messages") or [] if isinstance(m, dict)),
        session_id=lowered.get("x-claude-code-session-id"),
        headers=dict(headers),
        body=dict(body),
        received_at=time.monotonic(),
    )


def is_side_request(request: RecordedRequest) -> bool:
    """Whether a request is a CLI helper call rather than a turn of the agent's conversation.

    Every agent turn carries the CLI's environment section ("Primary working directory: ..."),
    whatever the tools, system prompt or model; helper calls (the session title, which goes to
    the main model with no tools, summaries, `max_tokens=1` quota probes) do not. Model names
    and tools cannot decide it: a run may choose a haiku model, and `tools=[]` offers none.
    """
    return request.max_tokens == 1 or request.cwd is None


# ---- script steps -------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Reply with final text and `end_turn`: the conversation ends (e.g. a review's verdict)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """Reply with one `tool_use`. A relative `file_path` is resolved against the CLI's cwd."""

    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCalls:
    """Reply with several `tool_use` blocks in one turn (the CLI runs them, then answers once)."""

    calls: tuple[ToolCall, ...]
    text: str = ""


@dataclass(frozen=True)
class ApiError:
    """Answer with an HTTP error in the API's error shape (500 api_error, 529 overloaded...)."""

    status: int = 500
    error_type: str = "api_error"
    message: str = "Scripted API error"
    # How many consecutive requests it answers; None: every later one (the script stops here).
    # The CLI retries 5xx/529 unless CLAUDE_CODE_MAX_RETRIES=0, and re-sends a 400 a varying
    # number of times (3 to 5 seen) with fewer beta features, whatever that setting.
    times: int | None = 1


@dataclass(frozen=True)
class Hang:
    """Never answer: the request is held until the scripted model stops (for timeout tests)."""


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (cut short when the model stops), then answer with `step`."""

    seconds: float
    step: Step


# A callable step sees the recorded request and returns the step to answer with.
Dynamic = Callable[[RecordedRequest], "Step"]
Step = Text | ToolCall | ToolCalls | ApiError | Hang | Delay | Dynamic


def write(files: Mapping[str, str]) -> ToolCalls:
    """One turn that writes each file with the `Write` tool (paths may be relative)."""
    return ToolCalls(
        tuple(ToolCall("Write", {"file_path": p, "content": c}) for p, c in files.items())
    )


def bash(command: str, description: str = "Run a command") -> ToolCall:
    """A `Bash` tool call."""
    return ToolCall("Bash", {"command": command, "description": description})


def overloaded() -> ApiError:
    """The 529 the real API returns when it is overloaded."""
    return ApiError(529, "overloaded_error", "Overloaded")


def invalid_request(message: str = "Scripted invalid request") -> ApiError:
    """A 400 for the rest of the conversation, so the CLI's re-sends cannot get past it."""
    return ApiError(400, "invalid_request_error", message, times=None)


# ---- rendering replies --------------------------------------------------------------------


class ScriptError(Exception):
    """A step cannot be answered for this request (e.g. a relative path but no known cwd)."""


@dataclass(frozen=True)
class Reply:
    """A successful Messages API answer, renderable as JSON or as server-sent events."""

    message_id: str
    model: str
    content: tuple[JSON, ...]
    stop_reason: str
    input_tokens: int
    output_tokens: int = 0

    def as_json(self) -> JSON:
        """The non-streaming response body."""
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": list(self.content),
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": self._usage(),
        }

    def as_events(self) -> Iterator[tuple[str, JSON]]:
        """The streaming response as (event name, data) pairs, in the API's order."""
        start = self.as_json() | {"content": [], "stop_reason": None}
        start["usage"] = self._usage() | {"output_tokens": 1}
        yield "message_start", {"type": "message_start", "message": start}
        yield "ping", {"type": "ping"}
        for index, block in enumerate(self.content):
            if block["type"] == "text":
                empty: JSON = {"type": "text", "text": ""}
                delta: JSON = {"type": "text_delta", "text": block["text"]}
                yield _block_start(index, empty)
                yield _block_delta(index, delta)
            else:
                yield _block_start(index, block | {"input": {}})
                # Split the arguments so the CLI's incremental JSON parser is exercised.
                arguments = json.dumps(block["input"])
                half = len(arguments) // 2
                for part in (arguments[:half], arguments[half:]):
                    yield _block_delta(index, {"type": "input_json_delta", "partial_json": part})
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": self.output_tokens},
            },
        )
        yield "message_stop", {"type": "message_stop"}

    def _usage(self) -> JSON:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }


def _block_start(index: int, block: JSON) -> tuple[str, JSON]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def _block_delta(index: int, delta: JSON) -> tuple[str, JSON]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def render(step: Text | ToolCall | ToolCalls, request: RecordedRequest, message_id: str) -> Reply:
    """Turn a replying step into the message answering `request`."""
    content: list[JSON] = []
    if isinstance(step, Text):
        content.append({"type": "text", "text": step.text})
        stop_reason = "end_turn"
    else:
        calls = (step,) if isinstance(step, ToolCall) else step.calls
        if isinstance(step, ToolCalls) and step.text:
            content.append({"type": "text", "text": step.text})
        for number, call in enumerate(calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{message_id}_{number}",
                    "name": call.name,
                    "input": _resolve_paths(call, request),
                }
            )
        stop_reason = "tool_use"
    output = json.dumps(content)
    return Reply(
        message_id=message_id,
        model=request.model,
        content=tuple(content),
        stop_reason=stop_reason,
        # Rough but deterministic counts so the CLI reports a non-zero cost.
        input_tokens=max(1, len(json.dumps(list(request.messages))) // 4),
        output_tokens=max(1, len(output) // 4),
    )


def _resolve_paths(call: ToolCall, request: RecordedRequest) -> JSON:
    arguments = dict(call.input)
    path = arguments.get("file_path")
    if call.name in _PATH_TOOLS and isinstance(path, str) and not path.startswith("/"):
        cwd = request.cwd
        if cwd is None:
            raise ScriptError(f"{call.name} {path!r}: relative path, but no working directory")
        arguments["file_path"] = str(cwd / path)
    return arguments


def side_answer(request: RecordedRequest, text: str) -> Text:
    """The answer to a helper call: JSON when it asks for structured output (session titles)."""
    config = request.body.get("output_config")
    output_format = config.get("format") if isinstance(config, dict) else None
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        return Text(json.dumps(_instance_of(output_format.get("schema"), text)))
    return Text(text)


def _instance_of(schema: object, text: str) -> object:
    """A minimal value satisfying a JSON schema, with `text` for every string."""
    if not isinstance(schema, dict):
        return text
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _instance_of(sub, text) for name, sub in properties.items()}
    defaults: dict[str, object] = {"array": [], "integer": 0, "number": 0, "boolean": False}
    return defaults.get(str(kind), text)


def error_body(error_type: str, message: str) -> JSON:
    """The API's error envelope."""
    return {"type": "error", "error": {"type": error_type, "message": message}}
