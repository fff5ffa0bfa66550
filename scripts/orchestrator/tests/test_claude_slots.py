"""Tests for Claude's slots: MAX_CONCURRENT bounds Claude's runs, not the jobs around them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.orchestrator.claude_slots import (
    DAILY_SPEND_META,
    HELD_META,
    ClaudeSlots,
    FairSlots,
    RepoClaude,
)
from scripts.orchestrator.core.models import ClaudeRequest, ClaudeResult
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.core.work import MergeFacts, Status, WorkItem, WorkItemType
from scripts.orchestrator.logs import ContextFilter, item_context
from scripts.orchestrator.wiring import Adapters, build_daemon

from .ports_fakes import (
    FakeClock,
    FakeSecretScan,
    MemoryState,
    RecordingChecks,
    RecordingGit,
    ScriptedClaude,
    SettingsFactory,
)
from .ports_fakes_github import RecordingGitHub

DEADLINE = 10.0


class HeldClaude:
    """The `Claude` port: each run waits until `release` is set, then answers `result`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.prompts: list[str] = []
        self.result = ClaudeResult(ok=True, text="Done.")

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self.prompts.append(request.prompt)
        await self.release.wait()
        return self.result


class HeldClock(FakeClock):
    """The `Clock` port, whose sleeps (a merge waiting for CI) last until `wake` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = 0
        self.wake = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping += 1
        try:
            await self.wake.wait()
        finally:
            self.sleeping -= 1
        await super().sleep(seconds)


@pytest.fixture
def clock() -> HeldClock:  # the recording GitHub reads this clock too
    return HeldClock()


async def until(done: Callable[[], bool], what: str) -> None:
    """Poll until `done()`, failing after DEADLINE seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not done():
        assert loop.time() < deadline, f"no {what} within {DEADLINE}s"
        await asyncio.sleep(0.01)


def _request(tmp_path: Path, prompt: str = "Implement issue #1") -> ClaudeRequest:
    return ClaudeRequest(prompt, tmp_path, "", ("Write",), 10, 60)


async def _run_as(slots: ClaudeSlots, label: str, tmp_path: Path) -> ClaudeResult:
    with item_context(label):  # as the daemon runs each job
        return await slots.run(_request(tmp_path, label))


async def test_at_most_the_limit_runs_at_once_and_a_wait_names_the_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    held = HeldClaude()
    slots = ClaudeSlots(held, 2)
    caplog.set_level("INFO")
    caplog.handler.addFilter(ContextFilter(Redactor()))  # each line's item, as in the log
    runs = [asyncio.create_task(_run_as(slots, f"issue#{n}", tmp_path)) for n in range(1, 6)]
    await until(lambda: len(held.prompts) == 2, "two runs")
    for _ in range(5):  # the others wait for a slot
        await asyncio.sleep(0)
    assert held.prompts == ["issue#1", "issue#2"] and slots.running() == ["issue#1", "issue#2"]
    waits = [(getattr(r, "item", None), r.getMessage()) for r in caplog.records]
    assert waits[0] == (
        "issue#3",
        "Claude waits for a slot: all 2 are in use (MAX_CONCURRENT), by issue#1, issue#2",
    )
    assert [item for item, _ in waits] == ["issue#3", "issue#4", "issue#5"]
    held.release.set()
    results = await asyncio.wait_for(asyncio.gather(*runs), DEADLINE)
    assert all(r.ok for r in results) and len(held.prompts) == 5 and slots.running() == []


async def test_after_close_no_run_starts_and_the_runs_in_progress_go_on(tmp_path: Path) -> None:
    held = HeldClaude()
    slots = ClaudeSlots(held, 1)
    running = asyncio.create_task(_run_as(slots, "issue#1", tmp_path))
    waiting = asyncio.create_task(_run_as(slots, "issue#2", tmp_path))
    await until(lambda: slots.running() == ["issue#1"], "a run")
    slots.close()
    with pytest.raises(asyncio.CancelledError):  # asked for after the stop
        await _run_as(slots, "issue#3", tmp_path)
    held.release.set()
    assert (await asyncio.wait_for(running, DEADLINE)).ok
    with pytest.raises(asyncio.CancelledError):  # the slot it waited for came after the stop
        await asyncio.wait_for(waiting, DEADLINE)
    assert held.prompts == ["issue#1"] and slots.running() == []


async def test_a_run_that_fails_after_close_is_interrupted_not_failed(tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches Claude's process too: its death is no failure to report."""
    held = HeldClaude()
    held.result = ClaudeResult(ok=False, text="", error="Claude Code failed: exit code -2")
    slots = ClaudeSlots(held, 1)
    running = asyncio.create_task(_run_as(slots, "issue#1", tmp_path))
    await until(lambda: slots.running() == ["issue#1"], "a run")
    slots.close()
    held.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, DEADLINE)
    slots = ClaudeSlots(held, 1)  # before a stop, a failure is the run's own
    assert not (await _run_as(slots, "issue#1", tmp_path)).ok


async def test_a_merge_waiting_for_ci_or_its_base_holds_no_slot(
    make_settings: SettingsFactory,
    memory_state: MemoryState,
    gh: RecordingGitHub,
    git: RecordingGit,
    claude: ScriptedClaude,
    checks: RecordingChecks,
    scanner: FakeSecretScan,
    clock: HeldClock,
) -> None:
    """MAX_CONCURRENT=1: one merge waits for CI, another for the base it shares; meanwhile a
    ready issue is implemented and a new pull request reviewed, through the real wiring."""
    settings = make_settings(max_concurrent=1, pre_merge_commands=["pytest -q"])
    adapters = Adapters(gh, git, claude, checks, scanner, clock, Redactor([settings.token]))
    daemon = build_daemon(settings, memory_state, adapters)
    for trigger, branch in enumerate(("topic", "other"), start=1):
        number = gh.add_pull(branch)
        head = gh.pulls[number].head_sha
        facts = MergeFacts(trigger_comment_id=trigger, requested_by="carol", base_ref="main",
                           requested_head=head)  # fmt: skip
        memory_state.put(WorkItem(type=WorkItemType.MERGE, number=number, facts=facts))
    first_head = gh.pulls[1].head_sha
    gh.set_check_run(first_head, "build", status="in_progress", conclusion=None)

    def status(kind: WorkItemType, number: int) -> Status | None:
        item = memory_state.get(kind, number)
        return item.status if item is not None else None

    await daemon.cycle()  # the merges start; the review remembers the open pull requests
    await until(lambda: clock.sleeping == 1, "merge #1 waiting for CI")
    assert status(WorkItemType.MERGE, 2) is Status.PENDING  # waiting for main's lock

    issue = gh.add_issue("Add a greeting", "Write greet.py", labels=("ready",))
    pull = gh.add_pull("feature")
    for _ in range(2):  # either run may come first: each result fits both
        claude.succeed("Added greet.py.\n\nVERDICT: COMMENT", files={"greet.py": "pass\n"})
    await daemon.cycle()
    await until(lambda: status(WorkItemType.ISSUE, issue) is Status.DONE, "the implementation")
    await until(lambda: status(WorkItemType.PR_REVIEW, pull) is Status.DONE, "the review")
    assert clock.sleeping == 1 and status(WorkItemType.MERGE, 1) is Status.IN_PROGRESS
    assert status(WorkItemType.MERGE, 2) is Status.PENDING

    gh.set_check_run(first_head, "build")
    clock.wake.set()
    await until(lambda: not daemon.running, "the merges")
    assert status(WorkItemType.MERGE, 1) is Status.DONE
    assert status(WorkItemType.MERGE, 2) is Status.DONE
    assert daemon.failures == 0


# -- the day's budget -----------------------------------------------------------------------


class CostlyClaude:
    """The `Claude` port: each run is held until `release`, then costs `cost` dollars."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.caps: list[float | None] = []
        self.release = asyncio.Event()

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self.caps.append(request.max_budget_usd)
        await self.release.wait()
        return ClaudeResult(ok=True, text="Done.", cost_usd=self.cost)


def request(cap: float | None = None) -> ClaudeRequest:
    return ClaudeRequest(prompt="p", cwd=Path("."), guidelines="", tools=("Read",),
                         max_turns=3, timeout=60, max_budget_usd=cap)  # fmt: skip


async def test_the_days_budget_caps_runs_and_keeps_a_ledger_by_day() -> None:
    state = MemoryState()
    clock = FakeClock()
    claude = CostlyClaude(cost=3.0)
    slots = ClaudeSlots(claude, 2, state=state, daily_budget=10.0, clock=clock.now)
    claude.release.set()
    # The day's rest is shared with the free slots: $10 over 2, then $7 over 2.
    assert (await slots.run(request(cap=6.0))).ok
    assert (await slots.run(request())).ok
    assert claude.caps == [5.0, 3.5] and slots.spent_today() == 6.0
    # Two at once: the first holds its cap, so the second gets only the rest.
    claude.release.clear()
    first = asyncio.create_task(slots.run(request(cap=3.0)))
    await until(lambda: len(claude.caps) == 3, "the first run")
    second = asyncio.create_task(slots.run(request()))
    await until(lambda: len(claude.caps) == 4, "the second run")
    assert claude.caps[2:] == [2.0, 2.0]
    held = slots.day_spent()  # nothing left for a third to start with
    assert held is not None and "held by the runs in progress" in held
    claude.release.set()
    await asyncio.gather(first, second)
    assert slots.spent_today() == 12.0  # a run may cost a little past its cap: counted
    refused = await slots.run(request())
    assert (refused.ok, refused.limit) == (False, "day") and len(claude.caps) == 4
    assert "the day's budget is spent: $12.00 of $10.00" in (refused.error or "")
    clock.advance(86_400)  # the next day
    assert slots.day_spent() is None and (await slots.run(request())).ok


async def test_a_run_cut_off_without_a_cost_counts_its_cap() -> None:
    state = MemoryState()

    class TimedOut:
        async def run(self, request: ClaudeRequest) -> ClaudeResult:
            return ClaudeResult(ok=False, text="", error="no answer in time", limit="time")

    slots = ClaudeSlots(TimedOut(), 1, state=state, daily_budget=10.0)
    await slots.run(request(cap=0.75))
    assert slots.spent_today() == 0.75  # what it may have spent, not nothing
    state.set_meta(DAILY_SPEND_META, "hand-edited")  # a broken ledger starts afresh
    assert slots.spent_today() == 0.0 and slots.day_spent() is None


async def test_without_a_daily_budget_runs_are_only_counted() -> None:
    state = MemoryState()
    claude = CostlyClaude(cost=1.5)
    claude.release.set()
    slots = ClaudeSlots(claude, 1, state=state)
    for _ in range(3):
        assert (await slots.run(request())).ok
    assert claude.caps == [None, None, None] and slots.spent_today() == 4.5
    assert slots.day_spent() is None


async def test_a_limit_reached_while_the_daemon_stops_is_no_interruption() -> None:
    held = HeldClaude()
    slots = ClaudeSlots(held, 1)
    running = asyncio.create_task(slots.run(request()))
    await until(lambda: bool(held.prompts), "the run")
    slots.close()
    held.result = ClaudeResult(ok=False, text="", error="stopped at its budget", limit="budget")
    held.release.set()
    result = await asyncio.wait_for(running, DEADLINE)  # its work is kept, not thrown away
    assert result.limit == "budget"


async def test_a_run_stopped_at_the_days_rest_says_so_and_one_at_its_own_cap_does_not() -> None:
    class StopsAtItsCap:
        async def run(self, request: ClaudeRequest) -> ClaudeResult:
            return ClaudeResult(ok=False, text="", error="budget", limit="budget",
                                cost_usd=request.max_budget_usd)  # fmt: skip

    slots = ClaudeSlots(StopsAtItsCap(), 1, state=MemoryState(), daily_budget=10.0)
    own = await slots.run(request(cap=1.0))  # its own cap was the smaller
    assert own.limit == "budget"
    rest = await slots.run(request(cap=20.0))  # the day's $9 left was, and it is spent now
    assert rest.limit == "day_rest" and rest.cost_usd == 9.0
    # Its share of the day among the free slots bound it, but the day is not spent: an
    # ordinary budget stop (a person decides), not a wait for the next day.
    shared = ClaudeSlots(StopsAtItsCap(), 2, state=MemoryState(), daily_budget=10.0)
    half = await shared.run(request(cap=20.0))
    assert (half.limit, half.cost_usd) == ("budget", 5.0)


async def test_a_run_in_progress_is_held_in_the_state_and_a_crash_cannot_lose_its_cost() -> None:
    state = MemoryState()
    claude = CostlyClaude(cost=0.4)
    slots = ClaudeSlots(claude, 2, state=state, daily_budget=10.0)
    task = asyncio.create_task(slots.run(request(cap=1.0)))
    await until(lambda: bool(claude.caps), "the run")
    (held,) = state.get_meta(HELD_META).values()
    assert held["cap"] == 1.0  # in the state before the run goes on
    # The daemon is killed here: the next start counts the run's cap as spent.
    after_crash = ClaudeSlots(CostlyClaude(cost=0.0), 2, state=state, daily_budget=10.0)
    assert after_crash.spent_today() == 1.0 and state.get_meta(HELD_META) == {}
    task.cancel()  # (the killed daemon's run, gone with it)
    await asyncio.gather(task, return_exceptions=True)


async def test_a_finished_run_lets_its_hold_go_and_counts_its_cost() -> None:
    state = MemoryState()
    claude = CostlyClaude(cost=0.4)
    claude.release.set()
    slots = ClaudeSlots(claude, 2, state=state, daily_budget=10.0)
    assert (await slots.run(request(cap=1.0))).ok
    assert state.get_meta(HELD_META) == {} and slots.spent_today() == 0.4
    state.set_meta(HELD_META, {"x": {"day": "2026"}})  # a hand-edited state: dropped
    assert ClaudeSlots(claude, 1, state=state, daily_budget=10.0).spent_today() == 0.4


class GatedClaude:
    """The `Claude` port: each run waits for its own gate, so a test frees one slot at a time."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name = name
        self.order = order
        self.gates: dict[str, asyncio.Event] = {}

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self.order.append(f"{self.name} {request.prompt}")
        gate = self.gates.setdefault(request.prompt, asyncio.Event())
        await gate.wait()
        return ClaudeResult(ok=True, text="Done.")


async def test_a_busy_repository_takes_its_turn_with_the_others(tmp_path: Path) -> None:
    order: list[str] = []
    busy, quiet = GatedClaude("api", order), GatedClaude("web", order)
    slots = ClaudeSlots(busy, 1)
    api, web = RepoClaude(slots, busy, "acme/api"), RepoClaude(slots, quiet, "acme/web")

    async def run(claude: RepoClaude, prompt: str) -> ClaudeResult:
        return await claude.run(_request(tmp_path, prompt))

    runs = [asyncio.create_task(run(api, f"#{n}")) for n in range(1, 5)]
    await until(lambda: order == ["api #1"], "the first run")
    runs.append(asyncio.create_task(run(web, "#1")))  # asked for after api's three others
    for _ in range(5):
        await asyncio.sleep(0)
    for expected in (["web #1"], ["api #2"], ["api #3"]):
        started = len(order)
        name, prompt = order[-1].split(" ", 1)
        (busy if name == "api" else quiet).gates[prompt].set()
        await until(lambda: len(order) > started, "the next run")  # noqa: B023
        assert order[started:] == expected
    for claude in (busy, quiet):
        for event in claude.gates.values():
            event.set()
    busy.gates.setdefault("#4", asyncio.Event()).set()
    await asyncio.wait_for(asyncio.gather(*runs), DEADLINE)
    assert order == ["api #1", "web #1", "api #2", "api #3", "api #4"]


async def test_a_run_cancelled_while_it_waits_gives_its_turn_up(tmp_path: Path) -> None:
    held = HeldClaude()
    slots = ClaudeSlots(held, 1)
    first = asyncio.create_task(RepoClaude(slots, held, "a/a").run(_request(tmp_path, "1")))
    await until(lambda: held.prompts == ["1"], "the first run")
    waiting = asyncio.create_task(RepoClaude(slots, held, "b/b").run(_request(tmp_path, "2")))
    third = asyncio.create_task(RepoClaude(slots, held, "c/c").run(_request(tmp_path, "3")))
    for _ in range(5):
        await asyncio.sleep(0)
    waiting.cancel()
    held.release.set()
    await asyncio.wait_for(asyncio.gather(first, third), DEADLINE)
    assert held.prompts == ["1", "3"] and not slots._slots.locked()


async def test_one_repository_closed_stops_its_runs_and_not_the_others(tmp_path: Path) -> None:
    held = HeldClaude()
    held.release.set()
    slots = ClaudeSlots(held, 2)
    api, web = RepoClaude(slots, held, "acme/api"), RepoClaude(slots, held, "acme/web")
    api.close()  # its daemon's --once ended first
    with pytest.raises(asyncio.CancelledError):
        await api.run(_request(tmp_path, "api"))
    assert (await web.run(_request(tmp_path, "web"))).ok
    assert held.prompts == ["web"]


async def test_a_slot_is_not_handed_to_a_waiter_cancelled_in_the_same_step() -> None:
    """Found by an outside review: a shutdown cancelling a waiting job in the loop step in
    which a run ended handed the slot to the cancelled waiter, and it was lost for good."""
    slots = FairSlots(1)
    entered, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with slots.slot("a"):
            entered.set()
            await release.wait()

    async def waiter(group: str) -> None:
        async with slots.slot(group):
            pass

    held = asyncio.create_task(holder())
    await entered.wait()
    cancelled = asyncio.create_task(waiter("b"))
    await asyncio.sleep(0)  # it waits in the queue
    release.set()
    cancelled.cancel()
    results = await asyncio.gather(held, cancelled, return_exceptions=True)
    assert results[0] is None and isinstance(results[1], asyncio.CancelledError)
    await asyncio.wait_for(waiter("c"), DEADLINE)  # the slot is free again
