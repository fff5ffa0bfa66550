"""A workflow's work items in the state: the small updates every workflow makes."""

from __future__ import annotations

import logging
from typing import Any

from ..config import Settings
from ..core.budget import Allowance, Budgets, allowance
from ..core.errors import is_transient
from ..core.models import ClaudeResult
from ..core.redact import Redactor
from ..core.retry import GiveUp, after_failure
from ..core.work import Status, WorkItem, WorkItemType
from ..ports import StateStore

log = logging.getLogger(__name__)

MAX_INFRASTRUCTURE_ERRORS = 3  # definite git or GitHub errors before an attempt fails


class Items:
    """Read and update one kind of work item; every stored error text is redacted."""

    def __init__(self, state: StateStore, kind: WorkItemType, redactor: Redactor) -> None:
        self._state = state
        self._kind = kind
        self._redactor = redactor

    def get(self, number: int) -> WorkItem:
        item = self._state.get(self._kind, number)
        assert item is not None, f"{self._kind.value} item #{number} vanished from the state"
        return item

    def update(self, number: int, **changes: Any) -> None:
        error = changes.get("last_error")
        if isinstance(error, str):
            changes["last_error"] = self._redactor.redact(error)
        self._state.put(self.get(number).evolve(**changes))

    def allowance(self, number: int, settings: Settings) -> Allowance:
        """What the item's next Claude run may spend: CLAUDE_MAX_BUDGET_USD, and what is left
        of ITEM_MAX_BUDGET_USD (the day's budget is the slots' to keep)."""
        budgets = Budgets(run=settings.claude_max_budget_usd, item=settings.item_max_budget_usd)
        return allowance(budgets, item_spent=self.get(number).spent_usd, day_spent=0.0)

    def spend(self, number: int, result: ClaudeResult) -> None:
        """A Claude run's cost, turns and time on its item, and added to what it has spent;
        a run that never started (the day's budget was spent) costs nothing."""
        if result.limit == "day":
            return
        item = self.get(number)
        self.update(
            number,
            cost_usd=result.cost_usd,
            turns=result.turns,
            duration_s=round(result.duration_s, 1),
            spent_usd=round(item.spent_usd + (result.cost_usd or 0.0), 6),
            runs=item.runs + 1,
        )

    def update_facts(self, number: int, **facts: Any) -> None:
        self._state.put(self.get(number).with_facts(**facts))

    def retry_later(self, number: int, exc: Exception) -> bool:
        """Count a git or GitHub failure; True if the item waits for the next poll, False
        once definite errors are used up (the caller then reports the failure). A transient
        fault never fails an item: what was done so far is kept and the rest is retried."""
        transient = is_transient(exc)
        item = self.get(number)
        step = after_failure(
            transient=transient, failures=item.errors, limit=MAX_INFRASTRUCTURE_ERRORS
        )
        if isinstance(step, GiveUp):
            self.update(number, errors=step.failures)
            return False
        kind = (
            "a transient fault"
            if transient
            else f"error {step.failures} of {MAX_INFRASTRUCTURE_ERRORS}"
        )
        log.warning("#%d: %s (%s); will retry on the next poll", number, exc, kind)
        # One state write: the count, the status and the error together.
        self.update(number, status=Status.PENDING, last_error=str(exc), errors=step.failures)
        return True
