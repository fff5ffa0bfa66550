"""Claude's budgets: what one run may spend under the run's, the item's and the day's limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

KEEP_DAYS = 31  # days of totals kept in the state's ledger
# Below this a run cannot do anything useful (one turn of a large model costs about this).
SMALLEST_RUN = 0.01


@dataclass(frozen=True)
class Budgets:
    """The limits in US dollars (None: none): per Claude run, per item across all its runs,
    per UTC day for the whole daemon."""

    run: float | None = None
    item: float | None = None
    day: float | None = None


@dataclass(frozen=True)
class Allowance:
    """What the next run may spend (`cap`, None: no limit), or why it may not run at all;
    `wait` when only the day's budget stands in the way (the run waits for the next day)."""

    cap: float | None
    refused: str | None = None
    wait: bool = False


def allowance(
    budgets: Budgets,
    *,
    item_spent: float,
    day_spent: float,
    day_reserved: float = 0.0,
    day_share: int = 1,
) -> Allowance:
    """The cap of the next run: the smallest of the run's limit, what is left of the item's,
    and its share (one of `day_share`) of what is left of the day's once the runs in progress
    (`day_reserved`) have theirs."""
    caps: list[float] = []
    if budgets.run is not None:
        caps.append(budgets.run)
    if budgets.item is not None:
        left = budgets.item - item_spent
        if left < SMALLEST_RUN:
            spent = f"${item_spent:.2f} of ${budgets.item:.2f}"
            return Allowance(None, f"its budget is spent: {spent} (ITEM_MAX_BUDGET_USD)")
        caps.append(left)
    if budgets.day is not None:
        left = budgets.day - day_spent - day_reserved
        if left < SMALLEST_RUN:
            spent = f"${day_spent:.2f} of ${budgets.day:.2f}"
            why = f"the day's budget is spent: {spent} (DAILY_MAX_BUDGET_USD)"
            if budgets.day - day_spent >= SMALLEST_RUN:
                why = (
                    f"the rest of the day's budget is held by the runs in progress ({spent} spent)"
                )
            return Allowance(None, why, wait=True)
        caps.append(left / max(day_share, 1))
    return Allowance(min(caps) if caps else None)


def day_of(at: datetime) -> str:
    """The UTC day `at` falls in, as the ledger names it: `2026-12-05`."""
    return at.astimezone(timezone.utc).date().isoformat()


def spent_on(ledger: Mapping[str, float], day: str) -> float:
    return float(ledger.get(day, 0.0))


def with_spend(ledger: Mapping[str, float], day: str, cost: float) -> dict[str, float]:
    """The ledger with `cost` added to `day`, and only the last KEEP_DAYS days kept."""
    totals = {**ledger, day: round(spent_on(ledger, day) + max(cost, 0.0), 6)}
    kept = sorted(totals)[-KEEP_DAYS:]
    return {d: totals[d] for d in kept}
