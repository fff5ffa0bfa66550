"""Benchmark: how soon the daemon acts on a label or a `/merge`, with webhooks and by polling.

The real daemon, started as users start it (`python -m scripts.orchestrator.main serve`, in a
process of its own, SERVE_PORT=0, POLL_INTERVAL=60 as by default, MAX_CONCURRENT=8), watches
the fake GitHub on 127.0.0.1 (in this process), with real git repositories, the bundled Claude
Code CLI on the scripted model (no reply delay) and bubblewrap around the pre-merge command.
Two kinds of event, interleaved in a random order and spaced by random gaps (fixed seed):

- label-to-Claude-start: from a writer adding `ready` to an issue (just before the fake's
  `add_labels` call) to the scripted model receiving that issue's first conversation turn (its
  prompt contains `Implement GitHub issue #N`; the model's own arrival time). The issue's
  script is one text turn that changes nothing, so each run ends at once ("no changes") and
  opens no pull request to review.
- `/merge`-to-checks-start: from a writer's `/merge <head sha>` comment on a pull request (just
  before the fake's `comment` call) to the start of its pre-merge command inside the sandbox.
  The command is `pwd > FIFO`, the FIFO in a directory given to the sandbox read-only
  (SANDBOX_READ_PATHS; a FIFO can be opened for writing on a read-only mount); this process
  holds the FIFO open and notes the arrival of each line, whose `merge-N` worktree names the
  pull request. The pull requests are opened before the daemon starts: its first cycle takes
  them as its baseline and reviews none of them.

Mode `webhooks`: the fake delivers every event to the daemon's `/webhook` (signed with
WEBHOOK_SECRET), which wakes its poll loop at once. Mode `polling`: no webhook; the daemon finds
the events at its next poll, one every 60 s. Each event is timed on its own, from its own start.

`--mode both` (the default) runs the two modes at once, each in a process of its own.

Run by hand: `python benchmarks/latency.py` (about 14 minutes; `--events N`, `--mode ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from concurrency import Recorder  # benchmarks/concurrency.py: the fake's answers, timed

from scripts.orchestrator.fakes.fake_github import FakeGitHub, graphql_api
from scripts.orchestrator.fakes.git_world import GitWorld, make_world
from scripts.orchestrator.fakes.model_script import Text
from scripts.orchestrator.fakes.scripted_model import (
    ScriptedModel,
    bundled_cli_path,
    claude_cli_env,
)

EVENTS = 50  # of each kind, in each mode
POLL_INTERVAL = 60.0  # the daemon's default
MAX_CONCURRENT = 8
# Seconds between two events. Each event makes about five GitHub writes (a reaction, comments,
# labels; a merge, a branch deleted), which the daemon spaces 1 s apart, one queue for all,
# and its poll cycle waits in that queue too: closer events wait for each other's writes.
GAPS = (5.0, 9.0)
SEED = 20261205
SECRET = "latency-benchmark-secret"  # noqa: S105 (the fake's and the daemon's, on loopback)
TARGET = 1.0  # p95 with webhooks, seconds
STARTUP = 120.0  # seconds for the daemon's start and first cycle
DRAIN = 180.0  # seconds, after the last event, for its start (a poll, a queue of merges)
STOP_TIMEOUT = 30.0
LABEL, MERGE = "label-to-Claude-start", "/merge-to-checks-start"
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")
WORKTREE = re.compile(r"/merge-(\d+)$")
POLLS = "claude_orchestrator_poll_duration_seconds_count"


def marker(issue: int) -> str:
    return f"Implement GitHub issue #{issue} in this repository"


# -- the checks' start, through a FIFO -----------------------------------------------------------


class Probe:
    """A FIFO the pre-merge command writes its working directory to; each line's arrival time
    (time.monotonic()) by the pull request its `merge-N` worktree names."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.fifo = directory / "checks-started"
        os.mkfifo(self.fifo, 0o666)
        self.starts: dict[int, list[float]] = {}
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Held open for reading and writing: writers never block, the reader never sees EOF.
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    @property
    def command(self) -> str:
        return f"pwd > {self.fifo}"

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if not ready:
                continue
            at = time.monotonic()
            with contextlib.suppress(BlockingIOError):
                pending += os.read(self._fd, 65536)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                path = line.decode(errors="replace").strip()
                found = WORKTREE.search(path)
                with self._lock:
                    if found is None:
                        self.unknown.append(path)
                    else:
                        self.starts.setdefault(int(found.group(1)), []).append(at)

    def first(self, number: int) -> float | None:
        with self._lock:
            return min(self.starts.get(number, [])) if number in self.starts else None


# -- the world and the daemon --------------------------------------------------------------------


@dataclass
class Event:
    kind: str
    number: int  # the issue or pull request
    at: float = 0.0  # time.monotonic() just before the fake's call
    started: float | None = None  # Claude's first turn, or the checks' start

    @property
    def latency(self) -> float | None:
        return None if self.started is None else self.started - self.at


@dataclass
class Scene:
    root: Path
    git: GitWorld
    github: FakeGitHub
    model: ScriptedModel
    probe: Probe
    recorder: Recorder
    heads: dict[int, str] = field(default_factory=dict)  # pull request -> its head

    def prepare(self, events: int) -> None:
        """`events` issues (each with its script) and `events` pull requests (each adding a
        file of its own, so that none conflicts with another once merged)."""
        for n in range(events):
            number = self.github.create_issue(f"Feature {n}", "Add it.", user="alice")
            self.model.script_for(marker(number), [Text("Nothing to change here.")])
        for n in range(events):
            branch = f"topic-{n}"
            self.git.push_branch(branch, {f"change_{n}.py": f"VALUE = {n}\n"}, f"change {n}")
            number = self.github.create_pull(f"Change {n}", branch, user="dave")
            self.heads[number] = self.github.pull(number)["head"]["sha"]

    def env(self, **settings: str) -> dict[str, str]:
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
            "LOG_DIR": str(self.root / "logs"),
            "CLAUDE_CLI_PATH": str(bundled_cli_path()),
            "MAX_TURNS": "10",
            "POLL_INTERVAL": f"{POLL_INTERVAL:g}",
            "MAX_CONCURRENT": str(MAX_CONCURRENT),
            "SERVE_PORT": "0",
            "WEBHOOK_SECRET": SECRET,
            "SHUTDOWN_GRACE": "1",
            "PRE_MERGE_COMMANDS": json.dumps([self.probe.command]),
            "SANDBOX_READ_PATHS": json.dumps([str(self.probe.directory)]),
            **settings,
        }

    def problems(self) -> list[str]:
        found = [f"fake GitHub failed: {e}" for e in self.github.server_errors]
        found += [f"against GitHub's description: {v}" for v in self.github.contract_violations]
        found += [f"fake GitHub lacks {m} {p}" for m, p in self.github.unknown_routes]
        found += [f"scripted model: {e}" for e in self.model.errors]
        found += [f"checks' probe, no worktree in: {p}" for p in self.probe.unknown]
        return found


@contextlib.contextmanager
def scene() -> Iterator[Scene]:
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        root = Path(tmp)
        world = make_world(root / "world")
        recorder = Recorder()
        with (
            recorder.installed(),
            FakeGitHub(world.origin) as github,
            ScriptedModel(exhausted_reply="Done.") as model,
            Probe(root / "probe") as probe,
        ):
            for user in ("alice", "carol"):
                github.set_permission(user, "write")
            for label in ("ready", "claude-failed"):
                github.create_label(label)
            graphql_api.schema()  # the fake's one-off cost (about a second), paid up front
            yield Scene(root, world, github, model, probe, recorder)


class Daemon:
    """`python -m scripts.orchestrator.main serve` in a process group of its own; its log in a
    file. Stopped by its handle: SIGTERM, then SIGKILL to its group after STOP_TIMEOUT."""

    def __init__(self, where: Scene) -> None:
        self.log_file = where.root / "daemon.log"
        with self.log_file.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.orchestrator.main", "serve"],
                cwd=where.root,
                env=where.env(),
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

    def log(self) -> str:
        return self.log_file.read_text()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon ended before {what}:\n{self.tail()}")

    def serving(self) -> str:
        """The daemon's address, once its first poll cycle is over."""
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            self.alive("serving")
            found = SERVING.search(self.log())
            if found is not None and polls(found.group(1)) >= 1:
                return found.group(1)
            time.sleep(0.1)
        raise RuntimeError(f"no first cycle after {STARTUP:.0f}s:\n{self.tail()}")


def polls(url: str) -> float:
    """Poll cycles done so far, from the daemon's /metrics (loopback)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:  # noqa: S310
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(POLLS + " "):
            return float(line.split()[1])
    return 0.0


# -- one run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    mode: str
    events: list[Event]
    polls: float  # poll cycles the daemon did in all
    seconds: float  # from the first event to the last start
    load: list[float]  # the machine's 1-minute load average at each event


def schedule(count: int, mode: str, gaps: tuple[float, float]) -> list[tuple[str, float]]:
    """The events' kinds, in a random order, each with the gap before it (fixed seed)."""
    rng = random.Random(f"{SEED}-{mode}")
    kinds = [LABEL] * count + [MERGE] * count
    rng.shuffle(kinds)
    low, high = gaps
    return [(kind, rng.uniform(low, high)) for kind in kinds]


def measure(mode: str, count: int, gaps: tuple[float, float], log: Path | None) -> Run:
    with scene() as where:
        where.prepare(count)
        issues = iter(range(1, count + 1))
        pulls = iter(sorted(where.heads))
        daemon = Daemon(where)
        try:
            url = daemon.serving()
            if mode == "webhooks":
                where.github.add_webhook(f"{url}/webhook", SECRET)
                where.github.wait_for_deliveries(1)  # the ping
            events: list[Event] = []
            load: list[float] = []
            next_at = time.monotonic()
            for kind, gap in schedule(count, mode, gaps):
                next_at += gap
                time.sleep(max(0.0, next_at - time.monotonic()))
                daemon.alive("the events")
                load.append(os.getloadavg()[0])
                if kind == LABEL:
                    event = Event(kind, next(issues), time.monotonic())
                    where.github.add_labels(event.number, "ready", user="alice")
                else:
                    event = Event(kind, next(pulls), time.monotonic())
                    head = where.heads[event.number]
                    where.github.comment(event.number, f"/merge {head}", user="carol")
                events.append(event)
            deadline = time.monotonic() + DRAIN
            while not all(started(where, e) for e in events):
                daemon.alive("every start")
                if time.monotonic() > deadline:
                    missing = [(e.kind, e.number) for e in events if e.started is None]
                    raise RuntimeError(f"no start for {missing}:\n{daemon.tail()}")
                time.sleep(0.1)
            cycles = polls(url)
        finally:
            code = daemon.stop()
            if log is not None:
                write_timeline(log.with_suffix(f".{mode}.log"), where, daemon, events)
        if code != 0 or where.problems():
            raise RuntimeError(f"the daemon exited {code}; {where.problems()}\n{daemon.tail()}")
        last = max(e.started for e in events if e.started is not None)
        return Run(mode, events, cycles, last - events[0].at, load)


def write_timeline(path: Path, where: Scene, daemon: Daemon, events: Sequence[Event]) -> None:
    """The events, the fake GitHub's answers and the model's turns on one clock (seconds from
    the first event), then the daemon's log: to see what a start waited for."""
    zero = events[0].at if events else 0.0
    lines = [(e.at, f"EVENT {e.kind} #{e.number}") for e in events]
    lines += [(e.started, f"START {e.kind} #{e.number}") for e in events if e.started]
    lines += [(h.at, f"github {h.method} {h.target.split('?')[0]} {h.status}")
              for h in where.recorder.hits]  # fmt: skip
    lines += [(r.received_at, f"model {r.kind.name} {r.conversation}")
              for r in where.model.requests]  # fmt: skip
    text = "\n".join(f"{at - zero:9.3f} {what}" for at, what in sorted(lines))
    path.write_text(f"{text}\n\n{daemon.log()}")


def started(where: Scene, event: Event) -> bool:
    if event.started is None:
        if event.kind == LABEL:
            turns = where.model.main_requests(marker(event.number))
            event.started = min((r.received_at for r in turns), default=None)
        else:
            event.started = where.probe.first(event.number)
    return event.started is not None


# -- the report ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile, linear between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def report(runs: Sequence[Run], *, verbose: bool) -> None:
    print()
    print("| mode | event | n | p50 (s) | p95 (s) | max (s) | min (s) | mean (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        for kind in (LABEL, MERGE):
            values = [e.latency for e in run.events if e.kind == kind and e.latency is not None]
            print(
                f"| {run.mode} | {kind} | {len(values)} | {percentile(values, 50):.2f} "
                f"| {percentile(values, 95):.2f} | {max(values):.2f} | {min(values):.2f} "
                f"| {statistics.fmean(values):.2f} |"
            )
    print()
    for run in runs:
        print(f"- {run.mode}: {run.polls:g} poll cycles, {run.seconds:.0f} s from the first "
              f"event to the last start; 1-minute load average at the events: mean "
              f"{statistics.fmean(run.load):.2f}, "
              f"{min(run.load):.2f}-{max(run.load):.2f}")  # fmt: skip
        if verbose:
            for e in run.events:
                print(f"    {e.at - run.events[0].at:7.2f} {e.kind} #{e.number}: "
                      f"{e.latency if e.latency is not None else float('nan'):.3f} s")  # fmt: skip
    for run in runs:
        if run.mode == "webhooks":
            for kind in (LABEL, MERGE):
                values = [e.latency for e in run.events if e.kind == kind and e.latency]
                p95 = percentile(values, 95)
                verdict = "met" if p95 < TARGET else "missed"
                print(f"Target (p95 under {TARGET:g} s with webhooks), {kind}: {verdict}, "
                      f"{p95:.2f} s")  # fmt: skip


def both(count: int, gaps: tuple[float, float], log: Path | None) -> list[Run]:
    """The two modes at once, each in a process of its own (this script, one mode), so that
    the whole benchmark keeps to about a quarter of an hour; stopped by their handles."""
    timeout = 2 * count * gaps[1] + STARTUP + DRAIN + 120
    with tempfile.TemporaryDirectory(prefix="latency-results-") as tmp:
        children: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        try:
            for mode in ("webhooks", "polling"):
                out = Path(tmp) / f"{mode}.json"
                argv = [sys.executable, __file__, "--mode", mode, "--events", str(count),
                        "--gaps", str(gaps[0]), str(gaps[1]), "--results", str(out),
                        *(["--log", str(log)] if log is not None else [])]  # fmt: skip
                children[mode] = (subprocess.Popen(argv, start_new_session=True), out)
            deadline = time.monotonic() + timeout
            for mode, (child, _) in children.items():
                code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
                if code != 0:
                    raise RuntimeError(f"the {mode} run exited {code}")
        finally:
            for child, _ in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    try:
                        child.wait(timeout=STOP_TIMEOUT * 2)
                    except subprocess.TimeoutExpired:
                        os.killpg(child.pid, signal.SIGKILL)
                        child.wait(timeout=STOP_TIMEOUT)
        runs = []
        for _, out in children.values():
            for run in json.loads(out.read_text()):
                events = [Event(**e) for e in run.pop("events")]
                runs.append(Run(events=events, **run))
        return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=EVENTS, help="of each kind, per mode")
    parser.add_argument("--mode", choices=("webhooks", "polling", "both"), default="both")
    parser.add_argument("--gaps", type=float, nargs=2, default=list(GAPS), metavar=("LOW", "HIGH"),
                        help="seconds between two events, drawn uniformly")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="print every event's latency")
    parser.add_argument("--log", type=Path, help="write each run's timeline and the daemon's "
                        "log to LOG.<mode>.log")  # fmt: skip
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)  # a child's, as JSON
    args = parser.parse_args()
    # A stop (the parent's, or a timeout's) runs the `finally`s: the daemon is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    began = time.monotonic()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    gaps = (args.gaps[0], args.gaps[1])
    if args.mode == "both":
        runs = both(args.events, gaps, args.log)
    else:
        runs = [measure(args.mode, args.events, gaps, args.log)]
        print(f"measured {args.mode}; load average {os.getloadavg()}", flush=True)
    if args.results is not None:
        args.results.write_text(json.dumps([dataclasses.asdict(run) for run in runs]))
        return
    report(runs, verbose=args.verbose)
    print(f"\n(the whole benchmark took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
