"""The poll's pace under GitHub's rate limit."""

from __future__ import annotations

import pytest

from scripts.orchestrator.core.pace import next_poll, with_webhooks

HOUR = 3600.0


def test_a_full_budget_keeps_the_interval() -> None:
    pace = next_poll(60, limit=5000, remaining=4990, until_reset=HOUR)
    assert (pace.delay, pace.slowed) == (60, False)


def test_a_tiny_interval_is_kept_while_the_budget_is_large() -> None:
    """Idle polls are answered 304 and cost nothing: a budget is low only once work spent it."""
    pace = next_poll(0.001, limit=5000, remaining=1300, until_reset=HOUR)
    assert (pace.delay, pace.slowed) == (0.001, False)


def test_an_unknown_budget_keeps_the_interval() -> None:
    assert next_poll(60, limit=None, remaining=None, until_reset=None).delay == 60


def test_a_low_budget_slows_the_poll_so_it_lasts_until_the_reset() -> None:
    # 600 left, 500 kept for the work: 50 polls of 2 requests must last 3,600 s.
    pace = next_poll(10, limit=5000, remaining=600, until_reset=HOUR)
    assert pace.slowed
    assert pace.delay == pytest.approx(72.0)
    assert pace.delay * (600 - 500) / 2 == pytest.approx(3600)


def test_at_the_reserve_the_poll_waits_for_the_reset() -> None:
    pace = next_poll(60, limit=5000, remaining=400, until_reset=HOUR)
    assert (pace.delay, pace.slowed) == (3600, True)


def test_a_reset_in_the_past_keeps_the_interval() -> None:
    pace = next_poll(60, limit=5000, remaining=0, until_reset=-1)
    assert (pace.delay, pace.slowed) == (60, False)


def test_a_reset_far_away_waits_an_hour_at_most() -> None:
    """Found by an outside review: a reset header far in the future stalled polling for
    years; GitHub's window is an hour."""
    pace = next_poll(60, limit=5000, remaining=10, until_reset=8.2e9)
    assert (pace.delay, pace.slowed) == (3600, True)


@pytest.mark.parametrize(
    ("since_delivery", "expected"),
    [
        (None, 60),  # no webhook yet: the normal interval
        (0.0, 600),  # one just came: the safety net, 600 s after it
        (450.0, 150),  # still due 600 s after the last delivery
        (599.0, 60),  # never shorter than the normal interval
        (600.0, 60),  # they stopped: the normal interval again
        (5000.0, 60),
    ],
)
def test_webhooks_stretch_the_poll_while_they_arrive(
    since_delivery: float | None, expected: float
) -> None:
    assert with_webhooks(60, 600, since_delivery) == expected


def test_a_longer_normal_interval_is_kept_with_webhooks() -> None:
    assert with_webhooks(900, 600, 0.0) == 900
