"""Benchmark: an organisation's day on 50 repositories, for 1, 2 and 4 daemons.

The real daemons, each started as users start it (`python -m scripts.orchestrator.main` in a
process of its own, with its own folder: WORKTREE_BASE, STATE_FILE, LOG_DIR), share one
PostgreSQL (STATE_URL, also for one daemon), one token and the 50 repositories of GITHUB_REPOS on
one fake GitHub (127.0.0.1, in this process), with the bundled Claude Code CLI in the sandbox on
the scripted model (also in this process). The day's stream, the same for every run (fixed
seed), comes at random times (uniform in the window: a Poisson stream of that many events) on
random repositories: a writer labels an issue `ready` (Claude writes one file in two turns; a
pull request opens), a writer asks `/review <sha>` on a person's pull request (one turn), or
`/merge <sha>` on another (no Claude run); each pull request a daemon opens gets its review (one
turn; REVIEW_ON_PUSH=false only spares later pushes). MAX_CONCURRENT is 2 (the default).

Time is compressed by `--scale` (12): POLL_INTERVAL and LEASE_SECONDS are 60 s / 12 = 5 s, a
model turn `--turn` (60 s) / 12; the day's events come in `--window` seconds. GitHub's write
spacing (1 s per daemon), process starts, git and the CLI's own start are not compressed.
Measured per run: label-to-Claude-start (the benchmark's clock just before the label, the
scripted model's arrival time of the issue's first turn), `/review`-to-Claude-start,
`/merge`-to-merged; items done per hour; every request the fake answered (REST, those not
answered 304, which GitHub charges, GraphQL), by daemon (its User-Agent names its pid); CPU.
One more run (`--kill`, 4 daemons) kills (SIGKILL, its process group) the daemon with the most
Claude runs in progress at the window's middle: when its repositories were taken over, and that
every issue still got exactly one pull request. The idle runs (1 and 4 daemons): 50 idle
repositories at POLL_INTERVAL=60 for `--idle-minutes` (3).

Run by hand: `python benchmarks/organisation.py` (about 24 minutes on 2 cores; `--help` for the
options, `--keep` keeps each run's folder with the daemons' logs).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from latency import percentile  # benchmarks/latency.py
from organisation_fleet import (
    LOOK_EVERY,
    CpuMeter,
    Daemon,
    LeaseLog,
    alive,
    new_database,
    postgres,
    until,
)
from organisation_world import Event, Hit, Org, endpoints, organisation, plan

REPOS = 50
ISSUES, REVIEWS, MERGES = 30, 15, 10  # the day's events
WINDOW = 150.0  # seconds in which they come
SCALE = 12.0  # 60 s of production are 5 s here
TURN = 60.0  # production seconds a model turn takes (TURN / SCALE here)
DAEMONS = (1, 2, 4)
KILL = 4  # daemons of the run where one is killed (0: no such run)
SLOTS = 2  # MAX_CONCURRENT: Claude runs at once per daemon (the default)
IDLE_MINUTES = 3.0
PRODUCTION = 60.0  # POLL_INTERVAL and LEASE_SECONDS by default
BUDGET = 5_000  # GitHub's REST requests per hour per token
SEED = 20261206
START_TIMEOUT = 300.0  # for the daemons' start, every repository held evenly and polled
DRAIN = 900.0  # after the window, for the last item


@dataclass
class Kill:
    pid: int
    at: float
    repos: list[str]  # the repositories it held
    in_flight: int  # its Claude runs on issues, begun and not yet a pull request
    takeovers: list[float] = field(default_factory=list)  # seconds from the kill, per repo
    reruns: int = 0  # issues whose Claude run began twice or more


@dataclass
class Run:
    daemons: int
    startup: float  # from the daemons' start to every repository held evenly, then polled
    repos: int
    events: list[Event] = field(default_factory=list)
    t0: float = 0.0  # the day's first moment
    end: float = 0.0  # its last item done (the idle run: the end of its minutes)
    hits: list[Hit] = field(default_factory=list)  # the fake's answers from t0 to end
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds from t0 to end
    starts: dict[str, list[float]] = field(default_factory=dict)
    done: dict[tuple[str, str, str], float] = field(default_factory=dict)
    twice: list[str] = field(default_factory=list)  # anything done twice
    items: int = 0  # pull requests opened, reviews, merges
    kill: Kill | None = None

    @property
    def hours(self) -> float:
        return (self.end - self.t0) / 3600

    def per_hour(self, hits: Sequence[Hit]) -> float:
        return len(hits) / self.hours

    @property
    def rest(self) -> list[Hit]:
        return [h for h in self.hits if not h.graphql]

    def latency(self, kind: str, to: str) -> list[float]:
        """From each event of `kind` to its Claude run's start ("claude") or its end."""
        if to == "claude":
            return [self.starts[e.marker][0] - e.fired for e in self.events if e.kind == kind]
        return [self.done[e.key] - e.fired for e in self.events if e.kind == kind]


def lease(args: argparse.Namespace) -> float:
    """LEASE_SECONDS of the day's runs: the production default, compressed (3 s at least)."""
    return max(3.0, PRODUCTION / float(args.scale))


def folder(keep: bool) -> contextlib.AbstractContextManager[str]:
    """A temporary folder for a run's world, kept (its path printed) with `--keep`."""
    if not keep:
        return tempfile.TemporaryDirectory(prefix="organisation-")
    path = tempfile.mkdtemp(prefix="organisation-")
    print(f"(the run's world, the daemons' logs and transcripts: {path})", flush=True)
    return contextlib.nullcontext(path)


def balanced(leases: LeaseLog, fleet: list[Daemon], repos: int) -> bool:
    held = leases.now
    counts = Counter(held.values())
    living = {d.pid for d in fleet if d.killed_at is None}
    return (len(held) == repos and set(counts) == living
            and max(counts.values()) <= math.ceil(repos / len(living)))  # fmt: skip


def settle(org: Org, fleet: list[Daemon], leases: LeaseLog) -> float:
    """Until every repository is held, evenly, and had a cycle since; when that was."""
    repos = len(org.repos)
    held = until("every repository held evenly", lambda: balanced(leases, fleet, repos),
                 START_TIMEOUT, fleet)  # fmt: skip

    def polled() -> bool:
        return len({h.repo for h in org.recorder.hits(held) if h.cycle}) == repos

    return until("a cycle of every repository", polled, START_TIMEOUT, fleet)


def measure(args: argparse.Namespace, admin_url: str, count: int, *, kill: bool = False,
            idle: bool = False) -> Run:  # fmt: skip
    """One run: the world, `count` daemons, the day (or idle minutes); all stopped after."""
    name = "idle" if idle else "kill" if kill else "day"
    poll = PRODUCTION if idle else PRODUCTION / args.scale
    with (
        folder(args.keep) as tmp,
        organisation(Path(tmp), args.repos, args.turn / args.scale) as org,
    ):
        counts = {"label": args.issues, "review": args.reviews, "merge": args.merges}
        events = [] if idle else plan(org, args.seed, counts, args.window)
        url = new_database(admin_url, f"{name}_{count}")
        fleet: list[Daemon] = []
        with LeaseLog(url) as leases:
            try:
                begun = time.monotonic()
                fleet += org.start(url, count, poll, PRODUCTION if idle else lease(args), SLOTS)
                run = Run(count, settle(org, fleet, leases) - begun, args.repos, events)
                play(org, run, fleet, leases, args, kill=kill, idle=idle)
            finally:  # all at once: one stopping frees its repositories for the others
                for d in fleet:
                    d.terminate()
                codes = [d.stop() for d in fleet]
        if any(c != 0 for d, c in zip(fleet, codes, strict=True) if d.killed_at is None):
            raise RuntimeError(f"exit codes {codes}:\n" + "\n\n".join(d.tail() for d in fleet))
        problems = org.github.server_errors + org.github.contract_violations + org.model.errors
        if problems:
            raise RuntimeError(f"the fake or the model failed: {problems[:5]}")
        run.twice = org.done_twice()
        return run


def play(org: Org, run: Run, fleet: list[Daemon], leases: LeaseLog, args: argparse.Namespace,
         *, kill: bool, idle: bool) -> None:  # fmt: skip
    """The day's events, each at its time, then until every item is done (or idle minutes)."""
    run.t0 = time.monotonic()
    meter = CpuMeter(fleet)
    for e in run.events:
        while (left := run.t0 + e.at - time.monotonic()) > 0:
            if kill and run.kill is None and time.monotonic() - run.t0 >= args.window / 2:
                run.kill = kill_one(org, run.events, fleet, leases, meter)
            alive("the day's end", fleet)
            time.sleep(min(left, LOOK_EVERY))  # the schedule: the next event's time
        org.fire(e)
    done, recorder = org.recorder.done, org.recorder
    if idle:
        minutes = args.idle_minutes * 60
        until("the idle minutes", lambda: time.monotonic() - run.t0 >= minutes, minutes + 5,
              fleet)  # fmt: skip
    else:
        until("every item done", lambda: all(None not in e.items(recorder) for e in run.events),
              args.drain + args.window, fleet)  # fmt: skip
    run.cpu = meter.read(fleet)
    ends = [at for e in run.events for at in e.items(recorder) if at is not None]
    run.end, run.items = max(ends, default=time.monotonic()), len(ends)
    run.hits, run.starts, run.done = org.recorder.hits(run.t0, run.end), org.starts(), dict(done)
    if run.kill is not None:
        k = run.kill
        k.takeovers = [at - k.at for r in k.repos if (at := leases.taken(r, k.at, k.pid))]
        k.reruns = sum(1 for e in run.events if len(run.starts.get(e.marker, [])) > 1)


def kill_one(
    org: Org, events: list[Event], fleet: list[Daemon], leases: LeaseLog, meter: CpuMeter
) -> Kill:
    """SIGKILL to the group of the daemon with the most Claude runs on issues in progress."""
    held, started, done = leases.now, org.starts(), org.recorder.done
    running = Counter(
        held.get(e.repo)
        for e in events
        if e.kind == "label" and e.marker in started and e.key not in done
    )
    daemon = max(fleet, key=lambda d: running.get(d.pid, 0))
    meter.killing(daemon)
    daemon.kill()
    assert daemon.killed_at is not None
    mine = [r for r, pid in held.items() if pid == daemon.pid]
    return Kill(daemon.pid, daemon.killed_at, mine, running.get(daemon.pid, 0))


# -- the report ----------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> str:
    """p50 / p95 / max."""
    if not values:
        return "-"
    return " / ".join(f"{v:.1f}" for v in (percentile(values, 50), percentile(values, 95),
                                            max(values)))  # fmt: skip


def report_days(runs: Sequence[Run], args: argparse.Namespace) -> None:
    poll = PRODUCTION / args.scale
    print(
        f"\nThe day: {args.issues} ready issues, {args.reviews} `/review`s and {args.merges} "
        f"`/merge`s on {args.repos} repositories in {args.window:g} s; POLL_INTERVAL and "
        f"LEASE_SECONDS {poll:g} s, {args.turn / args.scale:g} s a model turn (time / "
        f"{args.scale:g}: in production {PRODUCTION:g} s and {args.turn:g} s), "
        f"MAX_CONCURRENT={SLOTS} per daemon.\n"
    )
    print("| daemons | start to balanced (s) | last item (s) | items/h | label-to-Claude "
          "p50 / p95 / max (s) | `/review`-to-Claude (s) | `/merge`-to-merged (s) "
          "| label-to-PR (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {name(r)} | {r.startup:.0f} | {r.end - r.t0:.0f} | {r.items / r.hours:,.0f} "
            f"| {spread(r.latency('label', 'claude'))} "
            f"| {spread(r.latency('review', 'claude'))} "
            f"| {spread(r.latency('merge', 'done'))} | {spread(r.latency('label', 'done'))} |"
        )
    print("\nGitHub, in the window (first event to last item), one token for all daemons:\n")
    print(
        "| daemons | REST | REST/h | not 304/h | GraphQL/h | polls per repo-cycle "
        "| cycles per repo-minute | writes per item | not 304 per item | REST by daemon |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        rest, cycles = r.rest, sum(1 for h in r.hits if h.cycle)
        charged = [h for h in rest if h.status != 304]
        by = Counter(h.pid for h in rest)
        share = ", ".join(f"{n / len(rest):.0%}" for _, n in by.most_common())
        print(
            f"| {name(r)} | {len(rest):,} | {r.per_hour(rest):,.0f} "
            f"| {r.per_hour(charged):,.0f} | {r.per_hour([h for h in r.hits if h.graphql]):,.0f} "
            f"| {sum(1 for h in rest if h.poll) / max(cycles, 1):.2f} "
            f"| {cycles / r.repos / (r.hours * 60):.1f} "
            f"| {sum(1 for h in rest if h.write) / r.items:.1f} "
            f"| {len(charged) / r.items:.1f} | {share} |"
        )
    print("\nCPU in the window, of all cores together (100% = every core busy all the time):\n")
    print(
        "| daemons | machine busy | fake GitHub + model (this process) | its git | daemons' own "
        "| their waited-for children (git) | the rest (Claude CLIs in their sandboxes, socat, "
        "PostgreSQL, the kernel) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        c, mine = r.cpu, sum(v for k, v in r.cpu.items() if k not in ("busy", "all"))
        shares = [c[k] / c["all"] for k in ("busy", "bench", "git", "daemons", "children")]
        print(f"| {name(r)} | " + " | ".join(f"{v:.0%}" for v in shares)
              + f" | {(c['busy'] - mine) / c['all']:.0%} |")  # fmt: skip
    for r in runs:
        report_scaled(r, args)
        if args.endpoints:
            print(f"\nRequests by endpoint ({name(r)}): all, not 304, not 304 per item")
            for what, n, paid in endpoints(r.hits):
                print(f"    {what}: {n:,}, {paid:,}, {paid / r.items:.2f}")


def name(run: Run) -> str:
    return f"{run.daemons}, one killed" if run.kill else str(run.daemons)


def report_scaled(r: Run, args: argparse.Namespace) -> None:
    """Production figures from this run's unit costs."""
    charged = sum(1 for h in r.rest if h.status != 304) / r.items
    writes = sum(1 for h in r.rest if h.write) / r.items
    turns = (3 * args.issues + args.reviews) / r.items  # an issue: 2 turns, its review 1
    slots = r.daemons * SLOTS * 3600 / (turns * args.turn)
    print(
        f"\n{name(r)}: {charged:.1f} charged requests per item: {BUDGET:,}/h is "
        f"{BUDGET / charged:,.0f} items/h per token; this day's {r.items} items cost "
        f"{charged * r.items:,.0f} (over 8 hours: {charged * r.items / 8:,.0f}/h). Bounds in "
        f"production: writes (1 s apart per daemon) {r.daemons * 3600 / writes:,.0f} items/h, "
        f"Claude slots ({r.daemons} x {SLOTS}, {turns * args.turn:.0f} s of model per item) "
        f"{slots:,.0f} items/h. Twice: {r.twice or 'nothing'}."
    )
    if r.kill is not None:
        k = r.kill
        print(
            f"Killed pid {k.pid} at {k.at - r.t0:.0f} s with {len(k.repos)} repositories and "
            f"{k.in_flight} Claude runs on issues in progress; taken over after "
            f"{spread(k.takeovers)} s (p50 / p95 / max; {len(k.takeovers)} of {len(k.repos)}); "
            f"issues whose run began again: {k.reruns}."
        )
        theirs = [e for e in r.events if e.kind == "label" and e.fired < k.at]
        mine = [r.done[e.key] - e.fired for e in theirs if e.repo in k.repos]
        others = [r.done[e.key] - e.fired for e in theirs if e.repo not in k.repos]
        print(
            f"Issues labelled before the kill, label-to-PR (p50 / p95 / max): on its "
            f"repositories {spread(mine)} s, on the others {spread(others)} s. Bound: a lease "
            f"ends {lease(args):g} s after its last renewal (every third of that), and another "
            f"daemon takes it at its next round (every third too): 2/3 to 4/3 x LEASE_SECONDS."
        )


def report_idle(runs: Sequence[Run], args: argparse.Namespace) -> None:
    print(f"\nIdle: POLL_INTERVAL={PRODUCTION:g}, no events.\n")
    print(
        "| daemons | minutes | cycles per repository | REST/h | not 304/h | GraphQL/h "
        f"| REST per repo-cycle | of the {BUDGET:,}/h |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        rest, cycles = r.rest, sum(1 for h in r.hits if h.cycle)
        charged = [h for h in rest if h.status != 304]
        print(
            f"| {r.daemons} | {r.hours * 60:.1f} | {cycles / r.repos:.1f} "
            f"| {r.per_hour(rest):,.0f} | {r.per_hour(charged):,.0f} "
            f"| {r.per_hour([h for h in r.hits if h.graphql]):,.0f} "
            f"| {len(rest) / max(cycles, 1):.2f} | {r.per_hour(charged) / BUDGET:.1%} |"
        )
    for r in runs if args.endpoints else []:
        print(f"\nRequests by endpoint (idle, {r.daemons}): all, not 304")
        for what, n, paid in endpoints(r.hits):
            print(f"    {what}: {n:,}, {paid:,}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--daemons", type=int, nargs="*", default=list(DAEMONS), help="runs of the day")
    add("--kill", type=int, default=KILL, help="daemons of the run with a kill (0: none)")
    add("--idle-daemons", type=int, nargs="*", default=[1, 4], help="idle runs")
    add("--idle-minutes", type=float, default=IDLE_MINUTES)
    add("--repos", type=int, default=REPOS)
    add("--issues", type=int, default=ISSUES)
    add("--reviews", type=int, default=REVIEWS)
    add("--merges", type=int, default=MERGES)
    add("--window", type=float, default=WINDOW, help="seconds in which the day's events come")
    add("--scale", type=float, default=SCALE, help="time compression of polls, leases, turns")
    add("--turn", type=float, default=TURN, help="production seconds per model turn")
    add("--drain", type=float, default=DRAIN, help="seconds after the window for the last item")
    add("--seed", type=int, default=SEED)
    add("--keep", action="store_true", help="keep each run's folder (daemons' logs)")
    add("--endpoints", action="store_true", help="print each run's requests by endpoint")
    args = parser.parse_args()
    started = time.monotonic()
    with postgres() as admin_url:
        idle = [measure(args, admin_url, n, idle=True) for n in args.idle_daemons]
        days = []
        for n in args.daemons:
            days.append(measure(args, admin_url, n))
            print(f"measured {n} daemons: last item {days[-1].end - days[-1].t0:.0f} s",
                  flush=True)  # fmt: skip
        if args.kill:
            days.append(measure(args, admin_url, args.kill, kill=True))
    if idle:
        report_idle(idle, args)
    if days:
        report_days(days, args)
    busy = [r.cpu["busy"] / r.cpu["all"] for r in days + idle]
    print(f"\n(the whole benchmark took {time.monotonic() - started:.0f} s; median CPU busy "
          f"{statistics.median(busy or [0]):.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
