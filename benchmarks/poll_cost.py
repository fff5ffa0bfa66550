"""Benchmark: what one idle poll cycle costs, for 0 to 1,000 open pull requests and 500 issues.

Per cycle: the requests that reached GitHub (the fake), how many were not answered 304, the
cycle's wall time and the client's CPU time. The daemon's client (`GitHubClient` with the
listings view and the HTTP cache kept beside the state) is measured warm (the same client,
after warm-up cycles) and after a restart (a new client on the same files); the client as it
was before (no view, answers cached in memory only, and a cycle that lists the ready issues,
the open pull requests twice and the new comments) is measured the same way for comparison.

The fake GitHub runs in a process of its own, so the CPU time is the client's alone; the
fake's time answering (its handling of each request, git included) is shown as the part of
the wall time that stands for GitHub's. Its clock advances 60 s before each cycle, as a poll
interval would. Run by hand: `python benchmarks/poll_cost.py` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from unittest import mock

from scripts.orchestrator.fakes.fake_github import FakeClock, FakeGitHub
from scripts.orchestrator.fakes.fake_github.app import App
from scripts.orchestrator.fakes.fake_github.contract import Contract
from scripts.orchestrator.fakes.git_world import git, git_env, make_world
from scripts.orchestrator.github_cache import cache_file
from scripts.orchestrator.github_http import RetryPolicy
from scripts.orchestrator.github_view import ListingView, listings_file
from scripts.orchestrator.github_watcher import GitHubClient

SIZES = (0, 50, 200, 1_000)  # open pull requests
ISSUES = 500  # open issues, every READY_EVERY-th of them labelled READY
READY_EVERY = 10
READY = "ready"
COMMENTS = 20  # on the first issues, a second apart; the feed's cursor stays at the newest
POLL_INTERVAL = 60.0  # seconds on the fake's clock between two cycles
AGE = 3600.0  # the world is this old (fake clock) when a client first looks at it
RETRY = RetryPolicy(base_delay=0.01, secondary_delay=0.01, max_wait=1.0)

Log = list[tuple[str, str, int]]  # method, path, status


# -- the fake GitHub, in a process of its own ---------------------------------------------------


def add_pulls(fake: FakeGitHub, origin: Path, first: int, count: int) -> None:
    """`count` pull requests, each from its own branch with one commit of its own. The commits
    and branches are made by one `git fast-import`, not one clone-commit-push each."""
    base = git(origin, "rev-parse", f"refs/heads/{fake.default_branch}")
    when = int(fake.clock.now().timestamp())
    stream = bytearray()
    for n in range(first, first + count):
        message = f"Change {n}\n".encode()
        content = f"change {n}\n".encode()
        stream += (
            f"commit refs/heads/topic-{n}\n"
            f"committer World <world@example.invalid> {when} +0000\n"
            f"data {len(message)}\n"
        ).encode() + message
        stream += f"from {base}\nM 100644 inline topic-{n}.txt\ndata {len(content)}\n".encode()
        stream += content + b"\n"
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=origin,
        env=git_env(),
        input=bytes(stream),
        capture_output=True,
        check=True,
        timeout=300,
    )
    for n in range(first, first + count):
        fake.create_pull(f"Change {n}", f"topic-{n}", user="alice")


def serve_fake(conn: Connection, root: str) -> None:
    """Build the world, start the fake, and answer the benchmark's commands over `conn`."""
    world = make_world(Path(root) / "world")
    handling = [0.0]  # seconds the fake spent answering, since the last "clear"
    handle = App.handle

    def timed_handle(app: App, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return handle(app, *args)
        finally:
            handling[0] += time.perf_counter() - started

    # The fake checks every request against GitHub's description, as in the tests; checking
    # its own replies (up to 0.1 s per page of 100, see contract_checks.py) is the test
    # world's cost, not GitHub's, so it is left out of the response time.
    with (
        mock.patch.object(Contract, "check_response", lambda *_args: None),
        mock.patch.object(App, "handle", timed_handle),
        FakeGitHub(world.origin, clock=FakeClock()) as fake,
    ):
        for n in range(ISSUES):
            labels = [READY] if n % READY_EVERY == 0 else []
            fake.create_issue(f"Issue {n}", "body", user="bob", labels=labels)
        for n in range(COMMENTS):
            fake.advance(1)
            fake.comment(n + 1, f"comment {n}", user="bob")
        cursor = fake.clock.now() - timedelta(seconds=1)  # the feed's, after its last cycle
        fake.advance(AGE)
        conn.send((fake.url, fake.token, fake.full_name, cursor))
        pulls = 0
        while True:
            command, arg = conn.recv()
            if command == "pulls":  # grow to `arg` open pull requests, then let time pass
                add_pulls(fake, world.origin, pulls, arg - pulls)
                pulls = arg
                fake.advance(AGE)
                conn.send(None)
            elif command == "advance":
                fake.advance(arg)
                conn.send(None)
            elif command == "clear":
                fake.clear_logs()
                handling[0] = 0.0
                conn.send(None)
            elif command == "log":
                log = [(r.method, r.path, r.status) for r in fake.requests]
                conn.send((log, handling[0]))
            elif command == "stop":
                conn.send((fake.contract_violations, fake.server_errors))
                return


class Fake:
    """The benchmark's handle on the fake in the other process."""

    def __init__(self, root: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve_fake, args=(child, str(root)), daemon=True)
        self._process.start()
        child.close()  # so that a fake that dies ends `recv` with EOFError, not a hang
        self.url, self.token, self.full_name, self.comments_cursor = self._conn.recv()

    def call(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def stop(self) -> tuple[list[str], list[str]]:
        problems: tuple[list[str], list[str]] = self.call("stop")
        self._process.join(10)
        return problems


# -- the clients and their cycles ---------------------------------------------------------------


def new_client(fake: Fake, home: Path) -> GitHubClient:
    """As the daemon builds it: answers kept beside the state, and the view beside them."""
    state = home / "state.json"
    return GitHubClient(
        fake.token,
        fake.full_name,
        api_url=fake.url,
        retry=RETRY,
        write_interval=0,
        cache_path=cache_file(state, fake.token),
        view=ListingView(listings_file(state), READY),
    )


def old_client(fake: Fake, _home: Path) -> GitHubClient:
    """As before: no view, answers cached in memory only."""
    return GitHubClient(fake.token, fake.full_name, api_url=fake.url, retry=RETRY, write_interval=0)


async def new_cycle(gh: GitHubClient, cursor: datetime) -> None:
    """A cycle's reads now: what changed, then the new comments."""
    await gh.refresh_view()
    await gh.list_repo_comments(since=cursor)


async def old_cycle(gh: GitHubClient, cursor: datetime) -> None:
    """A cycle's reads before: the ready issues, the open pull requests (the review and the
    head-watching workflows each listed them), then the new comments."""
    await gh.list_open_issues(READY)
    await gh.list_open_pulls()
    await gh.list_open_pulls()
    await gh.list_repo_comments(since=cursor)


@dataclass(frozen=True)
class Cycle:
    log: Log
    wall_ms: float
    cpu_ms: float
    fake_ms: float  # of the wall time, the fake's answering (it stands for GitHub's)

    @property
    def requests(self) -> int:
        return len(self.log)

    @property
    def not_304(self) -> int:
        return sum(status != 304 for _, _, status in self.log)


Cycler = Callable[[GitHubClient, datetime], Awaitable[None]]


async def timed(fake: Fake, gh: GitHubClient, cycle: Cycler) -> Cycle:
    fake.call("advance", POLL_INTERVAL)
    fake.call("clear")
    wall, cpu = time.perf_counter(), time.process_time()
    await cycle(gh, fake.comments_cursor)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    log, fake_wall = fake.call("log")
    return Cycle(log, wall * 1e3, cpu * 1e3, fake_wall * 1e3)


@dataclass(frozen=True)
class Row:
    pulls: int
    client: str
    phase: str
    cycles: list[Cycle]


async def measure(
    fake: Fake,
    pulls: int,
    home: Path,
    make: Callable[[Fake, Path], GitHubClient],
    cycle: Cycler,
    args: argparse.Namespace,
) -> tuple[list[Cycle], list[Cycle], list[int]]:
    """Warm cycles of one client, then the first cycle of each of `restarts` new clients
    on the same files; and the status of the start-up read of the repository after each
    restart."""
    async with make(fake, home) as gh:
        await gh.access()  # a start-up check, so that its answer is kept too
        for _ in range(args.warm_up):
            fake.call("advance", POLL_INTERVAL)
            await cycle(gh, fake.comments_cursor)
        warm = [await timed(fake, gh, cycle) for _ in range(args.cycles)]
        check(pulls, await gh.list_open_pulls(), await gh.list_open_issues(READY))
    restarted, startup = [], []
    for _ in range(args.restarts):
        async with make(fake, home) as gh:
            fake.call("clear")
            await gh.access()
            startup += [status for _, _, status in fake.call("log")[0]]
            restarted.append(await timed(fake, gh, cycle))
            check(pulls, await gh.list_open_pulls(), await gh.list_open_issues(READY))
    return warm, restarted, startup


def check(pulls: int, listed: Sequence[object], ready: Sequence[object]) -> None:
    """The control: what the client lists is the world (after the timed cycle, untimed)."""
    wanted = (pulls, ISSUES // READY_EVERY)
    if (len(listed), len(ready)) != wanted:
        raise RuntimeError(
            f"listed {len(listed)} pulls and {len(ready)} ready issues, not {wanted}"
        )


async def run(fake: Fake, root: Path, args: argparse.Namespace) -> list[Row]:
    rows = []
    for pulls in args.sizes:
        started = time.perf_counter()
        fake.call("pulls", pulls)
        built = time.perf_counter() - started
        for name, make, cycle in (
            ("now", new_client, new_cycle),
            ("before", old_client, old_cycle),
        ):
            home = root / f"{name}-{pulls}"
            warm, restarted, startup = await measure(fake, pulls, home, make, cycle, args)
            rows += [Row(pulls, name, "warm", warm), Row(pulls, name, "restart", restarted)]
            if args.verbose:
                for phase, cycles in (("warm", warm), ("restart", restarted)):
                    for c in cycles:
                        print(f"  {pulls} {name} {phase}: {c.log}")
                print(f"  {pulls} {name} start-up read after restarts: {startup}")
            if name == "now" and any(status != 304 for status in startup):
                print(f"note: {pulls} PRs: start-up read after a restart answered {startup}")
        print(f"measured {pulls} open PRs (world grown in {built:.1f} s)", flush=True)
    return rows


# -- the report ---------------------------------------------------------------------------------


def spread(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f}"


def report(rows: list[Row]) -> None:
    print()
    print("| open PRs | client | phase | requests | not 304 | wall (ms) | of it, GitHub (ms) "
          "| client CPU (ms) |")  # fmt: skip
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        cycles = row.cycles
        print(
            f"| {row.pulls:,} | {row.client} | {row.phase} "
            f"| {spread([c.requests for c in cycles])} | {spread([c.not_304 for c in cycles])} "
            f"| {median([c.wall_ms for c in cycles])} | {median([c.fake_ms for c in cycles])} "
            f"| {median([c.cpu_ms for c in cycles])} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--warm-up", type=int, default=3, help="cycles before the warm ones")
    parser.add_argument("--cycles", type=int, default=5, help="warm cycles measured")
    parser.add_argument("--restarts", type=int, default=3, help="restarts, one cycle each")
    parser.add_argument("--verbose", action="store_true", help="print each cycle's requests")
    args = parser.parse_args()
    if sorted(args.sizes) != args.sizes:
        parser.error("--sizes must grow: the world only gains pull requests")
    with tempfile.TemporaryDirectory(prefix="poll-cost-") as tmp:
        root = Path(tmp)
        fake = Fake(root)
        try:
            rows = asyncio.run(run(fake, root, args))
        finally:
            violations, errors = fake.stop()
    report(rows)
    if violations or errors:
        print(f"\nthe fake saw requests against GitHub's description: {violations}; "
              f"it failed on: {errors}")  # fmt: skip


if __name__ == "__main__":
    main()
