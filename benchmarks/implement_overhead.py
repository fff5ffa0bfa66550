"""Benchmark: the daemon's own time per implemented issue (git and GitHub), Claude excluded."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from scripts.orchestrator.clock import SystemClock
from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.models import ClaudeRequest, ClaudeResult
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import SAMPLE_PROJECT, make_world
from scripts.orchestrator.github_http import RetryPolicy
from scripts.orchestrator.github_watcher import GitHubClient
from scripts.orchestrator.secret_scan import SecretScanner
from scripts.orchestrator.state import State, Status, WorkItemType
from scripts.orchestrator.workflows.implement import ImplementWorkflow
from scripts.orchestrator.worktree_manager import WorktreeManager

READY = "ready"
# The adapter methods the workflow calls, timed where it calls them: what they do inside
# (several git processes, HTTP and parsing) counts once, under the method's name.
GITHUB_STEPS = (
    "count_labelled",
    "get_issue",
    "default_branch",
    "find_pull",
    "react_to_issue",
    "remove_label",
    "list_issue_comments",
    "create_pull",
)
GIT_STEPS = (
    "fetch_branch",
    "remote_branch_sha",
    "branch_worktree",
    "commit_all",
    "head",
    "push",
    "remove",
)
# The order in which one issue first reaches each step (`remove_label` also comes earlier).
STEP_ORDER = (
    "count_labelled",
    "get_issue",
    "default_branch",
    "find_pull",
    "react_to_issue",
    "fetch_branch",
    "remote_branch_sha",
    "branch_worktree",
    "list_issue_comments",
    "claude (stub)",
    "commit_all",
    "head",
    "push",
    "remove",
    "create_pull",
    "remove_label",
    "state.put",
)
OTHER = "other (untimed)"  # prompt, guidelines, logging: the rest of `run()`


class InstantClaude:
    """A `ClaudeRunner` that edits one file and answers at once, so only the daemon is timed."""

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        (request.cwd / f"change_{request.cwd.name}.txt").write_text("done\n", encoding="utf-8")
        return ClaudeResult(ok=True, text="Added a file.", cost_usd=0.0, turns=1, duration_s=0.0)


@dataclass
class Recorder:
    """Wall time and call counts per step, for the issue being measured."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, elapsed: float) -> None:
        # The fake GitHub answers on its own threads.
        with self._lock:
            self.seconds[name] += elapsed
            self.calls[name] += 1

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.calls.clear()

    def wrap_async(self, obj: object, names: tuple[str, ...], key: str | None = None) -> None:
        for name in names:
            setattr(obj, name, self._timed_async(key or name, getattr(obj, name)))

    def wrap_git(self, worktrees: WorktreeManager) -> None:
        run = worktrees._git

        async def timed(args: Sequence[str], **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await run(args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.add("git processes", elapsed)
                self.add(f"git {_subcommand(args)}", elapsed)

        setattr(worktrees, "_git", timed)  # noqa: B010

    def wrap_sync(self, obj: object, name: str, key: str) -> None:
        setattr(obj, name, self._timed_sync(key, getattr(obj, name)))

    def _timed_async(
        self, key: str, fn: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - start)

        return timed

    def _timed_sync(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - start)

        return timed


@dataclass
class IssueRun:
    """One implemented issue: total wall time, per-step times, and what it cost in calls."""

    total: float
    steps: dict[str, float]
    calls: dict[str, int]
    requests: int
    writes: int
    mutations: list[str]


@dataclass
class Scenario:
    name: str
    column: str  # a short name for the per-step tables
    files: Mapping[str, str]
    issues: int
    write_interval: float = 0.0
    # Extra git configuration for the daemon's git processes, through the environment.
    git_config: Mapping[str, str] = field(default_factory=dict)


def _subcommand(args: Sequence[str]) -> str:
    """`worktree add` for `git worktree add ...`, skipping `-c name=value` options."""
    words = iter(args)
    for word in words:
        if word == "-c":
            next(words, None)
        elif not word.startswith("-"):
            following = next(words, "")
            return f"{word} {following}" if word == "worktree" else word
    return "?"


def many_files(count: int) -> dict[str, str]:
    """`count` small Python files, 100 per directory, as a mid-sized repository has."""
    files = dict(SAMPLE_PROJECT)
    for i in range(count - len(files)):
        files[f"src/pkg{i // 100:03d}/mod{i % 100:03d}.py"] = f"VALUE = {i}\n"
    return files


@contextlib.contextmanager
def git_config_env(config: Mapping[str, str]) -> Iterator[None]:
    """Give every git process started in the block `config`, as `git -c` would."""
    added = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        added[f"GIT_CONFIG_KEY_{i}"], added[f"GIT_CONFIG_VALUE_{i}"] = key, value
    saved = {k: os.environ.get(k) for k in added}
    if config:
        os.environ.update(added)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


async def measure_issue(
    gh: FakeGitHub, workflow: ImplementWorkflow, state: State, recorder: Recorder
) -> IssueRun:
    """Label a new issue ready (untimed, as its author would) and time one attempt at it."""
    number = gh.create_issue("Add a file", "Add one file.", user="alice")
    gh.add_labels(number, READY, user="alice")
    requests_before, mutations_before = len(gh.requests), len(gh.mutations)
    recorder.reset()
    start = time.perf_counter()
    await workflow.run(number, fresh=True)
    total = time.perf_counter() - start
    item = state.get(WorkItemType.ISSUE, number)
    if item is None or item.status is not Status.DONE:
        raise RuntimeError(f"issue #{number} was not implemented: {item}")
    new_requests = gh.requests[requests_before:]
    return IssueRun(
        total=total,
        steps=dict(recorder.seconds),
        calls=dict(recorder.calls),
        requests=len(new_requests),
        writes=sum(r.method != "GET" for r in new_requests),
        mutations=[m.name for m in gh.mutations[mutations_before:]],
    )


async def run_scenario(scenario: Scenario, root: Path) -> list[IssueRun]:
    world = make_world(root / "world", scenario.files)
    recorder = Recorder()
    with FakeGitHub(world.origin) as gh:
        # The fake's own handling (including the git it runs on origin) stands in for GitHub's
        # response time, which production pays over the network instead.
        recorder.wrap_sync(gh._app, "handle", "fake GitHub server")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            github_repo=gh.full_name,
            github_token=SecretStr(gh.token),
            github_api_url=gh.url,
            repo_path=world.clone,
            worktree_base=root / "worktrees",
            state_file=root / "state.json",
        )
        github = GitHubClient(
            gh.token,
            gh.full_name,
            api_url=gh.url,
            retry=RetryPolicy(base_delay=0.01, secondary_delay=0.01, max_wait=1.0),
            write_interval=scenario.write_interval,
        )
        worktrees = WorktreeManager(
            settings.repo_path, settings.worktree_base, token=settings.token
        )
        recorder.wrap_async(github, GITHUB_STEPS)
        recorder.wrap_async(worktrees, GIT_STEPS)
        # Every git process the manager starts, whichever step started it, by subcommand.
        recorder.wrap_git(worktrees)
        claude = InstantClaude()
        recorder.wrap_async(claude, ("run",), "claude (stub)")
        runs = []
        with State(settings.state_file) as state:
            recorder.wrap_sync(state, "put", "state.put")
            async with github:
                # Clone set-up above ran without it: only the daemon's own git is affected.
                with git_config_env(scenario.git_config):
                    redactor = Redactor([settings.token])
                    scanner = SecretScanner(redactor)
                    workflow = ImplementWorkflow(
                        settings, state, github, worktrees, claude, scanner, redactor, SystemClock()
                    )
                    for _ in range(scenario.issues):
                        runs.append(await measure_issue(gh, workflow, state, recorder))
        if gh.unknown_routes or gh.server_errors:
            raise RuntimeError(f"fake GitHub: {gh.unknown_routes} {gh.server_errors}")
    return runs


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.1f}"


def report(results: list[tuple[Scenario, list[IssueRun]]]) -> None:
    print("\nPer issue, Claude's run excluded (git: processes, API: requests, writes: non-GET)")
    print(f"{'scenario':<34} {'issues':>6} {'median ms':>10} {'max ms':>8} {'git':>4} {'API':>4} "
          f"{'writes':>6}")  # fmt: skip
    for scenario, runs in results:
        totals = [r.total for r in runs]
        first = runs[0]
        print(
            f"{scenario.name:<34} {len(runs):>6} {ms(totals):>10} {max(totals) * 1e3:8.1f} "
            f"{first.calls.get('git processes', 0):>4} {first.requests:>4} {first.writes:>6}"
        )
    subcommands = sorted({k for _, runs in results for k in runs[0].steps if k[:4] == "git "})
    subcommands.remove("git processes")
    sections = (
        ("Per workflow call", [*STEP_ORDER, OTHER, "fake GitHub server"]),
        ("Per git subcommand", [*subcommands, "git processes"]),
    )
    for title, rows in sections:
        print(f"\n{title}: median ms per issue (calls per issue)")
        print(f"{'':<22}" + "".join(f" {s.column:>18}" for s, _ in results))
        for step in rows:
            print(f"{step:<22}" + "".join(f" {_cell(runs, step):>18}" for _, runs in results))
    print()
    for scenario, runs in results:
        in_order = ", ".join(f"{r.total * 1e3:.0f}" for r in runs)
        print(f"{scenario.name}: ms per issue in order: {in_order}")
        print(f"  successful writes: {', '.join(runs[0].mutations)}")


def _cell(runs: list[IssueRun], step: str) -> str:
    if step == OTHER:
        return ms([r.total - sum(r.steps.get(s, 0.0) for s in STEP_ORDER) for r in runs])
    return f"{ms([r.steps.get(step, 0.0) for r in runs])} ({runs[0].calls.get(step, 0)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=5, help="issues per scenario")
    parser.add_argument("--files", type=int, default=10_000, help="files in the large repository")
    args = parser.parse_args()
    large = many_files(args.files)
    scenarios = [
        Scenario("sample repo", "sample", SAMPLE_PROJECT, args.issues),
        Scenario(f"{args.files:,} files", "large", large, args.issues),
        # What-if, not the daemon's default: git's parallel checkout (0 = one worker per core)
        # for the worktree's checkout, which dominates in a large repository.
        Scenario(
            f"{args.files:,} files, checkout.workers=0",
            "large, workers=0",
            large,
            args.issues,
            git_config={"checkout.workers": "0"},
        ),
        # What production adds: the client spaces writes by 1 s (WriteSpacingThrottler).
        Scenario(
            "sample repo, 1 s write spacing",
            "sample, spaced",
            SAMPLE_PROJECT,
            min(args.issues, 3),
            1.0,
        ),
    ]
    results = []
    for scenario in scenarios:
        with tempfile.TemporaryDirectory(prefix="implement-bench-") as tmp:
            print(f"running: {scenario.name} ...", flush=True)
            results.append((scenario, asyncio.run(run_scenario(scenario, Path(tmp)))))
    report(results)


if __name__ == "__main__":
    main()
