"""The demo's stage: a throwaway sandbox, the fakes and the real daemon in it, and the end."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from .. import logs
from ..claude_runner import SdkClaudeRunner
from ..config import Settings
from ..core.redact import Redactor
from ..core.work import WorkItemType
from ..daemon import FIRST_WATCHED_META
from ..fakes import demo_scene as scene
from ..fakes.fake_github import FakeGitHub
from ..fakes.git_world import make_world
from ..fakes.scripted_model import ScriptedModel, bundled_cli_path, claude_cli_env
from ..main import PROG
from ..model_proxy import CREDENTIAL_ENV
from ..ports import StateStore
from ..startup import StartupError, start_sandbox
from ..state import State
from ..wiring import github_client, known_secrets, serve
from .director import DemoFailed, Director, Interrupted
from .narrator import Narrator, record_github
from .story import Run, Summary, describe, summary

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2  # as the daemon's own start-up refusals
EXIT_INTERRUPTED = 130
# The whole story, from the first look at GitHub to the merge, takes about 10 s with the
# scripted model on an idle machine; the margin is for a loaded one. The real model thinks
# for minutes.
SCRIPTED_DEADLINE = 120.0
REAL_DEADLINE = 900.0
STOP_TIMEOUT = 30.0  # for the daemon to finish up once asked to stop
LOG_NAME = "daemon.log"
GITHUB_RECORD = "github.json"  # in a kept sandbox: the fake GitHub's issues and pulls at the end
# What the CLI needs, besides the user's credential, to talk to the real model from a new HOME
# without calling home for anything else.
REAL_CLI_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}


def missing_credential(env: Mapping[str, str]) -> str | None:
    """Why `--real-claude` cannot run with `env`, or None when a model credential is there."""
    if any(env.get(name) for name in CREDENTIAL_ENV):
        return None
    return (
        "--real-claude talks to the real model with your credentials: set ANTHROPIC_API_KEY "
        "(an API key) or CLAUDE_CODE_OAUTH_TOKEN (from `claude setup-token`)"
    )


def check_command(python: str, *, has_pytest: bool) -> str:
    """The pre-merge command that runs the sample's tests (unittest cases, so either runner)."""
    runner = "pytest -q -p no:cacheprovider" if has_pytest else "unittest -v"
    return f"{shlex.quote(python)} -m {runner}"


def demo_settings(**values: Any) -> Settings:
    """Settings from `values` and the defaults only: every field is passed, so nothing from
    the user's environment or .env (a PRE_MERGE_COMMANDS, a POLL_INTERVAL) reaches the demo."""
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in Settings.model_fields.items()
        if not field.is_required()
    }
    return Settings(_env_file=None, **{**defaults, **values})  # type: ignore[call-arg]


@dataclass(frozen=True)
class Stage:
    """The sandbox and what serves in it."""

    root: Path
    github: FakeGitHub
    model: ScriptedModel | None  # None: the real model
    settings: Settings
    claude_env: dict[str, str]  # the CLI's environment, on top of ours
    started: float  # when the demo began, on time.monotonic()'s clock

    @property
    def deadline(self) -> float:
        return REAL_DEADLINE if self.model is None else SCRIPTED_DEADLINE


def run_demo(*, keep: bool, real_claude: bool, verbose: bool) -> int:
    """Run the demo; the exit code: 0 when the story ended with a merged pull request."""
    if real_claude and (why := missing_credential(os.environ)) is not None:
        return _fail(why, EXIT_CANNOT_RUN)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="claude-orchestrator-demo-"))
    print(f"sandbox: {root}", flush=True)
    secrets = [os.environ.get(name, "") for name in CREDENTIAL_ENV]
    restore_logging = _log_to(root / LOG_NAME, verbose, Redactor(secrets))
    if keep:
        hint = f" (the orchestrator's log: {root / LOG_NAME})"
    else:
        hint = "" if verbose else " (-v shows the orchestrator's log, --keep keeps the sandbox)"
    code = EXIT_FAILED
    try:
        with contextlib.ExitStack() as servers:
            stage = _build(root, real_claude=real_claude, servers=servers, started=started)
            if keep:  # runs after the story, before the fake GitHub (and its memory) stops
                servers.callback(_record, stage.github, root / GITHUB_RECORD)
            code = asyncio.run(_play(stage, keep=keep))
    except DemoFailed as exc:
        code = _fail(f"{exc}{hint}", EXIT_FAILED)
    except StartupError as exc:
        code = _fail(str(exc), EXIT_CANNOT_RUN)
    except (KeyboardInterrupt, Interrupted):
        code = _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # a bug of ours: one line here, the trace in the log
        log.exception("the demo failed")
        code = _fail(f"the demo failed: {exc!r}{hint}", EXIT_FAILED)
    finally:
        restore_logging()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif code != 0:  # the summary says where it is when all went well
            print(f"sandbox kept: {root}", flush=True)
    return code


def _build(
    root: Path, *, real_claude: bool, servers: contextlib.ExitStack, started: float
) -> Stage:
    """The repository on disk, the fake GitHub serving it, the model, and the settings."""
    world = make_world(root, scene.SAMPLE_PROJECT)
    github = servers.enter_context(FakeGitHub(world.origin, scene.OWNER, scene.REPO))
    github.set_permission(scene.MAINTAINER, "write")
    home = root / "home"  # the CLI's settings and sessions: never the user's own
    home.mkdir()
    model: ScriptedModel | None = None
    if real_claude:
        claude_env = {"HOME": str(home), **REAL_CLI_ENV}
    else:
        model = servers.enter_context(ScriptedModel())
        claude_env = claude_cli_env(model.url, home)
    has_pytest = importlib.util.find_spec("pytest") is not None
    settings = demo_settings(
        github_repo=github.full_name,
        github_token=SecretStr(github.token),
        github_api_url=github.url,
        repo_path=world.clone,
        worktree_base=root / "worktrees",
        state_file=root / "state.json",
        log_dir=root / "logs",
        poll_interval=1.0,
        # A run still going when the story ends is not waited for long.
        shutdown_grace=5.0,
        max_concurrent=2,
        max_turns=30 if real_claude else 10,
        claude_cli_path=str(bundled_cli_path()),
        claude_timeout=600 if real_claude else 60,
        check_timeout=120,
        ci_wait_timeout=60,
        pre_merge_commands=[check_command(sys.executable, has_pytest=has_pytest)],
        # The checks run the sample's tests with this Python, inside the sandbox.
        sandbox_read_paths=sorted({Path(sys.prefix), Path(sys.base_prefix)}),
        # The one setting read from the environment: the daemon's refusal to start without
        # bubblewrap names SANDBOX=off as the way out, and so it is here too.
        sandbox="off" if os.environ.get("SANDBOX") == "off" else "bwrap",
    )
    return Stage(root, github, model, settings, claude_env, started)


async def _play(stage: Stage, *, keep: bool) -> int:
    """Start the daemon, direct the scene while telling it, stop the daemon, sum up."""
    settings = stage.settings
    # Claude's runs go through the same sandbox the daemon builds for its pre-merge checks.
    runner = SdkClaudeRunner(
        str(settings.claude_cli_path), env=stage.claude_env, sandbox=await start_sandbox(settings)
    )
    # The fake has no secondary rate limit to respect.
    github = github_client(settings, known_secrets(settings), write_interval=0)
    with State(settings.state_file) as state:
        narrator = Narrator(stage.github, stage.model, state, settings.worktree_base,
                            sys.executable, sys.stdout, stage.started)  # fmt: skip
        daemon = asyncio.create_task(
            serve(settings, state, once=False, github=github, claude=runner)
        )
        director = Director(stage.github, stage.model, settings, state, narrator, daemon,
                            stage.deadline)  # fmt: skip
        try:
            merged = await director.direct()
        except BaseException:
            # The error says what went wrong, not how the daemon then ends.
            with contextlib.suppress(Exception):
                await _stop(daemon, state)
            raise
        narrator.say("the demo stops the orchestrator with SIGTERM, as a service manager would")
        if await _stop(daemon, state) != 0:
            raise DemoFailed("the orchestrator met unexpected errors (see its log)")
        narrator.tick()
        wrong = [*stage.github.contract_violations, *map(str, stage.github.unknown_routes),
                 *stage.github.server_errors]  # fmt: skip
        if wrong:
            raise DemoFailed(f"the orchestrator made a request GitHub would refuse: {wrong[0]}")
        lines = summary(_summary(stage, state, merged, narrator.elapsed(), keep=keep))
    print("\n".join(lines), flush=True)
    return 0


async def _stop(daemon: asyncio.Task[int], state: StateStore) -> int | None:
    """Stop the daemon as a user would, with SIGTERM: it finishes up and saves its state.
    Returns its exit code (None if it had to be cancelled); raises what it raised.

    SIGTERM only while its own handler is installed (from before it starts watching until it
    returns, on this one thread): otherwise SIGTERM would end this whole process.
    """
    if not daemon.done():
        if state.get_meta(FIRST_WATCHED_META) is not None:
            signal.raise_signal(signal.SIGTERM)
        else:
            daemon.cancel()
    await asyncio.wait({daemon}, timeout=STOP_TIMEOUT)
    if not daemon.done():
        daemon.cancel()
        raise DemoFailed(f"the orchestrator did not stop within {STOP_TIMEOUT:g}s")
    return None if daemon.cancelled() else daemon.result()


def _summary(
    stage: Stage, state: StateStore, merged: int, elapsed: float, *, keep: bool
) -> Summary:
    item, pull = state.get(WorkItemType.MERGE, merged), stage.github.pull(merged)
    issues = [stage.github.issue(n) for n in range(1, merged)]
    return Summary(
        elapsed=elapsed,
        merged=merged,
        title=pull["title"],
        base=pull["base"]["ref"],
        merge_sha=(item.merge.merge_sha if item else None) or "?",
        closed=[i["number"] for i in issues if i["state"] == "closed" and "pull_request" not in i],
        runs=[
            Run(describe(i), i.turns, i.spent_usd, i.runs)
            for i in sorted(state.items(), key=lambda i: i.started_at or i.created_at)
            if i.runs  # the items Claude worked on (a merge's too, when it fixes the checks)
        ],
        scripted=stage.model is not None,
        kept=stage.root if keep else None,
        origin=stage.root / "origin.git",
        log=stage.root / LOG_NAME,
        state_file=stage.settings.state_file,
        record=stage.root / GITHUB_RECORD,
    )


def _record(github: FakeGitHub, path: Path) -> None:
    try:
        record_github(github, path)
    except Exception:  # a kept sandbox lacks the record; the demo's own outcome stands
        log.exception("could not record what the fake GitHub showed")


def _log_to(path: Path, verbose: bool, redactor: Redactor) -> Callable[[], None]:
    """Send every log line to `path` (and, `verbose`, to stderr too); returns the undo."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    handlers: list[logging.Handler] = [logging.FileHandler(path, encoding="utf-8")]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for old in before:
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(logs.FORMAT))
        handler.addFilter(logs.ContextFilter(redactor))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "hishel", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def restore() -> None:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        for old in before:
            root.addHandler(old)
        root.setLevel(level)

    return restore


def _fail(message: str, code: int) -> int:
    print(f"{PROG} demo: {message}", file=sys.stderr, flush=True)
    return code
