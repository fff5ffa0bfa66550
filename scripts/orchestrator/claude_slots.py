"""Claude's slots: at most MAX_CONCURRENT runs at a time, within the day's budget, and none once
the daemon stops."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from .core.budget import SMALLEST_RUN, Budgets, allowance, day_of, spent_on, with_spend
from .core.models import ClaudeRequest, ClaudeResult
from .core.work import utcnow
from .logs import current_item
from .ports import Claude, StateStore

DAILY_SPEND_META = "daily_spend_usd"  # {"2026-12-05": 1.25}: every run's cost, by UTC day
# The caps of the runs in progress, by run: {"3f2a...": {"day": "2026-12-05", "cap": 0.5}}. A
# daemon killed during a run leaves its entry; the next start counts its cap as spent.
HELD_META = "claude_runs_held"

log = logging.getLogger(__name__)


class FairSlots:
    """`limit` slots taken in turn by groups (repositories): a freed slot goes to the waiting
    group served longest ago, so a repository with fifty waiting runs takes one slot in turn
    with one that has a single run, not all of them first. Within a group, first come first
    served. asyncio's Semaphore wakes waiters in arrival order only."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._served: dict[str, int] = {}  # the turn each group last got a slot in
        self._turns = itertools.count()

    def locked(self) -> bool:
        return self._free == 0

    @contextlib.asynccontextmanager
    async def slot(self, group: str) -> AsyncIterator[None]:
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(group, deque()).append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed a slot as it was cancelled: pass it on
                else:
                    self._drop(group, waiter)
                raise
        self._served[group] = next(self._turns)
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """The slot to the next group's first waiter, or back to the free ones. A waiter
        cancelled but not yet told (its task has not run since) is passed over, as asyncio's
        Semaphore does: handing it the slot would lose the slot."""
        while self._waiting:
            group = min(self._waiting, key=lambda g: self._served.get(g, -1))
            queue = self._waiting[group]
            waiter = queue.popleft()
            if not queue:
                del self._waiting[group]
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _drop(self, group: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(group)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[group]


class ClaudeSlots:
    """The `Claude` port with a bound: a run holds one of `limit` slots for its length only.

    A job holds no slot while it waits for anything else (CI, a lock, GitHub). After `close`
    no run starts: one asked for then, or still waiting for a slot when one frees, is
    cancelled (the daemon hands its item back for the next start). A run that fails after
    `close` is cancelled too: the stop's signal may have reached Claude's process as well
    (Ctrl-C in a terminal signals the whole process group), which is no failure of the issue.
    """

    def __init__(
        self,
        claude: Claude,
        limit: int,
        *,
        state: StateStore | None = None,
        daily_budget: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """With `state`, every run's cost is added to the day's total there; with
        `daily_budget` too, a run's cap is at most what is left of the day once the runs in
        progress have theirs, and none starts once it is spent."""
        self._claude = claude
        self._limit = limit
        self._slots = FairSlots(limit)
        self._running: list[str] = []  # the items whose run holds a slot, oldest first
        self._closed = False
        self._state = state
        self._daily = daily_budget
        self._clock = clock
        self._reserved: dict[str, float] = {}  # the caps of the runs in progress, by run
        self._settle_left()

    def spent_today(self) -> float:
        return spent_on(self._ledger(), day_of(self._clock()))

    def day_spent(self) -> str | None:
        """Why no Claude run may start now (the day's budget is spent, or its rest is held by
        the runs in progress), or None."""
        if self._daily is None:
            return None
        return allowance(Budgets(day=self._daily), item_spent=0, day_spent=self.spent_today(),
                         day_reserved=self._held()).refused  # fmt: skip

    def running(self) -> list[str]:
        """The items (log labels, e.g. `issue#4`) whose Claude run is in progress."""
        return list(self._running)

    def close(self) -> None:
        """No run starts from now on; the runs in progress go on."""
        self._closed = True

    async def run(
        self,
        request: ClaudeRequest,
        *,
        via: Claude | None = None,
        group: str = "",
        closed: Callable[[], bool] = lambda: False,
    ) -> ClaudeResult:
        """`request` run when a slot is free, through `via` (a repository's own runner: its
        sandbox shows that repository's git only), else the runner the slots were made with;
        `group` (the repository) takes its turn with the others for the slots, and `closed`
        says when its daemon stops (as `close` does for all)."""
        self._refuse_when_closed(closed)
        item = current_item.get()
        if self._slots.locked():
            log.info("Claude waits for a slot: all %d are in use (MAX_CONCURRENT), by %s",
                     self._limit, ", ".join(self._running))  # fmt: skip
        async with self._slots.slot(group):
            self._refuse_when_closed(closed)
            # The day's rest is shared with the slots still free, so one run without a cap of
            # its own does not hold it all while the others wait.
            day = allowance(Budgets(run=request.max_budget_usd, day=self._daily), item_spent=0,
                            day_spent=self.spent_today(), day_reserved=self._held(),
                            day_share=self._limit - len(self._running))  # fmt: skip
            if day.refused is not None:
                log.info("no Claude run: %s", day.refused)
                return ClaudeResult(ok=False, text="", error=day.refused, limit="day")
            # The day's budget, not the run's own cap, bounds this run (see `_ran_out`).
            day_bound = day.cap is not None and (
                request.max_budget_usd is None or day.cap < request.max_budget_usd
            )
            if day.cap != request.max_budget_usd:
                request = dataclasses.replace(request, max_budget_usd=day.cap)
            run = secrets.token_hex(6)
            self._hold(run, day.cap)
            self._running.append(item)
            result: ClaudeResult | None = None
            try:
                result = await (via or self._claude).run(request)
            finally:
                self._running.remove(item)
                # A run cancelled (the daemon stops) cost what nobody was told: its cap.
                self._record(result, request.max_budget_usd, run)
            if day_bound and result.limit == "budget" and self._ran_out():
                result = dataclasses.replace(result, limit="day_rest")
        # Interrupted by the stop's signal, unless a limit ended it (its work is kept).
        if (self._closed or closed()) and not result.ok and result.limit is None:
            log.info("Claude's run ended while the daemon stops, taken as interrupted: %s",
                     result.error)  # fmt: skip
            raise asyncio.CancelledError("the daemon is stopping: Claude's run was interrupted")
        return result

    def _ran_out(self) -> bool:
        """Whether the day's budget itself is spent now: a run stopped at a cap the day set
        then waits for the next day, which gives it more (its share of the free slots or the
        runs in progress only made its cap small: that stop is an ordinary budget stop)."""
        return self._daily is not None and self._daily - self.spent_today() < SMALLEST_RUN

    def _hold(self, run: str, cap: float | None) -> None:
        """The run's cap, held in the state (with a daily budget), then in memory, before it
        starts: a crash during the run cannot let its cost go uncounted."""
        if self._state is not None and self._daily is not None and cap:
            held = {**self._held_entries(), run: (day_of(self._clock()), cap)}
            self._state.set_meta(HELD_META, _stored(held))
        self._reserved[run] = cap or 0.0

    def _record(self, result: ClaudeResult | None, cap: float | None, run: str) -> None:
        """The run's cost on the day's total, and its hold let go, in one state write. A run
        cut off without a cost (its time ran out, or it was cancelled) counts its cap, so a
        budget holds even then."""
        self._reserved.pop(run, None)
        cost = result.cost_usd if result is not None and result.cost_usd is not None else cap
        if self._state is None:
            return
        held = self._held_entries()
        with self._state.batch():
            if cost:
                day = day_of(self._clock())
                self._state.set_meta(DAILY_SPEND_META, with_spend(self._ledger(), day, cost))
            if run in held:
                self._state.set_meta(
                    HELD_META, _stored({k: v for k, v in held.items() if k != run})
                )

    def _settle_left(self) -> None:
        """At start: the runs a killed daemon left in progress count their caps as spent."""
        left = self._held_entries()
        if self._state is None or not left:
            return
        ledger = self._ledger()
        for day, cap in left.values():
            ledger = with_spend(ledger, day, cap)
        with self._state.batch():
            self._state.set_meta(DAILY_SPEND_META, ledger)
            self._state.set_meta(HELD_META, {})
        total = sum(cap for _, cap in left.values())
        log.warning("counted $%.2f for %d Claude run(s) a stopped daemon left unfinished "
                    "(their caps: what they may have spent)", total, len(left))  # fmt: skip

    def _held_entries(self) -> dict[str, tuple[str, float]]:
        """The runs held in the state: {run: (day, cap)}."""
        raw = self._state.get_meta(HELD_META) if self._state is not None else None
        if not isinstance(raw, dict):
            return {}
        kept = {}
        for run, entry in raw.items():
            try:
                kept[str(run)] = (str(entry["day"]), float(entry["cap"]))
            except (KeyError, TypeError, ValueError):  # a hand-edited state: that one is dropped
                log.warning("ignoring an unreadable held Claude run %r", run)
        return kept

    def _ledger(self) -> dict[str, float]:
        ledger = self._state.get_meta(DAILY_SPEND_META) if self._state is not None else None
        if not isinstance(ledger, dict):  # none yet, or a hand-edited state: start afresh
            return {}
        return {str(d): float(v) for d, v in ledger.items() if isinstance(v, int | float)}

    def _held(self) -> float:
        return sum(self._reserved.values())

    def _refuse_when_closed(self, closed: Callable[[], bool]) -> None:
        if self._closed or closed():
            log.info("no Claude run: the daemon is stopping")
            raise asyncio.CancelledError("the daemon is stopping: no new Claude run")


class RepoClaude:
    """One repository's `Claude` port over the shared slots: its runs go through its own
    runner and take their turn among the repositories. Closed, its runs stop as `ClaudeSlots`
    does when closed, and the other repositories' go on (one daemon's `--once` can end before
    another's)."""

    def __init__(self, slots: ClaudeSlots, claude: Claude, repo: str) -> None:
        self._slots = slots
        self._claude = claude
        self._repo = repo
        self._closed = False
        self._running: list[str] = []

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        item = current_item.get()
        self._running.append(item)
        try:
            return await self._slots.run(
                request, via=self._claude, group=self._repo, closed=lambda: self._closed
            )
        finally:
            self._running.remove(item)

    def close(self) -> None:
        self._closed = True

    def running(self) -> list[str]:
        """This repository's items whose Claude run is in progress."""
        running = set(self._slots.running())
        return [item for item in self._running if item in running]

    def day_spent(self) -> str | None:
        return self._slots.day_spent()


def _stored(held: dict[str, tuple[str, float]]) -> dict[str, dict[str, object]]:
    return {run: {"day": day, "cap": cap} for run, (day, cap) in held.items()}
