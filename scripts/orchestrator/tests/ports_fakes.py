"""Recording fakes of the ports (git, Claude, checks, clock, state), for fast workflow tests.

Each fake keeps its world in memory, records every port call as `(method, args)` in `.calls`
(`args` as the signature orders them, keyword arguments included), and can be told to fail:
`fail(method, exc, times=1)` makes the next call(s) of `method` raise `exc`; with `after=True`
the call does its work first, like a write whose answer is lost. `before(method, hook)` runs
`hook(*args)` on each call, e.g. to move a branch while the checks run. The GitHub fake is in
`ports_fakes_github.py`; both share a `Remote`, the repository as git and GitHub see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import shutil
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.errors import GitError
from scripts.orchestrator.core.models import (
    ClaudeRequest,
    ClaudeResult,
    CommandResult,
    Completed,
    MergeResult,
    SecretHit,
)
from scripts.orchestrator.core.work import WorkItem, WorkItemType, item_key

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound="Recorder")

START = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
UNIT_TOKEN = "ghp_" + "U" * 36  # the unit tests' token: secret-shaped, so redacted everywhere
SettingsFactory = Callable[..., Settings]  # `make_settings` in conftest.py


def sha(seed: str) -> str:
    """A commit SHA made from a readable seed: `sha("h1")`."""
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def git_error(stderr: str, *args: str, code: int = 1) -> GitError:
    """A `GitError` as the real adapter raises it, with git's own words in `stderr`."""
    return GitError(list(args) or ["push"], Completed(("git", *args), code, "", stderr, 0.1))


@dataclass
class _Fault:
    exc: Exception
    times: int | None  # None: until cleared
    after: bool


class Recorder:
    """Records calls; raises injected faults; runs hooks and waits on gates before a call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._hooks: dict[str, list[Callable[..., None]]] = {}
        self._gates: dict[str, asyncio.Event] = {}

    def fail(
        self, method: str, exc: Exception, times: int | None = 1, *, after: bool = False
    ) -> None:
        """The next `times` calls of `method` raise `exc` (None: every call until `clear`);
        `after`: the call takes effect first, then raises (a lost answer)."""
        assert callable(getattr(self, method, None)), f"{type(self).__name__} has no {method}"
        self._faults.setdefault(method, []).append(_Fault(exc, times, after))

    def before(self, method: str, hook: Callable[..., None]) -> None:
        """Call `hook(*args)` at each call of `method`, before it takes effect."""
        assert callable(getattr(self, method, None)), f"{type(self).__name__} has no {method}"
        self._hooks.setdefault(method, []).append(hook)

    def gate(self, method: str) -> asyncio.Event:
        """Calls of `method` wait until the returned event is set (a slow service)."""
        return self._gates.setdefault(method, asyncio.Event())

    def clear(self) -> None:
        """Forget the faults still pending."""
        self._faults.clear()

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of each call of `method`, in order."""
        return [args for name, args in self.calls if name == method]

    def names(self) -> list[str]:
        """The methods called, in order."""
        return [name for name, _ in self.calls]

    async def _enter(self, method: str, args: tuple[Any, ...]) -> Exception | None:
        self.calls.append((method, args))
        for hook in self._hooks.get(method, []):
            hook(*args)
        if method in self._gates:
            await self._gates[method].wait()
        pending = self._faults.get(method)
        if not pending:
            return None
        fault = pending[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                pending.pop(0)
        if not fault.after:
            raise fault.exc
        return fault.exc


def recorded(
    method: Callable[Concatenate[R, P], Awaitable[T]],
) -> Callable[Concatenate[R, P], Coroutine[Any, Any, T]]:
    """A port method that is recorded and may be made to fail (see `Recorder`)."""
    name = method.__name__
    signature = inspect.signature(method)

    @functools.wraps(method)
    async def call(self: R, /, *args: P.args, **kwargs: P.kwargs) -> T:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values: list[Any] = []
        for param in list(signature.parameters.values())[1:]:
            value = bound.arguments[param.name]
            values.extend(value if param.kind is param.VAR_POSITIONAL else [value])
        lost_answer = await self._enter(name, tuple(values))
        result = await method(self, *args, **kwargs)
        if lost_answer is not None:
            raise lost_answer
        return result

    return call


@dataclass
class Remote:
    """The repository as git and GitHub both see it: branch tips and pull request heads."""

    branches: dict[str, str] = field(default_factory=lambda: {"main": sha("main")})
    pulls: dict[int, str] = field(default_factory=dict)  # refs/pull/N/head


class FakeSecretScan:
    """The `SecretScan` port: finds what a test says it finds (`hits`), in every diff."""

    def __init__(self) -> None:
        self.hits: list[SecretHit] = []
        self.scanned: list[str] = []

    def scan(self, diff: str) -> list[SecretHit]:
        self.scanned.append(diff)
        return list(self.hits)


class RecordingGit(Recorder):
    """The `Git` port: worktrees are empty directories under `base`; a commit is made when
    files in a worktree differ from its last commit (what `ScriptedClaude` wrote, say)."""

    def __init__(self, base: Path, remote: Remote) -> None:
        super().__init__()
        self.base = base
        self.remote = remote
        self.local_branches: dict[str, str] = {}
        self.files: dict[tuple[str, str], str] = {}  # (commit, path) -> text, for read_file
        self.ancestors: set[tuple[str, str]] = set()  # (ancestor, descendant) pairs
        self.conflicts: tuple[str, ...] = ()  # files every merge_worktree conflicts in
        self.pushes: list[tuple[str, str]] = []  # (sha, branch) of each accepted push
        self._heads: dict[Path, str] = {}
        self._branch_of: dict[Path, str] = {}
        self._committed: dict[Path, dict[str, str]] = {}
        self._trees: dict[str, dict[str, str]] = {}  # the files of each commit made here

    @property
    def worktrees(self) -> set[Path]:
        """The worktrees not removed yet."""
        return set(self._heads)

    @recorded
    async def fetch_branch(self, branch: str) -> str:
        if branch not in self.remote.branches:
            stderr = f"fatal: couldn't find remote ref refs/heads/{branch}"
            raise git_error(stderr, "fetch", branch, code=128)
        return self.remote.branches[branch]

    @recorded
    async def fetch_pull_head(self, number: int) -> str:
        if number not in self.remote.pulls:
            stderr = f"fatal: couldn't find remote ref refs/pull/{number}/head"
            raise git_error(stderr, "fetch", f"pull/{number}", code=128)
        return self.remote.pulls[number]

    @recorded
    async def remote_branch_sha(self, branch: str) -> str | None:
        return self.remote.branches.get(branch)

    @recorded
    async def local_branch_sha(self, branch: str) -> str | None:
        return self.local_branches.get(branch)

    @recorded
    async def read_file(self, commit: str, path: str) -> str | None:
        return self.files.get((commit, path))

    @recorded
    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return ancestor == descendant or (ancestor, descendant) in self.ancestors

    @recorded
    async def restore_steering(self, worktree: Path, commit: str) -> list[str]:
        return []

    @recorded
    async def changed_files(self, base: str, head: str) -> list[str]:
        old, new = self._trees.get(base, {}), self._trees.get(head, {})
        return sorted(path for path in old.keys() | new.keys() if old.get(path) != new.get(path))

    @recorded
    async def diff(
        self, base: str, head: str, cwd: Path | None = None, limit: int | None = None
    ) -> str:
        return f"diff --git {base[:7]}...{head[:7]}"[: None if limit is None else limit + 1]

    @recorded
    async def branch_worktree(self, name: str, branch: str, start: str) -> Path:
        path = self._fresh(name, start)
        self.local_branches[branch] = start
        self._branch_of[path] = branch
        return path

    @recorded
    async def detached_worktree(self, name: str, commit: str) -> Path:
        return self._fresh(name, commit)

    @recorded
    async def merge_worktree(self, name: str, base_sha: str, head_sha: str) -> MergeResult:
        path = self._fresh(name, base_sha)
        return MergeResult(path, base_sha, head_sha, self.conflicts)

    @recorded
    async def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        for kept in (self._heads, self._branch_of, self._committed):
            kept.pop(path, None)

    @recorded
    async def commit_all(self, worktree: Path, message: str) -> str | None:
        files = {
            str(p.relative_to(worktree)): p.read_text() for p in worktree.rglob("*") if p.is_file()
        }
        if files == self._committed[worktree]:
            return None
        parent = self._heads[worktree]
        commit = sha(f"{parent}\n{message}\n{json.dumps(files, sort_keys=True)}")
        self._heads[worktree] = commit
        self._committed[worktree] = files
        self._trees[commit] = files
        if worktree in self._branch_of:
            self.local_branches[self._branch_of[worktree]] = commit
        return commit

    @recorded
    async def head(self, worktree: Path) -> str:
        return self._heads[worktree]

    @recorded
    async def push_commit(self, sha: str, branch: str, expected_remote_sha: str | None) -> None:
        if self.remote.branches.get(branch) == sha:
            return  # as git: "Everything up-to-date", whatever the lease says
        if self.remote.branches.get(branch) != expected_remote_sha:
            stderr = f" ! [rejected]        {sha[:7]} -> {branch} (stale info)"
            raise git_error(stderr, "push", branch)
        self.remote.branches[branch] = sha
        self.pushes.append((sha, branch))

    def _fresh(self, name: str, commit: str) -> Path:
        path = self.base / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        self._heads[path] = commit
        self._committed[path] = {}
        return path


class ScriptedClaude(Recorder):
    """The `Claude` port: answers with queued results, in order; `requests` holds each request.
    A run with nothing queued fails the test: Claude was not meant to run."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ClaudeRequest] = []
        self._queue: list[tuple[ClaudeResult, dict[str, str]]] = []

    @property
    def unused(self) -> int:
        """Results queued that no run asked for yet."""
        return len(self._queue)

    def queue(self, result: ClaudeResult, files: dict[str, str] | None = None) -> None:
        """The next run answers `result` after writing `files` into its working directory."""
        self._queue.append((result, files or {}))

    def succeed(self, text: str = "Done.", files: dict[str, str] | None = None) -> None:
        self.queue(ClaudeResult(ok=True, text=text, cost_usd=0.01, turns=3, duration_s=2.0),
                   files)  # fmt: skip

    def fail_run(self, error: str = "the model is overloaded", *, timed_out: bool = False) -> None:
        self.queue(ClaudeResult(ok=False, text="", error=error, timed_out=timed_out))

    @recorded
    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self.requests.append(request)
        assert self._queue, f"Claude ran with no result queued: {request.prompt[:80]!r}"
        result, files = self._queue.pop(0)
        for name, text in files.items():
            target = request.cwd / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return result


class RecordingChecks(Recorder):
    """The `Checks` port: each command passes unless `set` says otherwise; like the real one,
    the run stops at the first failing command."""

    def __init__(self) -> None:
        super().__init__()
        self._results: dict[str, tuple[int | None, bool, str, float]] = {}

    def set(self, command: str, returncode: int | None = 0, output: str = "", *,
            timed_out: bool = False, duration_s: float = 1.5) -> None:  # fmt: skip
        self._results[command] = (returncode, timed_out, output, duration_s)

    @recorded
    async def run(
        self, commands: Sequence[str], *, cwd: Path, timeout: float
    ) -> list[CommandResult]:
        assert cwd.is_dir(), f"checks run in {cwd}, which does not exist"
        results = []
        for command in commands:
            code, timed_out, output, duration = self._results.get(command, (0, False, "", 1.5))
            result = CommandResult(command, code, timed_out, duration, timeout, output)
            results.append(result)
            if not result.ok:
                break
        return results


class FakeClock:
    """The `Clock` port: time moves only by `advance` or `sleep`, which never really waits."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._monotonic = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)  # other tasks run, as they would during a real sleep


class MemoryState:
    """The `StateStore` port in memory; `writes` counts what the JSON file would have written
    (one per change outside a batch, one per batch with changes)."""

    def __init__(self) -> None:
        self._items: dict[str, WorkItem] = {}
        self._meta: dict[str, Any] = {}
        self._depth = 0
        self._dirty = False
        self.writes = 0
        self.closed = False

    def get(self, kind: WorkItemType, number: int) -> WorkItem | None:
        return self._items.get(item_key(kind, number))

    def put(self, item: WorkItem) -> None:
        self._items[item.key] = item
        self._changed()

    def items(self, kind: WorkItemType | None = None) -> list[WorkItem]:
        return [i for i in self._items.values() if kind is None or i.type is kind]

    def clear_item(self, kind: WorkItemType, number: int) -> bool:
        removed = self._items.pop(item_key(kind, number), None) is not None
        if removed:
            self._changed()
        return removed

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self._meta.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        json.dumps(value)  # what the file could not store fails here, as in `State`
        self._meta[key] = value
        self._changed()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        before = (dict(self._items), dict(self._meta)) if self._depth == 0 else None
        self._depth += 1
        try:
            yield
        except BaseException:
            if before is not None:  # undone, as `State.batch` does
                self._items, self._meta = before
            raise
        finally:
            self._depth -= 1
            if self._depth == 0 and self._dirty:
                self.save()

    def save(self) -> None:
        self.writes += 1
        self._dirty = False

    def close(self) -> None:
        self.closed = True

    def _changed(self) -> None:
        self._dirty = True
        if self._depth == 0:
            self.save()
