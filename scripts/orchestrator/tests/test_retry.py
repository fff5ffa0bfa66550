"""The one retry policy, as a table: transient faults never end an attempt, definite ones do."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scripts.orchestrator.core.retry import GiveUp, Retry, after_failure

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("transient", "failures", "expected"),
    [
        (True, 0, Retry(0)),
        (True, 99, Retry(99)),  # an outage never ends an attempt, nor is it counted
        (False, 0, Retry(1)),
        (False, 1, Retry(2)),
        (False, 2, GiveUp(3)),  # the third definite failure is the limit
        (False, 5, GiveUp(6)),
    ],
)
def test_after_failure_counts_definite_failures(
    transient: bool, failures: int, expected: Retry | GiveUp
) -> None:
    assert after_failure(transient=transient, failures=failures, limit=3) == expected


@pytest.mark.parametrize(
    ("transient", "failures", "wait_s"),
    [
        (False, 0, 60),  # the first retry waits the backoff
        (False, 1, 120),  # then twice as long
        (True, 0, 60),
        (True, 1, 120),  # as long as a definite failure of the same attempt would wait
        (True, 7, 240),  # capped at the limit's pause
    ],
)
def test_after_failure_backs_off(transient: bool, failures: int, wait_s: int) -> None:
    step = after_failure(transient=transient, failures=failures, limit=3, now=NOW, backoff_s=60)
    assert isinstance(step, Retry)
    assert step.at == NOW + timedelta(seconds=wait_s)


def test_without_backoff_the_retry_is_the_next_poll() -> None:
    assert after_failure(transient=False, failures=0, limit=3, now=NOW) == Retry(1, None)
