"""Tests for the daemon loop: every job starts at once, no duplicate runs, isolation of
failures, and the stop: no new work, the grace for Claude's runs, a second request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from scripts.orchestrator.claude_slots import ClaudeSlots
from scripts.orchestrator.core.models import ClaudeRequest, ClaudeResult
from scripts.orchestrator.daemon import FIRST_WATCHED_META, INTERRUPTED, Daemon
from scripts.orchestrator.logs import current_item
from scripts.orchestrator.ports import Job
from scripts.orchestrator.state import State, Status, WorkItem, WorkItemType

DEADLINE = 10.0


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


class HeldClaude:
    """The `Claude` port: each run waits until `release` is set, then succeeds."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.prompts: list[str] = []

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self.prompts.append(request.prompt)
        await self.release.wait()
        return ClaudeResult(ok=True, text="Done.")


@pytest.fixture
def held() -> HeldClaude:
    return HeldClaude()


@pytest.fixture
def slots(held: HeldClaude) -> ClaudeSlots:
    """The held Claude behind one slot (MAX_CONCURRENT=1)."""
    return ClaudeSlots(held, 1)


def _daemon(
    state: State, *sources: object, runs: ClaudeSlots | None = None, grace: float = 30
) -> Daemon:
    return Daemon(
        state,
        sources,  # type: ignore[arg-type]
        runs=runs or ClaudeSlots(HeldClaude(), 2),
        shutdown_grace=grace,
        poll_interval=3600,
        repo="acme/widgets",
    )


async def until(done: Callable[[], bool], what: str) -> None:
    """Poll until `done()`, failing after DEADLINE seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not done():
        assert loop.time() < deadline, f"no {what} within {DEADLINE}s"
        await asyncio.sleep(0.01)


def _put(
    state: State,
    kind: WorkItemType,
    number: int,
    status: Status,
    *,
    pr_number: int | None = None,
    last_error: str | None = None,
) -> None:
    state.put(WorkItem(type=kind, number=number, status=status, pr_number=pr_number,
                       last_error=last_error))  # fmt: skip


def claude_job(state: State, slots: ClaudeSlots, number: int, tmp_path: Path) -> Job:
    """An issue's job as the implement workflow runs it: in progress, a Claude run, done."""

    async def run() -> None:
        _put(state, WorkItemType.ISSUE, number, Status.IN_PROGRESS)
        request = ClaudeRequest(f"Implement issue #{number}", tmp_path, "", ("Write",), 10, 60)
        result = await slots.run(request)
        assert result.ok
        _put(state, WorkItemType.ISSUE, number, Status.DONE, pr_number=100 + number)

    return Job(WorkItemType.ISSUE, number, run)


def waiting_job(state: State, kind: WorkItemType, number: int) -> Job:
    """A job that waits for something else than Claude (a merge waiting for CI)."""

    async def run() -> None:
        _put(state, kind, number, Status.IN_PROGRESS)
        await asyncio.Event().wait()

    return Job(kind, number, run)


def status(state: State, kind: WorkItemType, number: int) -> Status | None:
    item = state.get(kind, number)
    return item.status if item is not None else None


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.endswith((".daemon", "_slots"))]


async def test_every_job_starts_at_once_and_claude_runs_take_the_slots(
    state: State, held: HeldClaude, tmp_path: Path
) -> None:
    runs = ClaudeSlots(held, 2)
    source = ListSource(
        "implement", lambda: [claude_job(state, runs, n, tmp_path) for n in range(6)]
    )
    daemon = _daemon(state, source, runs=runs)
    finished = asyncio.create_task(daemon.run(once=True))
    await until(lambda: len(state.items()) == 6, "six jobs in progress")  # all started
    await until(lambda: len(held.prompts) == 2, "two Claude runs")
    for _ in range(5):  # the other four wait for a slot
        await asyncio.sleep(0)
    assert len(held.prompts) == 2 and len(runs.running()) == 2
    held.release.set()
    assert await asyncio.wait_for(finished, DEADLINE) == 0
    assert {item.status for item in state.items()} == {Status.DONE}


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


async def test_every_start_and_outcome_is_one_info_line(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    def job(n: int, status: Status) -> Job:
        async def run() -> None:
            failed = status is Status.FAILED
            _put(state, WorkItemType.ISSUE, n, status, pr_number=None if failed else 7,
                 last_error="Claude failed" if failed else None)  # fmt: skip

        return Job(WorkItemType.ISSUE, n, run)

    daemon = _daemon(state, ListSource("s", lambda: [job(1, Status.DONE), job(2, Status.FAILED)]))
    with caplog.at_level("INFO"):
        assert await daemon.run(once=True) == 0
    lines = said(caplog)
    assert lines.count("started") == 2
    ended = [line for line in lines if line.startswith("ended after")]
    assert ended[0].endswith(": done (pull request #7)")
    assert ended[1].endswith(": failed: Claude failed")


# -- the stop ---------------------------------------------------------------------------------


async def test_a_stop_gives_the_claude_run_its_grace_and_cancels_the_other_jobs_at_once(
    state: State,
    held: HeldClaude,
    slots: ClaudeSlots,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = [
        claude_job(state, slots, 1, tmp_path),  # in its Claude run
        waiting_job(state, WorkItemType.MERGE, 2),  # waiting for CI: holds no slot
        claude_job(state, slots, 3, tmp_path),  # waiting for the slot: gets none
    ]
    daemon = _daemon(state, ListSource("s", lambda: jobs), runs=slots, grace=3600)
    caplog.set_level("INFO")
    runner = asyncio.create_task(daemon.run())
    await until(lambda: "Claude waits for a slot" in "\n".join(said(caplog)), "wait for a slot")
    assert len(held.prompts) == 1

    daemon.request_stop("SIGTERM")
    await until(lambda: status(state, WorkItemType.MERGE, 2) is Status.PENDING, "merge back")
    await until(lambda: status(state, WorkItemType.ISSUE, 3) is Status.PENDING, "issue 3 back")
    assert not runner.done()  # issue 1's Claude run has its grace
    lines = said(caplog)
    assert "SIGTERM: stopping, no new work (a second one stops at once)" in lines
    assert "cancelled 2 job(s), not in a Claude run: merge of #2, issue #3" in lines
    assert "waiting up to 3600s for 1 Claude run(s): issue #1" in lines

    held.release.set()  # the run ends within the grace: its job finishes its work
    assert await asyncio.wait_for(runner, DEADLINE) == 0
    assert status(state, WorkItemType.ISSUE, 1) is Status.DONE
    assert held.prompts == ["Implement issue #1"]  # issue 3's run never started
    item = state.get(WorkItemType.ISSUE, 3)
    assert item is not None and item.last_error == INTERRUPTED
    assert said(caplog)[-1] == "stopped; state saved"
    with State(state.path, lock=False) as saved:
        assert status(saved, WorkItemType.ISSUE, 1) is Status.DONE
        assert status(saved, WorkItemType.MERGE, 2) is Status.PENDING


@pytest.mark.parametrize("grace", [0, 0.05])
async def test_a_claude_run_past_the_grace_is_cancelled(
    state: State,
    held: HeldClaude,
    slots: ClaudeSlots,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    grace: float,
) -> None:
    job = claude_job(state, slots, 4, tmp_path)
    daemon = _daemon(state, ListSource("s", lambda: [job]), runs=slots, grace=grace)
    caplog.set_level("INFO")
    runner = asyncio.create_task(daemon.run())
    await until(lambda: slots.running() == ["issue#4"], "a Claude run")
    daemon.request_stop("SIGTERM")
    assert await asyncio.wait_for(runner, DEADLINE) == 0
    item = state.get(WorkItemType.ISSUE, 4)
    assert item is not None and item.status is Status.PENDING and item.last_error == INTERRUPTED
    assert f"cancelled 1 job(s), after the {grace:g}s grace: issue #4" in said(caplog)
    assert slots.running() == []


async def test_a_second_stop_request_cancels_the_claude_run_at_once(
    state: State,
    held: HeldClaude,
    slots: ClaudeSlots,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = claude_job(state, slots, 4, tmp_path)
    daemon = _daemon(state, ListSource("s", lambda: [job]), runs=slots, grace=3600)
    caplog.set_level("INFO")
    runner = asyncio.create_task(daemon.run())
    await until(lambda: slots.running() == ["issue#4"], "a Claude run")
    daemon.request_stop("SIGINT")
    await until(lambda: any(line.startswith("waiting up to") for line in said(caplog)), "grace")
    daemon.request_stop("SIGINT")
    assert await asyncio.wait_for(runner, DEADLINE) == 0
    assert status(state, WorkItemType.ISSUE, 4) is Status.PENDING
    lines = said(caplog)
    assert "SIGINT again: stopping at once" in lines
    assert "cancelled 1 job(s), stopping at once: issue #4" in lines


async def test_no_job_starts_after_a_stop_even_from_the_cycle_in_progress(state: State) -> None:
    started: list[int] = []

    async def run() -> None:
        started.append(1)

    def stop_then_jobs() -> Sequence[Job]:
        daemon.request_stop()  # the signal arrives while this source polls
        return [Job(WorkItemType.ISSUE, 1, run)]

    later = ListSource("later", lambda: [Job(WorkItemType.ISSUE, 2, run)])
    daemon = _daemon(state, ListSource("first", stop_then_jobs), later)
    assert await asyncio.wait_for(daemon.run(), DEADLINE) == 0
    assert started == [] and later.polls == 0


async def test_a_second_stop_request_cancels_the_cycle_in_progress(state: State) -> None:
    polling = asyncio.Event()

    class Slow:
        name = "slow"

        async def poll(self) -> Sequence[Job]:  # e.g. waiting for a rate limit to reset
            polling.set()
            await asyncio.Event().wait()
            return []

    daemon = _daemon(state, Slow())
    runner = asyncio.create_task(daemon.run())
    await asyncio.wait_for(polling.wait(), DEADLINE)
    daemon.request_stop()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not runner.done()  # the first request lets the cycle finish
    daemon.request_stop()
    assert await asyncio.wait_for(runner, DEADLINE) == 0


async def test_cancelling_the_loop_stops_at_once(
    state: State, held: HeldClaude, slots: ClaudeSlots, tmp_path: Path
) -> None:
    job = claude_job(state, slots, 4, tmp_path)
    runner = asyncio.create_task(
        _daemon(state, ListSource("s", lambda: [job]), runs=slots, grace=3600).run()
    )
    await until(lambda: slots.running() == ["issue#4"], "a Claude run")
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, DEADLINE)
    assert status(state, WorkItemType.ISSUE, 4) is Status.PENDING


async def test_the_pace_sets_the_wait_between_cycles(state: State) -> None:
    """POLL_INTERVAL is an hour; the pace says 0: cycles follow one another. (A pace that
    says more is what the rate limit's budget asks for: `Pacer`, test_wiring.)"""
    source = ListSource("feed", lambda: [])
    asked: list[int] = []

    def pace() -> float:
        asked.append(source.polls)
        return 0.0

    daemon = Daemon(state, [source], runs=ClaudeSlots(HeldClaude(), 1), shutdown_grace=0,
                    poll_interval=3600, repo="acme/widgets", pace=pace)  # fmt: skip
    running = asyncio.ensure_future(daemon.run())
    await until(lambda: source.polls >= 3, "third cycle")
    daemon.request_stop()
    assert await running == 0
    assert asked[:2] == [1, 2]


async def test_implementations_and_reviews_are_bounded_merges_are_not(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside review: with every job started at once, a hundred new pull
    requests made a hundred worktrees before waiting for a Claude slot."""
    caplog.set_level("INFO")
    release = asyncio.Event()
    started: list[str] = []

    def job(kind: WorkItemType, number: int) -> Job:
        async def run() -> None:
            started.append(f"{kind.value}#{number}")
            await release.wait()

        return Job(kind, number, run)

    jobs = [job(WorkItemType.PR_REVIEW, n) for n in range(1, 6)]
    jobs += [job(WorkItemType.MERGE, 9)]
    # As a workflow plans: what has run is not planned again.
    source = ListSource("all", lambda: [j for j in jobs if j.label not in started])
    daemon = Daemon(state, [source], runs=ClaudeSlots(HeldClaude(), 1), shutdown_grace=0,
                    poll_interval=3600, repo="acme/widgets", max_claude_jobs=2)  # fmt: skip
    await daemon.cycle()
    await until(lambda: len(started) == 3, "three jobs")
    await daemon.cycle()  # planned again: still waiting, and said once
    assert sorted(started) == ["merge#9", "pr_review#1", "pr_review#2"]
    assert caplog.text.count("waits: 2 implementations and reviews already run") == 3
    release.set()  # as places come free, the waiting jobs start: no new cycle needed
    await until(lambda: len(started) == 6 and not daemon.running, "every job")
    assert started[3:] == ["pr_review#3", "pr_review#4", "pr_review#5"]


async def test_a_stop_asked_for_exits_0_after_an_old_failure(state: State) -> None:
    """Found by an outside review: one passing 502 weeks before made a clean SIGTERM exit 1,
    and systemd marked the unit failed. The control: `--once` still says 1."""
    daemon = _daemon(state, BrokenSource())
    running = asyncio.ensure_future(daemon.run())
    await until(lambda: daemon.failures > 0, "a failed poll")
    daemon.request_stop()
    assert await running == 0
    assert await _daemon(state, BrokenSource()).run(once=True) == 1


async def test_a_wake_starts_a_cycle_at_once_and_one_during_a_cycle_one_more(
    state: State,
) -> None:
    """POLL_INTERVAL is an hour: every cycle after the first is a wake's (a webhook's)."""
    gate = asyncio.Event()
    gate.set()

    class GatedSource(ListSource):
        entered = 0

        async def poll(self) -> Sequence[Job]:
            self.entered += 1
            await gate.wait()
            return await super().poll()

    source = GatedSource("feed", lambda: [])
    daemon = _daemon(state, source)
    running = asyncio.ensure_future(daemon.run())
    await until(lambda: source.polls == 1, "the first cycle")
    daemon.wake()
    await until(lambda: source.polls == 2, "the woken cycle")
    # Three wakes while a cycle runs: one more cycle after it, not three.
    gate.clear()
    daemon.wake()
    await until(lambda: source.entered == 3, "the third cycle, held")
    for _ in range(3):
        daemon.wake()
    gate.set()
    await until(lambda: source.polls == 4, "the cycle the held wakes asked for")
    daemon.request_stop()
    assert await running == 0
    assert source.polls == 4


async def test_jobs_shows_the_running_then_the_waiting_and_telemetry_hears_the_end(
    state: State,
) -> None:
    release = asyncio.Event()
    heard: list[tuple[WorkItemType, int, str]] = []

    class Heard:
        def poll_done(self, seconds: float) -> None:
            heard.append((WorkItemType.ISSUE, 0, "poll"))

        def job_done(self, kind: WorkItemType, number: int, seconds: float, outcome: str) -> None:
            heard.append((kind, number, outcome))

    async def run() -> None:
        _put(state, WorkItemType.ISSUE, 1, Status.IN_PROGRESS)
        await release.wait()
        _put(state, WorkItemType.ISSUE, 1, Status.DONE)

    job = Job(WorkItemType.ISSUE, 1, run)
    source = ListSource("feed", lambda: [job])
    daemon = Daemon(state, [source], runs=ClaudeSlots(HeldClaude(), 1), shutdown_grace=0,
                    poll_interval=3600, repo="acme/widgets", telemetry=Heard())  # fmt: skip
    running = asyncio.ensure_future(daemon.run())
    await until(lambda: bool(daemon.jobs()), "the job")
    [view] = daemon.jobs()
    assert (view.kind, view.number, view.in_claude) == (WorkItemType.ISSUE, 1, False)
    assert view.started_at is not None
    release.set()
    await until(lambda: (WorkItemType.ISSUE, 1, "done") in heard, "the job's end")
    assert heard[0] == (WorkItemType.ISSUE, 0, "poll")
    daemon.request_stop()
    assert await running == 0
    assert daemon.jobs() == []


async def test_a_closed_claude_gate_holds_implementations_and_reviews_not_merges(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ran: list[str] = []

    def job(kind: WorkItemType, number: int) -> Job:
        async def run() -> None:
            ran.append(f"{kind.value}#{number}")

        return Job(kind, number, run)

    jobs = [job(WorkItemType.ISSUE, 1), job(WorkItemType.PR_REVIEW, 2), job(WorkItemType.MERGE, 3)]
    closed: list[str | None] = ["the day's budget is spent: $10.00 of $10.00"]
    daemon = Daemon(state, [ListSource("feed", lambda: jobs)], runs=ClaudeSlots(HeldClaude(), 1),
                    shutdown_grace=0, poll_interval=3600, repo="acme/widgets",
                    claude_gate=lambda: closed[0])  # fmt: skip
    await daemon.cycle()
    await until(lambda: ran == ["merge#3"], "the merge")
    await daemon.cycle()
    await until(lambda: ran == ["merge#3", "merge#3"], "the merge again")
    assert caplog.text.count("implementations and reviews wait: the day's budget") == 1
    closed[0] = None  # the next day
    await daemon.cycle()
    await until(lambda: sorted(ran[2:]) == ["issue#1", "merge#3", "pr_review#2"], "all three")
    assert "implementations and reviews start again" in caplog.text
