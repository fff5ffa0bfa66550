"""Claude's budgets: a run's cap under the run's, the item's and the day's limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scripts.orchestrator.core.budget import (
    KEEP_DAYS,
    Allowance,
    Budgets,
    allowance,
    day_of,
    spent_on,
    with_spend,
)


def test_no_limits_no_cap() -> None:
    assert allowance(Budgets(), item_spent=100, day_spent=1000) == Allowance(None)


def test_the_cap_is_the_smallest_of_what_is_left() -> None:
    budgets = Budgets(run=2.0, item=5.0, day=20.0)
    assert allowance(budgets, item_spent=0, day_spent=0).cap == 2.0
    assert allowance(budgets, item_spent=4.5, day_spent=0).cap == pytest.approx(0.5)
    assert allowance(budgets, item_spent=0, day_spent=19.25).cap == pytest.approx(0.75)
    # The runs in progress hold their caps: two at once cannot both take the day's rest.
    assert allowance(budgets, item_spent=0, day_spent=17, day_reserved=2.5).cap == (
        pytest.approx(0.5)
    )


def test_a_spent_item_is_refused_for_good_and_a_spent_day_waits() -> None:
    item = allowance(Budgets(item=5.0), item_spent=5.0, day_spent=0)
    assert item.cap is None and not item.wait
    assert item.refused == "its budget is spent: $5.00 of $5.00 (ITEM_MAX_BUDGET_USD)"
    day = allowance(Budgets(day=10.0), item_spent=0, day_spent=9.995)
    assert day.wait and day.refused is not None and "DAILY_MAX_BUDGET_USD" in day.refused
    reserved = allowance(Budgets(day=10.0), item_spent=0, day_spent=8, day_reserved=2)
    assert reserved.wait  # what is left is held by the runs in progress


def test_the_ledger_adds_by_utc_day_and_keeps_a_month() -> None:
    late = datetime(2026, 12, 5, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert day_of(late) == "2026-12-06"  # 04:30 UTC
    ledger: dict[str, float] = {}
    ledger = with_spend(ledger, "2026-12-06", 0.25)
    ledger = with_spend(ledger, "2026-12-06", 0.5)
    ledger = with_spend(ledger, "2026-12-06", -3)  # never negative
    assert spent_on(ledger, "2026-12-06") == 0.75 and spent_on(ledger, "2026-12-07") == 0
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for n in range(KEEP_DAYS + 5):
        ledger = with_spend(ledger, day_of(start + timedelta(days=n)), 1.0)
    assert len(ledger) == KEEP_DAYS and "2026-01-01" not in ledger
