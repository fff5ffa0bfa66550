"""Benchmark: N ready issues at MAX_CONCURRENT 1, 2 and 4, and the daemon's resident memory.

Concurrency: the real daemon, started as users start it (`python -m scripts.orchestrator.main`
in a process of its own, POLL_INTERVAL=60 as by default), implements N issues labelled ready
against the fake GitHub on 127.0.0.1 (in this process), real git repositories and the bundled
Claude Code CLI, whose model is the scripted one answering every conversation turn after a
fixed latency (each issue is two turns: write a file, then the summary). The wall time from the
daemon's start to the last pull request opened is compared with the ideal, N / MAX_CONCURRENT
x the model's time per issue; then the daemon is stopped (SIGTERM). It keeps its default
spacing of 1 s between GitHub writes, shared by every job. (Not `--once`: it starts at most
2 x MAX_CONCURRENT implementations and reviews in its one cycle.)

Memory: the daemon started without `--once` (POLL_INTERVAL=1, MAX_CONCURRENT=4); VmRSS and
VmHWM of its own process (`/proc/<pid>/status`, not its Claude CLI children) after idle cycles,
while N issues are implemented and their pull requests reviewed, and after; and the RSS of the
Claude CLI processes for context.

Run by hand: `python benchmarks/concurrency.py` (about 17 minutes; with `--latencies 2`, 3).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from scripts.orchestrator.fakes.fake_github import FakeGitHub, graphql_api
from scripts.orchestrator.fakes.fake_github.app import App, RawResponse
from scripts.orchestrator.fakes.git_world import GitWorld, make_world
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.fakes.scripted_model import (
    ScriptedModel,
    bundled_cli_path,
    claude_cli_env,
)

# Twice the largest MAX_CONCURRENT: at 4 slots two waves, as a team's queue deeper than its
# slots makes; with one wave, the start and the second between 4 pull requests' writes are the
# whole difference (run `--issues 4` for that case).
ISSUES = 8
LATENCIES = (2.0, 30.0)  # seconds per model turn
CONCURRENCY = (1, 2, 4)
TURNS = 2  # model turns per issue: the `Write`, then the summary
TARGET = 0.10  # within 10 % of the ideal at 30 s
WRITE_SPACING = 1.0  # the daemon's default seconds between two GitHub writes (not changed)

MEMORY_LATENCY = 3.0  # per model turn in the memory run: long enough to sample the peak
MEMORY_CONCURRENCY = 4
IDLE_CYCLES = 10  # before the idle figure, and again after the work
POLL_INTERVAL = 1.0  # in the memory run
POLL_DEFAULT = 60.0  # in the concurrency runs: the daemon's default
SAMPLE_EVERY = 0.2  # seconds between two readings of /proc
DEADLINE = 120.0  # seconds, beyond the ideal, for any wait
STOP_TIMEOUT = 30.0
REVIEW = "The change is small and fine.\n\nVERDICT: COMMENT"
CLI_NAME = "claude"  # the bundled CLI's process name (`/proc/<pid>/comm`)
READS = frozenset({"GET", "HEAD", "OPTIONS"})  # as the daemon's write spacing counts them


# -- what the fake GitHub answered, and when -----------------------------------------------------


@dataclass(frozen=True)
class Hit:
    at: float  # time.monotonic() when the answer was ready
    method: str
    target: str  # path and query
    status: int

    @property
    def spaced(self) -> bool:
        """A request the daemon's write spacing holds to one a second (GraphQL queries too)."""
        return self.method not in READS

    @property
    def pull_opened(self) -> bool:
        return self.method == "POST" and self.target.split("?")[0].endswith("/pulls")

    @property
    def review_posted(self) -> bool:
        return self.method == "POST" and self.target.split("?")[0].endswith("/reviews")

    @property
    def comment_feed(self) -> bool:
        """The repository's comment feed, read once in every cycle."""
        return self.method == "GET" and self.target.split("?")[0].endswith("/issues/comments")


class Recorder:
    """Every request the fake answers, with the time of its answer."""

    def __init__(self) -> None:
        self._hits: list[Hit] = []
        self._lock = threading.Lock()

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        handle = App.handle

        def timed(
            app: App, method: str, target: str, headers: Mapping[str, str], raw_body: bytes
        ) -> RawResponse:
            response = handle(app, method, target, headers, raw_body)
            with self._lock:
                self._hits.append(Hit(time.monotonic(), method, target, response.status))
            return response

        with mock.patch.object(App, "handle", timed):
            yield

    def count(self, attribute: str, since: float = 0.0) -> int:
        return sum(1 for h in self.hits if h.at >= since and getattr(h, attribute))


# -- resident memory, from /proc -----------------------------------------------------------------


def status_kib(pid: int, *fields: str) -> tuple[int, ...]:
    """`fields` (e.g. VmRSS) of /proc/<pid>/status, in KiB; 0 for a process that is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return tuple(0 for _ in fields)
    values = dict(line.split(":", 1) for line in lines if ":" in line)
    return tuple(int(values.get(name, "0 kB").split()[0]) for name in fields)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (found by their parents in /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Sample:
    at: float
    rss: int  # KiB, the daemon's own
    hwm: int  # KiB, its high-water mark so far
    clis: tuple[tuple[int, int], ...]  # (pid, VmRSS in KiB) of each Claude CLI below it


class Sampler:
    """Reads the daemon's memory (and its Claude CLIs') every SAMPLE_EVERY seconds."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, hwm = status_kib(self.pid, "VmRSS", "VmHWM")
            if rss == 0:
                return  # the daemon is gone
            clis = tuple(
                (child, status_kib(child, "VmRSS")[0])
                for child in descendants(self.pid)
                if process_name(child) == CLI_NAME
            )
            self.samples.append(Sample(time.monotonic(), rss, hwm, clis))
            self._stop.wait(SAMPLE_EVERY)

    def between(self, start: float, end: float = float("inf")) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.at <= end]


# -- the world and the daemon --------------------------------------------------------------------


@dataclass
class Scene:
    root: Path
    git: GitWorld
    github: FakeGitHub
    model: ScriptedModel
    recorder: Recorder
    issues: list[int] = field(default_factory=list)

    def add_issues(self, count: int) -> None:
        """`count` issues, each with its script, labelled ready by a writer."""
        for _ in range(count):
            number = self.github.create_issue(
                f"Add feature {len(self.issues) + 1}", "Add a module for it.", user="alice"
            )
            name = f"feature_{number}.py"
            self.model.script_for(
                f"Implement GitHub issue #{number} in this repository",
                [write({name: f"FEATURE = {number}\n"}), Text(f"Added `{name}`.")],
            )
            self.github.add_labels(number, "ready", user="alice")
            self.issues.append(number)

    def env(self, **settings: str) -> dict[str, str]:
        """The daemon's environment, as the test world's `run_cli` builds it."""
        home = self.root / "claude-home"
        home.mkdir(exist_ok=True)
        return {
            **claude_cli_env(self.model.url, home),
            "PATH": os.environ.get("PATH", ""),
            "GITHUB_REPO": self.github.full_name,
            "GITHUB_TOKEN": self.github.token,
            "GITHUB_API_URL": self.github.url,
            "REPO_PATH": str(self.git.clone),
            "WORKTREE_BASE": str(self.root / "worktrees"),
            "STATE_FILE": str(self.root / "state.json"),
            "CLAUDE_CLI_PATH": str(bundled_cli_path()),
            "MAX_TURNS": "10",
            **settings,
        }

    def problems(self) -> list[str]:
        found = [f"fake GitHub failed: {e}" for e in self.github.server_errors]
        found += [f"against GitHub's description: {v}" for v in self.github.contract_violations]
        found += [f"fake GitHub lacks {m} {p}" for m, p in self.github.unknown_routes]
        found += [f"scripted model: {e}" for e in self.model.errors]
        return found


@contextlib.contextmanager
def scene(latency: float) -> Iterator[Scene]:
    with tempfile.TemporaryDirectory(prefix="concurrency-") as tmp:
        root = Path(tmp)
        world = make_world(root / "world")
        recorder = Recorder()
        with (
            recorder.installed(),
            FakeGitHub(world.origin) as github,
            ScriptedModel(reply_delay=latency, exhausted_reply=REVIEW) as model,
        ):
            github.set_permission("alice", "write")
            for label in ("ready", "claude-failed"):
                github.create_label(label)
            # The fake reads GitHub's GraphQL schema at its first query (about a second):
            # the fake's cost, not the daemon's, so paid before the daemon's time starts.
            graphql_api.schema()
            yield Scene(root, world, github, model, recorder)


class Daemon:
    """`python -m scripts.orchestrator.main [args]` in a process group of its own; its log in
    a file. Stopped by its handle: SIGTERM, then SIGKILL to its group after STOP_TIMEOUT."""

    def __init__(self, where: Scene, *args: str, **settings: str) -> None:
        self.log_file = where.root / "daemon.log"
        self.started = time.monotonic()
        with self.log_file.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.orchestrator.main", *args],
                cwd=where.root,
                env=where.env(**settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text().splitlines()[-lines:])


def wait_until(what: str, done: Callable[[], bool], timeout: float, daemon: Daemon) -> float:
    """Poll `done()` until it is true; the time it became true."""
    deadline = time.monotonic() + timeout
    while not done():
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"the daemon ended before {what}:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout:.0f}s:\n{daemon.tail()}")
        time.sleep(0.05)
    return time.monotonic()


# -- concurrency ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    latency: float
    concurrency: int
    issues: int
    poll: float  # POLL_INTERVAL
    pulls: list[float]  # seconds from the daemon's start to each pull request opened
    first_request: float  # to the first request that reached GitHub (the start-up)
    run_starts: list[float]  # to each Claude run's first model turn, earliest first
    turn_starts: list[float]  # every model turn's request
    spaced_before: int  # spaced requests (writes, GraphQL) up to the last pull request
    polls: int  # poll cycles begun up to the last pull request
    clis: int  # most Claude CLI processes seen at once
    timeline: list[str]  # the spaced requests and the daemon's log, for --verbose

    @property
    def ideal(self) -> float:
        return self.issues / self.concurrency * TURNS * self.latency

    @property
    def wall(self) -> float:
        return max(self.pulls)

    @property
    def slots_busy(self) -> float:
        """When the last slot's first run asked its first turn: every slot busy from then."""
        return self.run_starts[min(self.concurrency, self.issues) - 1]


def implement(issues: int, latency: float, concurrency: int, poll: float) -> Run:
    """The daemon, started with `issues` ready issues, until the last pull request opens;
    then it is stopped (SIGTERM) by its handle."""
    with scene(latency) as where:
        where.add_issues(issues)
        daemon = Daemon(
            where,
            POLL_INTERVAL=f"{poll:g}",
            MAX_CONCURRENT=str(concurrency),
            SHUTDOWN_GRACE="1",  # the reviews of the opened pull requests are not waited for
        )
        recorder = where.recorder
        try:
            with Sampler(daemon.proc.pid) as sampler:
                wait_until("pull requests", lambda: recorder.count("pull_opened") >= issues,
                           issues * (TURNS * latency + poll) + DEADLINE, daemon)  # fmt: skip
        finally:
            code = daemon.stop()
        start = daemon.started
        hits = [h for h in recorder.hits if h.at >= start]
        opened = [h.at - start for h in hits if h.pull_opened and h.status == 201]
        # The implementations' turns; the reviews of the opened pull requests are not counted.
        requests = [r for r in where.model.main_requests() if r.conversation != "default"]
        turns = sorted(r.received_at - start for r in requests)
        runs: dict[str | None, float] = {}
        for r in requests:  # a conversation is one issue's Claude run
            runs[r.conversation] = min(runs.get(r.conversation, r.received_at), r.received_at)
        counts = (len(opened), len(runs), len(turns))
        if code != 0 or counts != (issues, issues, issues * TURNS) or where.problems():
            raise RuntimeError(
                f"exit {code}; pull requests, Claude runs and model turns {counts} for "
                f"{issues} issues; {where.problems()}\n{daemon.tail()}"
            )
        last = start + max(opened)
        spaced = [f"{h.at - start:6.2f} {h.method} {h.target.split('?')[0]} {h.status}"
                  for h in hits if h.spaced and h.at <= last]  # fmt: skip
        return Run(
            latency=latency,
            concurrency=concurrency,
            issues=issues,
            poll=poll,
            pulls=sorted(opened),
            first_request=hits[0].at - start,
            run_starts=sorted(at - start for at in runs.values()),
            turn_starts=turns,
            spaced_before=len(spaced),
            polls=sum(1 for h in hits if h.comment_feed and h.at <= last),
            clis=max((len(s.clis) for s in sampler.between(start, last)), default=0),
            timeline=[*spaced, *daemon.log_file.read_text().splitlines()],
        )


# -- memory --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    idle: list[Sample]  # the last idle cycles before work
    work: list[Sample]  # from the labels to the last review
    after: list[Sample]  # idle cycles after the work
    work_seconds: float
    end_hwm: int  # KiB


def memory(issues: int) -> Memory:
    with scene(MEMORY_LATENCY) as where:
        daemon = Daemon(
            where,
            POLL_INTERVAL=str(POLL_INTERVAL),
            MAX_CONCURRENT=str(MEMORY_CONCURRENCY),
            SHUTDOWN_GRACE="5",
        )
        recorder = where.recorder
        try:
            with Sampler(daemon.proc.pid) as sampler:
                wait_until("idle cycles", lambda: recorder.count("comment_feed") >= IDLE_CYCLES,
                           DEADLINE, daemon)  # fmt: skip
                idle_from = time.monotonic() - IDLE_CYCLES / 2 * POLL_INTERVAL
                idle_to = time.monotonic()
                where.add_issues(issues)
                busy = time.monotonic()
                deadline = issues * TURNS * MEMORY_LATENCY * 3 + DEADLINE
                wait_until("pull requests", lambda: recorder.count("pull_opened") >= issues,
                           deadline, daemon)  # fmt: skip
                quiet = wait_until("reviews", lambda: recorder.count("review_posted") >= issues,
                                   deadline, daemon)  # fmt: skip
                # The outcome comments and label removals that follow the last pull request.
                time.sleep(2 * POLL_INTERVAL)
                after = time.monotonic()
                wait_until("idle cycles after the work",
                           lambda: recorder.count("comment_feed", after) >= IDLE_CYCLES,
                           DEADLINE, daemon)  # fmt: skip
                end = time.monotonic()
                time.sleep(2 * SAMPLE_EVERY)
        finally:
            code = daemon.stop()
        if code != 0 or where.problems():
            raise RuntimeError(f"the daemon exited {code}; {where.problems()}\n{daemon.tail()}")
        samples = sampler.samples
        return Memory(
            idle=sampler.between(idle_from, idle_to),
            work=sampler.between(busy, quiet),
            after=sampler.between(after, end),
            work_seconds=quiet - busy,
            end_hwm=samples[-1].hwm,
        )


# -- the report ----------------------------------------------------------------------------------


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def report_runs(runs: Sequence[Run], *, verbose: bool) -> None:
    print()
    print(f"POLL_INTERVAL={runs[0].poll:g}, {runs[0].issues} issues, "
          f"{WRITE_SPACING:g} s between GitHub writes (the daemon's default)")  # fmt: skip
    print()
    print("| model turn (s) | MAX_CONCURRENT | ideal (s) | last PR (s) | over ideal "
          "| first request (s) | first model turn (s) | every slot busy (s) "
          "| spaced requests to last PR | floor: first request + spaced x 1 s (s) "
          "| polls | Claude CLIs at once |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        over = r.wall / r.ideal - 1
        floor = r.first_request + (r.spaced_before - 1) * WRITE_SPACING
        print(
            f"| {r.latency:g} | {r.concurrency} | {r.ideal:.0f} | {r.wall:.1f} | {over:+.0%} "
            f"| {r.first_request:.1f} | {r.run_starts[0]:.1f} | {r.slots_busy:.1f} "
            f"| {r.spaced_before} | {floor:.1f} | {r.polls} | {r.clis} |"
        )
    print()
    print("Seconds from the daemon's start:")
    for r in runs:
        pulls = ", ".join(f"{p:.1f}" for p in r.pulls)
        firsts = ", ".join(f"{t:.1f}" for t in r.run_starts)
        turns = ", ".join(f"{t:.1f}" for t in r.turn_starts)
        print(f"- {r.latency:g} s x{r.concurrency}: pull requests opened {pulls}; "
              f"each run's first turn {firsts}; every turn {turns}")  # fmt: skip
        if verbose:
            print("\n".join(f"    {line}" for line in r.timeline))
    at_30 = [r for r in runs if r.latency >= 30]
    if at_30:
        worst = max(r.wall / r.ideal - 1 for r in at_30)
        verdict = "met" if worst <= TARGET else "missed"
        print(f"\nTarget (within {TARGET:.0%} of the ideal at 30 s): {verdict}, "
              f"worst {worst:+.1%}")  # fmt: skip


def spread(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return mib(low) if mib(low) == mib(high) else f"{mib(low)}-{mib(high)}"


def report_memory(m: Memory) -> None:
    work_clis = [[kib for _, kib in s.clis] for s in m.work if s.clis]
    peaks: dict[int, int] = {}  # each Claude CLI process's highest VmRSS
    for s in m.work:
        for pid, kib in s.clis:
            peaks[pid] = max(peaks.get(pid, 0), kib)
    print()
    print(f"Memory: POLL_INTERVAL={POLL_INTERVAL:g}, MAX_CONCURRENT={MEMORY_CONCURRENCY}, "
          f"{MEMORY_LATENCY:g} s a model turn; work took {m.work_seconds:.1f} s")  # fmt: skip
    print()
    print("| daemon process | VmRSS (MiB) | VmHWM (MiB) |")
    print("|---|---:|---:|")
    print(f"| idle, after {IDLE_CYCLES} cycles | {spread([s.rss for s in m.idle])} "
          f"| {mib(m.idle[-1].hwm)} |")  # fmt: skip
    print(f"| while the Claude runs go (peak) | {mib(max(s.rss for s in m.work))} "
          f"| {mib(m.work[-1].hwm)} |")  # fmt: skip
    print(f"| idle again, {IDLE_CYCLES} cycles after the work | {spread([s.rss for s in m.after])} "
          f"| {mib(m.end_hwm)} |")  # fmt: skip
    if peaks:
        low, high = min(peaks.values()), max(peaks.values())
        print(f"| one Claude CLI process, its peak ({len(peaks)} processes) "
              f"| {mib(low)}-{mib(high)} | |")  # fmt: skip
        print(f"| all Claude CLI processes at once (most: {max(len(c) for c in work_clis)}) "
              f"| {mib(max(sum(c) for c in work_clis))} | |")  # fmt: skip
    idle = max(s.rss for s in m.idle) * 1024 / 1e6  # MB
    verdict = "met" if idle < 100 else "missed"
    print(f"\nTarget (idle under 100 MB): {verdict}, {idle:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=ISSUES)
    parser.add_argument("--latencies", type=float, nargs="*", default=list(LATENCIES))
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--poll-interval", type=float, default=POLL_DEFAULT,
                        help="POLL_INTERVAL of the concurrency runs")  # fmt: skip
    parser.add_argument("--no-memory", action="store_true", help="skip the memory run")
    parser.add_argument("--verbose", action="store_true",
                        help="print each run's spaced requests and the daemon's log")  # fmt: skip
    args = parser.parse_args()
    started = time.monotonic()
    if not args.no_memory:
        report_memory(memory(args.issues))
    runs = []
    for latency in args.latencies:
        for concurrency in args.concurrency:
            runs.append(implement(args.issues, latency, concurrency, args.poll_interval))
            print(f"measured {latency:g} s x{concurrency}: last pull request at "
                  f"{runs[-1].wall:.1f} s", flush=True)  # fmt: skip
    if runs:
        report_runs(runs, verbose=args.verbose)
    print(f"\n(the whole benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
