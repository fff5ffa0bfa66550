"""When a failed attempt is tried again, and when the daemon gives up: one policy for all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Retry:
    """Try again at `at` (None: on the next poll), with `failures` counted so far."""

    failures: int
    at: datetime | None = None


@dataclass(frozen=True)
class GiveUp:
    """The failures are used up: end the attempt and say so."""

    failures: int


def after_failure(
    *,
    transient: bool,
    failures: int,
    limit: int,
    now: datetime | None = None,
    backoff_s: float = 0.0,
) -> Retry | GiveUp:
    """`failures` counts the definite failures before this one. A transient fault (GitHub or
    the network) is not counted and never ends an attempt; the `limit`-th definite failure
    does. With `backoff_s`, a retry after the n-th attempt (this one: `failures` + 1) waits
    backoff_s * 2**(n-1) from `now`, at most as long as after the `limit`-th."""
    counted = failures if transient else failures + 1
    if not transient and counted >= limit:
        return GiveUp(counted)
    if backoff_s <= 0 or now is None:
        return Retry(counted)
    delay = backoff_s * 2 ** (min(failures + 1, limit) - 1)
    return Retry(counted, now + timedelta(seconds=delay))
