"""Claude Code runs through claude-agent-sdk: bounded turns and time, explicit tools, no token."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKError,
    ResultMessage,
    TextBlock,
    ToolUseBlock,
    query,
)

from .core.models import (
    ClaudeRequest,
    ClaudeResult,
)
from .logs import current_item
from .model_proxy import ModelProxy
from .proc import WITHHELD_FROM_CHILDREN, kill_processes_with_env
from .sandbox import Sandbox
from .transcripts import Transcript, Transcripts

log = logging.getLogger(__name__)

SDK_ENV = ("CLAUDE_CODE_ENTRYPOINT", "CLAUDE_AGENT_SDK_VERSION")  # set by claude-agent-sdk
RUN_MARKER_ENV = "CLAUDE_ORCHESTRATOR_RUN"  # tags every process of one run, to reap leftovers
STDERR_TAIL = 40
REAP_SETTLE = 0.2  # seconds between the two passes that kill a run's leftovers
PROGRESS_EVERY = 30.0  # seconds between the progress lines of a running Claude run


class Progress:
    """What a running Claude run has done so far, for the steady progress line."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.turns = 0
        self.tool: str | None = None

    def saw(self, message: AssistantMessage) -> None:
        self.turns += 1
        tools = [b.name for b in message.content if isinstance(b, ToolUseBlock)]
        if tools:
            self.tool = tools[-1]
            log.debug("Claude, turn %d: %s", self.turns, ", ".join(tools))

    def line(self, now: float) -> str:
        doing = f"using {self.tool}" if self.tool else "thinking"
        return f"Claude is working: turn {self.turns}, {doing}, {_elapsed(now - self.started)}"

    async def report(self, every: float) -> None:
        """Log the line every `every` seconds, until cancelled."""
        while True:
            await anyio.sleep(every)
            log.info("%s", self.line(time.monotonic()))


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class ClaudeRunner(Protocol):
    """Runs Claude Code; tests substitute the real CLI's model, not this interface."""

    async def run(self, request: ClaudeRequest) -> ClaudeResult: ...


@dataclass
class _SharedProxy:
    """The model proxy the runs share while the daemon serves (with its sandboxed twins)."""

    serving: bool = False
    proxy: ModelProxy | None = None


class SdkClaudeRunner:
    """The real runner: the Claude Code CLI driven by claude-agent-sdk.

    With a sandbox, each run reaches the model only through a `ModelProxy`, which holds the
    credential: one for all the runs inside `serving()` (the daemon's life), else one per run.
    With `transcripts`, each run's stream of messages is kept in a file of the item's (the
    one the log lines name).
    """

    def __init__(
        self,
        cli_path: str,
        *,
        model: str | None = None,
        env: Mapping[str, str] | None = None,
        sandbox: Sandbox | None = None,
        transcripts: Transcripts | None = None,
    ) -> None:
        self._cli_path = cli_path
        self._model = model
        self._env = dict(env or {})
        self.sandbox = sandbox
        self._transcripts = transcripts
        self._shared = _SharedProxy()

    def with_sandbox(self, sandbox: Sandbox) -> SdkClaudeRunner:
        """This runner (its model proxy, its transcripts) with another sandbox: one
        repository's, which shows that repository's git and no other's."""
        twin = copy.copy(self)
        twin.sandbox = sandbox
        return twin

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Share one model proxy between the runs made inside (started by the first one)."""
        shared = self._shared
        shared.serving = True
        try:
            yield
        finally:
            shared.serving = False
            proxy, shared.proxy = shared.proxy, None
            if proxy is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(proxy.stop)

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        if self.sandbox is None:
            return await self._run(request, self._cli_path)
        async with self._model_proxy() as proxy:
            with tempfile.TemporaryDirectory(prefix="claude-run-") as scratch:
                cli = self.sandbox.cli_wrapper(
                    self._cli_path,
                    workdir=request.cwd,
                    read_only=request.read_only,
                    directory=Path(scratch),
                    # What the SDK passes: our environment, the run's, and its own two.
                    env_names={*os.environ, *self._env, RUN_MARKER_ENV, *SDK_ENV},
                    model_socket=proxy.socket_path,
                    model_env=proxy.cli_env,
                )
                return await self._run(request, str(cli))

    @asynccontextmanager
    async def _model_proxy(self) -> AsyncIterator[ModelProxy]:
        shared = self._shared
        if shared.proxy is not None:
            yield shared.proxy
            return
        # The CLI's environment as the SDK builds it: ours, then the runner's.
        proxy = ModelProxy({**os.environ, **self._env}).start()
        if shared.serving:
            shared.proxy = proxy
            yield proxy
            return
        try:
            yield proxy
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(proxy.stop)

    async def _run(self, request: ClaudeRequest, cli_path: str) -> ClaudeResult:
        budget = f", ${request.max_budget_usd:.2f}" if request.max_budget_usd is not None else ""
        log.info("Claude starts (%s; at most %d turns, %s%s)", ", ".join(request.tools),
                 request.max_turns, _elapsed(request.timeout), budget)  # fmt: skip
        item = current_item.get()
        transcript = Transcript.none()
        if self._transcripts is not None:
            transcript = self._transcripts.start(item)
        if transcript.path is not None:
            log.info("Claude's transcript: %s", transcript.path)
        transcript.write({
            "type": "request", "item": item, "prompt": request.prompt, "cwd": str(request.cwd),
            "tools": list(request.tools), "max_turns": request.max_turns,
            "timeout": request.timeout, "model": self._model,
            "max_budget_usd": request.max_budget_usd,
        })  # fmt: skip
        result: ClaudeResult | None = None
        try:
            result = await self._query(request, cli_path, transcript)
            return result
        finally:
            transcript.write(_ending(result))
            transcript.close()

    async def _query(
        self, request: ClaudeRequest, cli_path: str, transcript: Transcript
    ) -> ClaudeResult:
        marker = uuid.uuid4().hex
        # The SDK starts the CLI with our whole environment plus `env`, so the tokens are
        # blanked here even though main() already removed them from os.environ.
        env = {**self._env, **dict.fromkeys(WITHHELD_FROM_CHILDREN, ""), RUN_MARKER_ENV: marker}
        stderr: list[str] = []

        def on_stderr(line: str) -> None:
            _keep_tail(stderr, line)
            transcript.write({"type": "stderr", "line": line.rstrip()})

        options = ClaudeAgentOptions(
            cwd=str(request.cwd),
            cli_path=cli_path,
            model=self._model,
            tools=list(request.tools),
            allowed_tools=list(request.tools),
            # acceptEdits + explicit allowed tools: works as root, headless, every grant named
            # (DESIGN §3); bypassPermissions refuses to run as root.
            permission_mode="acceptEdits",
            max_turns=request.max_turns,
            max_budget_usd=request.max_budget_usd,
            system_prompt={"type": "preset", "preset": "claude_code", "append": request.guidelines},
            setting_sources=list(request.setting_sources),
            env=env,
            stderr=on_stderr,
        )
        started = time.monotonic()
        texts: list[str] = []
        result: ResultMessage | None = None
        progress = Progress(started)
        # A task, not a task group: the group would wrap the SDK's errors in an ExceptionGroup.
        ticker = asyncio.ensure_future(progress.report(PROGRESS_EVERY))
        try:
            with anyio.fail_after(request.timeout):
                async for message in query(prompt=request.prompt, options=options):
                    transcript.message(message)
                    if isinstance(message, AssistantMessage):
                        progress.saw(message)
                        texts += [b.text for b in message.content if isinstance(b, TextBlock)]
                    elif isinstance(message, ResultMessage):
                        result = message
        except TimeoutError:
            return ClaudeResult(
                ok=False,
                text="\n".join(texts),
                duration_s=time.monotonic() - started,
                error=f"Claude did not finish within {request.timeout:g} seconds (CLAUDE_TIMEOUT)",
                timed_out=True,
                stderr_tail=stderr,
                limit="time",
            )
        except ClaudeSDKError as exc:
            # The SDK raises after an error result; that result explains it best.
            error = _result_error(result) if result is not None else f"Claude Code failed: {exc}"
            return _failed(result, texts, started, stderr, error)
        finally:
            ticker.cancel()
            with anyio.CancelScope(shield=True):
                await _reap(marker)
        if result is None:
            return _failed(None, texts, started, stderr, "Claude Code ended without a result")
        if result.is_error:
            return _failed(result, texts, started, stderr, _result_error(result))
        return ClaudeResult(
            ok=True,
            text=(result.result or "\n".join(texts)).strip(),
            cost_usd=result.total_cost_usd,
            turns=result.num_turns,
            duration_s=time.monotonic() - started,
            session_id=result.session_id,
            stderr_tail=stderr,
        )


def _ending(result: ClaudeResult | None) -> dict[str, object]:
    """The transcript's last line: how the run ended."""
    if result is None:
        return {"type": "end", "ok": False, "error": "the run was interrupted"}
    return {
        "type": "end", "ok": result.ok, "error": result.error, "turns": result.turns,
        "cost_usd": result.cost_usd, "duration_s": round(result.duration_s, 1),
    }  # fmt: skip


def _keep_tail(lines: list[str], line: str) -> None:
    lines.append(line.rstrip())
    del lines[:-STDERR_TAIL]


def _limit(result: ResultMessage | None) -> str | None:
    """The limit that stopped the run, if one did."""
    if result is None:
        return None
    if result.subtype == "error_max_turns" or result.terminal_reason == "max_turns":
        return "turns"
    if result.subtype == "error_max_budget_usd":
        return "budget"
    return None


def _result_error(result: ResultMessage) -> str:
    if _limit(result) == "turns":
        return f"Claude used all {result.num_turns} turns (MAX_TURNS) without finishing"
    if _limit(result) == "budget":
        spent = f"${result.total_cost_usd:.2f}" if result.total_cost_usd is not None else "it"
        return f"Claude stopped at its budget: the run cost {spent}"
    if result.api_error_status:
        return f"the model API answered {result.api_error_status}"
    detail = "; ".join(result.errors or []) or (result.result or result.subtype)
    return f"Claude Code reported an error: {detail}"


def _failed(
    result: ResultMessage | None,
    texts: list[str],
    started: float,
    stderr: list[str],
    error: str,
) -> ClaudeResult:
    return ClaudeResult(
        ok=False,
        text="\n".join(texts),
        cost_usd=result.total_cost_usd if result else None,
        turns=result.num_turns if result else 0,
        duration_s=time.monotonic() - started,
        session_id=result.session_id if result else None,
        error=error,
        stderr_tail=stderr,
        limit=_limit(result),
    )


async def _reap(marker: str) -> None:
    """Kill any process still carrying this run's marker (e.g. a server Claude started).

    Two passes: a command backgrounded just before the run ended may still be starting.
    """
    killed = kill_processes_with_env(RUN_MARKER_ENV, marker)
    await anyio.sleep(REAP_SETTLE)
    killed += kill_processes_with_env(RUN_MARKER_ENV, marker)
    if killed:
        log.info("killed %d process(es) left running by Claude", len(killed))
