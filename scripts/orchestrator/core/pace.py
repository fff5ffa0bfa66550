"""How long to wait before the next poll, so the rate limit lasts until GitHub resets it."""

from __future__ import annotations

from dataclasses import dataclass

# Requests a poll may cost when something changed (an idle one costs none: its reads are
# answered 304, which GitHub does not count).
POLL_COST = 2
# The share of the limit kept for the work itself: comments, pushes, merges.
RESERVE = 0.1
# The longest wait, whatever the headers say (a reset an hour away is GitHub's longest).
MAX_DELAY = 3600.0
# Above this share left, the pace is never changed: an idle poll is answered 304 and costs
# nothing, so only a budget already spent by work can run out.
LOW = 0.25


@dataclass(frozen=True)
class Pace:
    delay: float  # seconds to the next poll
    slowed: bool  # longer than the interval, because the budget runs low


def next_poll(
    interval: float,
    *,
    limit: int | None,
    remaining: int | None,
    until_reset: float | None,
) -> Pace:
    """`interval`, or, once under a quarter of the limit is left, longer when polling at that
    pace (each poll counted as a changed one) would spend the requests left above a reserve
    for the work before `reset_at`; at or under the reserve, the next poll waits for the
    reset (`until_reset` seconds away, as GitHub's clock has it), never longer than an hour.
    Without a known budget, `interval`."""
    if limit is None or remaining is None or until_reset is None:
        return Pace(interval, False)
    until_reset = min(until_reset, MAX_DELAY)
    if until_reset <= 0 or remaining >= LOW * limit:
        return Pace(interval, False)
    spare = remaining - RESERVE * limit
    if spare < POLL_COST:
        return Pace(max(interval, until_reset), until_reset > interval)
    affordable = spare / POLL_COST  # polls the spare requests pay for
    if affordable * interval >= until_reset:
        return Pace(interval, False)
    return Pace(until_reset / affordable, True)


def with_webhooks(interval: float, quiet: float, since_delivery: float | None) -> float:
    """The poll's interval in serve mode: while webhooks arrive (the last one less than
    `quiet` seconds ago) polling is only the safety net, due `quiet` seconds after the last
    delivery; once they stop, `interval` again."""
    if since_delivery is None or since_delivery >= quiet:
        return interval
    return max(interval, quiet - since_delivery)
