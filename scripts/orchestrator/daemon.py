"""The daemon loop: poll the work sources, run jobs under a concurrency bound, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from .core.work import Status, utcnow
from .logs import item_context
from .ports import Job, StateStore, Workflow

log = logging.getLogger(__name__)

FIRST_WATCHED_META = "first_watched_at"
LAST_CYCLE_META = "last_cycle_at"


class Daemon:
    """Runs poll cycles until stopped; at most `max_concurrent` jobs run at a time."""

    def __init__(
        self,
        state: StateStore,
        sources: Sequence[Workflow],
        *,
        max_concurrent: int,
        poll_interval: float,
        repo: str,
        before_cycle: Sequence[Callable[[], Awaitable[None]]] = (),
        after_cycle: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._state = state
        self._sources = list(sources)
        self._before_cycle = list(before_cycle)
        self._after_cycle = list(after_cycle)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._poll_interval = poll_interval
        self._repo = repo
        self._running: dict[str, asyncio.Task[None]] = {}
        self._jobs: dict[str, Job] = {}
        self._stop = asyncio.Event()
        self.failures = 0  # polls and jobs that ended in an unexpected error

    @property
    def running(self) -> list[str]:
        return sorted(self._running)

    def request_stop(self) -> None:
        """Ask the loop to stop; safe to call from a signal handler."""
        if not self._stop.is_set():
            log.info("stop requested; finishing up")
        self._stop.set()

    async def run(self, *, once: bool = False) -> int:
        """Poll until stopped (or once); returns 0, or 1 if anything failed unexpectedly."""
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
                await self.cycle()
                if once:
                    await self._drain()
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._poll_interval)
        finally:
            await self._shutdown()
        return 1 if self.failures else 0

    async def cycle(self) -> None:
        """Poll every source once and start the jobs that are not already running."""
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

    def _start(self, job: Job) -> None:
        if job.key in self._running:
            return
        task = asyncio.create_task(self._guarded(job), name=job.label)
        self._running[job.key] = task
        self._jobs[job.key] = job
        task.add_done_callback(functools.partial(self._forget, job.key))

    def _forget(self, key: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        self._jobs.pop(key, None)

    async def _guarded(self, job: Job) -> None:
        with item_context(job.label):
            if self._slots.locked():
                log.info("waits: every slot is busy (MAX_CONCURRENT)")
            async with self._slots:
                started = asyncio.get_running_loop().time()
                log.info("started")
                try:
                    await job.run()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a crashed job is logged; the daemon goes on
                    self.failures += 1
                    log.exception("job crashed")
                    return
                took = asyncio.get_running_loop().time() - started
                log.info("ended after %.1fs: %s", took, self._outcome(job))

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
        """Cancel what still runs, hand its items back as pending, and save the state."""
        tasks = dict(self._running)
        jobs = dict(self._jobs)
        for task in tasks.values():
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            log.info("interrupted %d running job(s): %s", len(tasks), ", ".join(sorted(tasks)))
        for job in jobs.values():
            item = self._state.get(job.kind, job.number)
            if item is not None and item.status is Status.IN_PROGRESS:
                self._state.put(
                    item.evolve(status=Status.PENDING, last_error="interrupted: the daemon stopped")
                )
        self._state.save()
        log.info("stopped; state saved")
