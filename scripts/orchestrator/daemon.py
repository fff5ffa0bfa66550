"""The daemon loop: poll the work sources, start their jobs, and stop them cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol

from .core.work import Status, WorkItemType, said, utcnow
from .logs import item_context
from .ports import NO_TELEMETRY, Job, JobView, StateStore, Telemetry, Workflow

log = logging.getLogger(__name__)

FIRST_WATCHED_META = "first_watched_at"
LAST_CYCLE_META = "last_cycle_at"
INTERRUPTED = "interrupted: the daemon stopped"
CLAUDE_KINDS = frozenset({WorkItemType.ISSUE, WorkItemType.PR_REVIEW, WorkItemType.FOLLOW_UP})


class ClaudeRuns(Protocol):
    """What the daemon sees of Claude's bounded runs (`ClaudeSlots`) when it stops."""

    def close(self) -> None:
        """No Claude run starts from now on; the runs in progress go on."""
        ...

    def running(self) -> list[str]:
        """The items (log labels, e.g. `issue#4`) whose Claude run is in progress."""
        ...


class Daemon:
    """Runs poll cycles until stopped, and starts every job at once (Claude's runs are bounded
    by `ClaudeRuns`, not the jobs).

    On a stop: no new cycle, job or Claude run. Jobs inside a Claude run get `shutdown_grace`
    seconds from the request, the others are cancelled at once, and a second request cancels
    them all; their items go back to pending for the next start.
    """

    def __init__(
        self,
        state: StateStore,
        sources: Sequence[Workflow],
        *,
        runs: ClaudeRuns,
        shutdown_grace: float,
        poll_interval: float,
        repo: str,
        before_cycle: Sequence[Callable[[], Awaitable[None]]] = (),
        after_cycle: Sequence[Callable[[], Awaitable[None]]] = (),
        pace: Callable[[], float] | None = None,
        max_claude_jobs: int | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
        claude_gate: Callable[[], str | None] | None = None,
        tagged: bool = False,
    ) -> None:
        """`pace` says how long to wait for the next cycle (e.g. longer when GitHub's rate
        limit runs low); without it, `poll_interval`. `max_claude_jobs` bounds the jobs that
        end in a Claude run (implementations, reviews) running at once: each makes a worktree
        before it waits for a slot, and a hundred new pull requests must not make a hundred.
        The others wait for the next cycle, which plans them again. `telemetry` hears of each
        cycle and each job's end (serve mode's metrics). `claude_gate` says why no job that
        ends in a Claude run may start now (the day's budget is spent), or None. `tagged`:
        the log lines (and transcripts) of its jobs name the repository, as several
        repositories' daemons share one log."""
        self._state = state
        self._sources = list(sources)
        self._before_cycle = list(before_cycle)
        self._after_cycle = list(after_cycle)
        self._runs = runs
        self._grace = shutdown_grace
        self._poll_interval = poll_interval
        self._pace = pace
        self._max_claude_jobs = max_claude_jobs
        self._deferred: set[str] = set()  # jobs told once that they wait
        # This cycle's jobs over the bound, started as earlier ones end (a new cycle plans
        # again, so none outlives the plan it came from).
        self._waiting: dict[str, Job] = {}
        self._repo = repo
        self._tagged = tagged
        self._running: dict[str, asyncio.Task[None]] = {}
        self._jobs: dict[str, Job] = {}
        self._stop = asyncio.Event()
        self._at_once = asyncio.Event()  # a second stop request: no grace
        self._stop_asked: float | None = None  # loop time of the first request
        self._wake = asyncio.Event()  # a webhook: poll now, not at the interval's end
        self._started: dict[str, datetime] = {}
        self._telemetry = telemetry
        self._claude_gate = claude_gate
        self._gate_said: str | None = None  # the reason last logged, said once
        self.failures = 0  # polls and jobs that ended in an unexpected error

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

    @property
    def running(self) -> list[str]:
        return sorted(self._running)

    def jobs(self) -> list[JobView]:
        """The jobs running now (oldest first), then those waiting for a place."""
        in_claude = set(self._runs.running())
        running = [
            JobView(job.kind, job.number, self._started.get(key), self._label(job) in in_claude)
            for key, job in self._jobs.items()
        ]
        running.sort(key=lambda view: view.started_at or utcnow())
        waiting = [JobView(j.kind, j.number, None) for j in self._waiting.values()]
        return running + waiting

    def use_sources(self, sources: Sequence[Workflow]) -> None:
        """The workflows the next cycles poll (the repository's settings changed, or it must
        wait: none); the jobs running go on with the workflows that started them."""
        self._sources = list(sources)

    def wake(self) -> None:
        """Poll now (e.g. a webhook said something changed); one wake during a cycle makes
        one more cycle right after it. Call it from the daemon's event loop."""
        self._wake.set()

    def request_stop(self, why: str = "stop requested") -> None:
        """Ask the loop to stop; a second request stops at once. Safe in a signal handler."""
        if self._stop.is_set():
            if not self._at_once.is_set():
                log.info("%s again: stopping at once", why)
            self._at_once.set()
            return
        self._stop_asked = asyncio.get_running_loop().time()
        self._runs.close()
        self._stop.set()
        log.info("%s: stopping, no new work (a second one stops at once)", why)

    async def run(self, *, once: bool = False) -> int:
        """Poll until stopped (or once); returns 0, or 1 if anything failed unexpectedly in a
        run that ended by itself (`once`). A stop asked for (a signal) returns 0."""
        with item_context(self._repo) if self._tagged else contextlib.nullcontext():
            return await self._run(once)

    async def _run(self, once: bool) -> int:
        if self._state.get_meta(FIRST_WATCHED_META) is None:
            self._state.set_meta(FIRST_WATCHED_META, utcnow().isoformat())
        log.info(
            "watching %s (%s), every %gs",
            self._repo,
            ", ".join(s.name for s in self._sources) or "no workflows enabled",
            self._poll_interval,
        )
        try:
            while not self._stop.is_set():
                await self._cycle_unless_stopped_at_once()
                if once:
                    await self._drain()
                    break
                wait = self._pace() if self._pace is not None else self._poll_interval
                await self._sleep(wait)
        except asyncio.CancelledError:
            self._at_once.set()  # whoever cancels the loop wants it stopped now
            raise
        finally:
            await self._shutdown()
        if self._stop_asked is not None:
            return 0  # a stop asked for is a clean end, whatever failed weeks before
        return 1 if self.failures else 0

    async def _sleep(self, seconds: float) -> None:
        """Until the next cycle is due: `seconds`, a stop or a wake."""
        stop = asyncio.ensure_future(self._stop.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()
        self._wake.clear()  # the cycle about to start sees what the wake was about

    async def cycle(self) -> None:
        """Poll every source once and start the jobs that are not already running."""
        began = asyncio.get_running_loop().time()
        try:
            await self._poll_sources()
        finally:
            self._telemetry.poll_done(asyncio.get_running_loop().time() - began)

    async def _poll_sources(self) -> None:
        self._waiting.clear()  # planned again below
        for prepare in self._before_cycle:  # e.g. fetch the new comments every source reads
            try:
                await prepare()
            except Exception:  # the sources still run, on what they can see
                self.failures += 1
                log.exception("preparing the cycle failed")
        for source in self._sources:
            if self._stop.is_set():
                return
            try:
                jobs = await source.poll()
            except Exception:  # one source's outage must not stop the others
                self.failures += 1
                log.exception("polling %s failed; will try again next cycle", source.name)
                continue
            for job in jobs:
                self._start(job)
        for finish in self._after_cycle:  # e.g. move the comment cursor past what was read
            try:
                await finish()
            except Exception:  # the next cycle repeats the work, which is idempotent
                self.failures += 1
                log.exception("finishing the cycle failed")
        self._state.set_meta(LAST_CYCLE_META, utcnow().isoformat())

    async def _cycle_unless_stopped_at_once(self) -> None:
        """A cycle, which a first stop request lets finish and a second one cancels."""
        cycle = asyncio.ensure_future(self.cycle())
        at_once = asyncio.ensure_future(self._at_once.wait())
        try:
            await asyncio.wait({cycle, at_once}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            at_once.cancel()
            if not cycle.done():
                cycle.cancel()
                await asyncio.wait({cycle})
        if not cycle.cancelled():
            cycle.result()  # what the cycle raised, it raises here

    def _start(self, job: Job) -> None:
        if job.key in self._running or self._stop.is_set():
            return
        if self._claude_gate is not None and job.kind in CLAUDE_KINDS:
            closed = self._claude_gate()
            if closed is not None:
                if closed != self._gate_said:
                    log.warning("implementations and reviews wait: %s", closed)
                self._gate_said = closed
                return  # planned again by the next cycle
            if self._gate_said is not None:
                log.info("implementations and reviews start again")
                self._gate_said = None
        if self._max_claude_jobs is not None and job.kind in CLAUDE_KINDS:
            busy = sum(1 for j in self._jobs.values() if j.kind in CLAUDE_KINDS)
            if busy >= self._max_claude_jobs:
                self._waiting[job.key] = job
                if job.key not in self._deferred:
                    self._deferred.add(job.key)
                    with item_context(self._label(job)):
                        log.info("waits: %d implementations and reviews already run", busy)
                return
        self._deferred.discard(job.key)
        self._waiting.pop(job.key, None)
        task = asyncio.create_task(self._guarded(job), name=self._label(job))
        self._running[job.key] = task
        self._jobs[job.key] = job
        self._started[job.key] = utcnow()
        task.add_done_callback(functools.partial(self._forget, job.key))

    def _label(self, job: Job) -> str:
        """The job in the log: `issue#4`, or `acme/api issue#4` beside other repositories."""
        return f"{self._repo} {job.label}" if self._tagged else job.label

    def _forget(self, key: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        self._jobs.pop(key, None)
        self._started.pop(key, None)
        for job in list(self._waiting.values()):  # a place may have come free
            self._start(job)

    async def _guarded(self, job: Job) -> None:
        with item_context(self._label(job)):
            started = asyncio.get_running_loop().time()
            log.info("started")
            try:
                await job.run()
            except asyncio.CancelledError:
                self._hand_back(job)
                took = asyncio.get_running_loop().time() - started
                log.info("stopped after %.1fs: %s", took, self._outcome(job))
                self._telemetry.job_done(job.kind, job.number, took, "cancelled")
                raise
            except Exception:  # a crashed job is logged; the daemon goes on
                self.failures += 1
                log.exception("job crashed")
                took = asyncio.get_running_loop().time() - started
                self._telemetry.job_done(job.kind, job.number, took, "crashed")
                return
            took = asyncio.get_running_loop().time() - started
            log.info("ended after %.1fs: %s", took, self._outcome(job))
            item = self._state.get(job.kind, job.number)
            outcome = item.status.value if item is not None else "nothing"
            self._telemetry.job_done(job.kind, job.number, took, outcome)

    def _hand_back(self, job: Job) -> None:
        """An interrupted job's item goes back to pending: the next start takes it up again."""
        item = self._state.get(job.kind, job.number)
        if item is not None and item.status is Status.IN_PROGRESS:
            self._state.put(item.evolve(status=Status.PENDING, last_error=INTERRUPTED))

    def _outcome(self, job: Job) -> str:
        """The item's status after its job, as one phrase: `done (pull request #7)`."""
        item = self._state.get(job.kind, job.number)
        if item is None:
            return "nothing recorded (it will be planned again)"
        said = item.status.value.replace("_", " ")
        if item.pr_number is not None:
            said += f" (pull request #{item.pr_number})"
        if item.status in (Status.FAILED, Status.PENDING) and item.last_error:
            said += f": {item.last_error}"
        return said

    async def _drain(self) -> None:
        """Wait for every running job, unless a stop is requested first."""
        while self._running and not self._stop.is_set():
            stopper = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait(
                    [stopper, *self._running.values()], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopper.cancel()

    async def _shutdown(self) -> None:
        """Cancel the jobs outside a Claude run, give those inside one the grace, cancel what
        is left, and save the state (their items were handed back as pending)."""
        self._runs.close()  # also when the loop ends by itself (`--once`) or by an error
        tasks, jobs = dict(self._running), dict(self._jobs)
        if tasks:
            in_runs = set(self._runs.running())
            claude = {k: t for k, t in tasks.items() if self._label(jobs[k]) in in_runs}
            others = {k: t for k, t in tasks.items() if k not in claude}
            _cancel(others, "not in a Claude run", jobs)
            if claude:
                await self._give_grace(claude, jobs)
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        self._state.save()
        log.info("stopped; state saved")

    async def _give_grace(self, tasks: dict[str, asyncio.Task[None]], jobs: dict[str, Job]) -> None:
        """Wait for these jobs until the grace ends or a second request; cancel the rest."""
        loop = asyncio.get_running_loop()
        asked = self._stop_asked if self._stop_asked is not None else loop.time()
        deadline = asked + self._grace
        left = deadline - loop.time()
        if left > 0 and not self._at_once.is_set():
            log.info("waiting up to %.0fs for %d Claude run(s): %s",
                     left, len(tasks), _named(tasks, jobs))  # fmt: skip
            waiting = set(tasks.values())
            at_once = asyncio.ensure_future(self._at_once.wait())
            try:
                while waiting and not self._at_once.is_set():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    done, _ = await asyncio.wait(
                        {*waiting, at_once}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiting -= done
            finally:
                at_once.cancel()
        why = "stopping at once" if self._at_once.is_set() else f"after the {self._grace:g}s grace"
        _cancel(tasks, why, jobs)


def _cancel(tasks: dict[str, asyncio.Task[None]], why: str, jobs: dict[str, Job]) -> None:
    """Cancel the jobs that still run, and say which."""
    live = [key for key, task in tasks.items() if not task.done()]
    for key in live:
        tasks[key].cancel()
    if live:
        log.info("cancelled %d job(s), %s: %s", len(live), why, _named(live, jobs))


def _named(keys: Collection[str], jobs: dict[str, Job]) -> str:
    """The jobs' items in words, e.g. `issue #4, merge of #7`."""
    named = sorted((jobs[key] for key in keys), key=lambda job: job.number)
    return ", ".join(said(job.kind, job.number) for job in named)
