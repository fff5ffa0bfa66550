"""Claude's slots: at most MAX_CONCURRENT runs at a time, within the day's budget, and none once
the daemon stops."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Callable
from datetime import datetime

from .core.budget import Budgets, allowance, day_of, spent_on, with_spend
from .core.models import ClaudeRequest, ClaudeResult
from .core.work import utcnow
from .logs import current_item
from .ports import Claude, StateStore

DAILY_SPEND_META = "daily_spend_usd"  # {"2026-12-05": 1.25}: every run's cost, by UTC day

log = logging.getLogger(__name__)


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
        self._slots = asyncio.Semaphore(limit)
        self._running: list[str] = []  # the items whose run holds a slot, oldest first
        self._closed = False
        self._state = state
        self._daily = daily_budget
        self._clock = clock
        self._reserved: dict[int, float] = {}  # the caps of the runs in progress, by run
        self._runs = itertools.count()

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

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self._refuse_when_closed()
        item = current_item.get()
        if self._slots.locked():
            log.info("Claude waits for a slot: all %d are in use (MAX_CONCURRENT), by %s",
                     self._limit, ", ".join(self._running))  # fmt: skip
        async with self._slots:
            self._refuse_when_closed()
            # The day's rest is shared with the slots still free, so one run without a cap of
            # its own does not hold it all while the others wait.
            day = allowance(Budgets(run=request.max_budget_usd, day=self._daily), item_spent=0,
                            day_spent=self.spent_today(), day_reserved=self._held(),
                            day_share=self._limit - len(self._running))  # fmt: skip
            if day.refused is not None:
                log.info("no Claude run: %s", day.refused)
                return ClaudeResult(ok=False, text="", error=day.refused, limit="day")
            # The day's rest, not the run's own cap, bounds this run: stopped there, its work
            # waits for more of the day's budget instead of failing.
            day_bound = day.cap is not None and (
                request.max_budget_usd is None or day.cap < request.max_budget_usd
            )
            if day.cap != request.max_budget_usd:
                request = dataclasses.replace(request, max_budget_usd=day.cap)
            run = next(self._runs)
            self._reserved[run] = day.cap or 0.0
            self._running.append(item)
            try:
                result = await self._claude.run(request)
            finally:
                self._running.remove(item)
                del self._reserved[run]
            self._record(result, request.max_budget_usd)
            if day_bound and result.limit == "budget":
                result = dataclasses.replace(result, limit="day_rest")
        # Interrupted by the stop's signal, unless a limit ended it (its work is kept).
        if self._closed and not result.ok and result.limit is None:
            log.info("Claude's run ended while the daemon stops, taken as interrupted: %s",
                     result.error)  # fmt: skip
            raise asyncio.CancelledError("the daemon is stopping: Claude's run was interrupted")
        return result

    def _record(self, result: ClaudeResult, cap: float | None) -> None:
        # A run cut off without a result (its time ran out) spent what nobody was told: its
        # cap is counted, so a budget holds even then.
        cost = result.cost_usd if result.cost_usd is not None else cap
        if self._state is None or not cost:
            return
        day = day_of(self._clock())
        self._state.set_meta(DAILY_SPEND_META, with_spend(self._ledger(), day, cost))

    def _ledger(self) -> dict[str, float]:
        ledger = self._state.get_meta(DAILY_SPEND_META) if self._state is not None else None
        if not isinstance(ledger, dict):  # none yet, or a hand-edited state: start afresh
            return {}
        return {str(d): float(v) for d, v in ledger.items() if isinstance(v, int | float)}

    def _held(self) -> float:
        return sum(self._reserved.values())

    def _refuse_when_closed(self) -> None:
        if self._closed:
            log.info("no Claude run: the daemon is stopping")
            raise asyncio.CancelledError("the daemon is stopping: no new Claude run")
