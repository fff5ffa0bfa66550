"""Tests for the daemon loop: concurrency bound, no duplicate runs, isolation of failures, stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from scripts.orchestrator.daemon import FIRST_WATCHED_META, Daemon
from scripts.orchestrator.logs import current_item
from scripts.orchestrator.ports import Job
from scripts.orchestrator.state import State, Status, WorkItem, WorkItemType


class ListSource:
    """A work source that returns the jobs a test gives it, and counts its polls."""

    def __init__(self, name: str, jobs: Callable[[], Sequence[Job]]) -> None:
        self.name = name
        self._jobs = jobs
        self.polls = 0

    async def poll(self) -> Sequence[Job]:
        self.polls += 1
        return self._jobs()


class BrokenSource:
    name = "broken"

    async def poll(self) -> Sequence[Job]:
        raise RuntimeError("GitHub is down")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with State(tmp_path / "state.json") as s:
        yield s


def _daemon(state: State, *sources: object, max_concurrent: int = 2) -> Daemon:
    return Daemon(
        state,
        sources,  # type: ignore[arg-type]
        max_concurrent=max_concurrent,
        poll_interval=3600,
        repo="acme/widgets",
    )


async def test_at_most_max_concurrent_jobs_run_at_once(state: State) -> None:
    active = 0
    peak = 0
    done: list[int] = []

    def job(n: int) -> Job:
        async def run() -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            for _ in range(5):  # give every other job the chance to start meanwhile
                await asyncio.sleep(0)
            active -= 1
            done.append(n)

        return Job(WorkItemType.ISSUE, n, run)

    source = ListSource("implement", lambda: [job(n) for n in range(6)])
    assert await _daemon(state, source, max_concurrent=2).run(once=True) == 0
    assert sorted(done) == list(range(6))
    assert peak == 2


async def test_a_running_item_is_not_started_twice(state: State) -> None:
    starts = 0
    release = asyncio.Event()

    async def run() -> None:
        nonlocal starts
        starts += 1
        await release.wait()

    source = ListSource("review", lambda: [Job(WorkItemType.PR_REVIEW, 7, run)])
    daemon = _daemon(state, source)
    await daemon.cycle()
    await daemon.cycle()
    await asyncio.sleep(0)
    assert daemon.running == ["pr_review:7"]
    release.set()
    await daemon.cycle()  # the first run may still be finishing: no second start yet
    while daemon.running:
        await asyncio.sleep(0)
    assert starts in (1, 2)
    assert source.polls == 3


async def test_a_broken_source_and_a_crashed_job_do_not_stop_the_others(state: State) -> None:
    ran: list[str] = []

    async def crash() -> None:
        raise ValueError("bug")

    async def fine() -> None:
        ran.append(current_item.get())

    source = ListSource(
        "merge", lambda: [Job(WorkItemType.MERGE, 1, crash), Job(WorkItemType.MERGE, 2, fine)]
    )
    daemon = _daemon(state, BrokenSource(), source)
    assert await daemon.run(once=True) == 1
    assert daemon.failures == 2
    assert ran == ["merge#2"]  # and the job ran with its item in the log context


async def test_stop_interrupts_running_jobs_and_hands_their_items_back(state: State) -> None:
    started = asyncio.Event()

    async def forever() -> None:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=42, status=Status.IN_PROGRESS))
        started.set()
        await asyncio.Event().wait()

    daemon = _daemon(state, ListSource("implement", lambda: [Job(WorkItemType.ISSUE, 42, forever)]))
    runner = asyncio.create_task(daemon.run())
    await asyncio.wait_for(started.wait(), 10)
    daemon.request_stop()
    assert await asyncio.wait_for(runner, 10) == 0
    item = state.get(WorkItemType.ISSUE, 42)
    assert item is not None
    assert item.status is Status.PENDING
    assert item.last_error == "interrupted: the daemon stopped"


async def test_once_waits_for_the_work_it_started(state: State) -> None:
    finished = False

    async def slow() -> None:
        nonlocal finished
        for _ in range(20):
            await asyncio.sleep(0)
        finished = True

    await _daemon(state, ListSource("x", lambda: [Job(WorkItemType.ISSUE, 1, slow)])).run(once=True)
    assert finished


async def test_first_watch_is_recorded_once(state: State) -> None:
    await _daemon(state).run(once=True)
    first = state.get_meta(FIRST_WATCHED_META)
    assert first
    await _daemon(state).run(once=True)
    assert state.get_meta(FIRST_WATCHED_META) == first


async def test_every_start_wait_and_outcome_is_one_info_line(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()

    def job(n: int, status: Status) -> Job:
        async def run() -> None:
            await gate.wait()
            failed = status is Status.FAILED
            state.put(WorkItem(type=WorkItemType.ISSUE, number=n, status=status,
                               pr_number=None if failed else 7,
                               last_error="Claude failed" if failed else None))  # fmt: skip

        return Job(WorkItemType.ISSUE, n, run)

    daemon = _daemon(
        state, ListSource("s", lambda: [job(1, Status.DONE), job(2, Status.FAILED)]),
        max_concurrent=1,
    )  # fmt: skip
    with caplog.at_level("INFO"):
        await daemon.cycle()
        for _ in range(3):  # both tasks run up to the slot (yields, not waits)
            await asyncio.sleep(0)
        gate.set()
        await daemon._drain()
    lines = [r.getMessage() for r in caplog.records if r.name.endswith(".daemon")]
    assert lines.count("started") == 2
    assert lines.count("waits: every slot is busy (MAX_CONCURRENT)") == 1
    ended = [line for line in lines if line.startswith("ended after")]
    assert ended[0].endswith(": done (pull request #7)")
    assert ended[1].endswith(": failed: Claude failed")
