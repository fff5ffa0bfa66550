"""Fault injection: random 502s and secondary rate limits from a seed, plus one-shot rules."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import error_body

RATE_DOC = (
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


@dataclass(frozen=True)
class Fault:
    """What to do to one request: delay it, and/or answer with `status` instead."""

    status: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Apply the request first, then fail the reply: the write happened but the client
    # does not know (what a gateway timeout on GitHub looks like).
    after: bool = False


@dataclass
class _Rule:
    fault: Fault
    remaining: int
    method: str | None
    path: re.Pattern[str] | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or bool(self.path.search(path))
        )


def server_error(status: int = 502) -> Fault:
    return Fault(status=status, body={"message": "Server Error"})


def secondary_limit(status: int = 403, retry_after: int | None = 1) -> Fault:
    """A secondary rate limit; without `retry_after` it is the variant that only has reset."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    else:
        headers["x-ratelimit-remaining"] = "0"
        headers["x-ratelimit-reset"] = str(int(time.time()) + 1)
    return Fault(
        status=status, body=error_body(status, SECONDARY_MESSAGE, RATE_DOC), headers=headers
    )


class Faults:
    """Deterministic fault injection, changeable while the server runs.

    Each request draws one number from a `random.Random(seed)`: below `fail_rate` it gets a
    502, below `fail_rate + secondary_rate` a secondary rate limit. One-shot rules queued
    with `fail_next`/`slow_next` take precedence and are consumed in order.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        fail_rate: float = 0.0,
        secondary_rate: float = 0.0,
        secondary_status: int = 403,
        retry_after: int | None = 1,
        delay: float = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        self._injected_changed = threading.Condition(self._lock)
        # Not for security: a seeded generator makes the injected faults reproducible.
        self._rng = random.Random(seed)  # noqa: S311
        self._rules: list[_Rule] = []
        self.fail_rate = fail_rate
        self.secondary_rate = secondary_rate
        self.secondary_status = secondary_status
        self.retry_after = retry_after
        self.delay = delay
        self.injected: list[tuple[str, str, int | None]] = []

    def set(
        self,
        *,
        seed: int | None = None,
        fail_rate: float | None = None,
        secondary_rate: float | None = None,
        secondary_status: int | None = None,
        retry_after: int | None = -1,
        delay: float | None = None,
    ) -> None:
        """Change any setting at runtime (`retry_after=None` means: send no retry-after)."""
        with self._lock:
            if seed is not None:
                self._rng = random.Random(seed)  # noqa: S311
            if fail_rate is not None:
                self.fail_rate = fail_rate
            if secondary_rate is not None:
                self.secondary_rate = secondary_rate
            if secondary_status is not None:
                self.secondary_status = secondary_status
            if retry_after != -1:
                self.retry_after = retry_after
            if delay is not None:
                self.delay = delay

    def fail_next(
        self,
        status: int = 502,
        *,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        after: bool = False,
    ) -> None:
        """The next `count` requests matching `method` and the `path` regex get `status`."""
        fault = Fault(
            status=status,
            body=body or {"message": "Server Error"},
            headers=dict(headers or {}),
            after=after,
        )
        self._add(fault, count, method, path)

    def secondary_limit_next(
        self,
        *,
        status: int = 403,
        retry_after: int | None = 1,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Queue a secondary rate limit; `retry_after=None` sends remaining 0 and reset."""
        self._add(secondary_limit(status, retry_after), count, method, path)

    def slow_next(
        self, seconds: float, *, count: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        self._add(Fault(delay=seconds), count, method, path)

    def clear(self) -> None:
        """Drop queued rules and switch random faults and delays off."""
        with self._lock:
            self._rules.clear()
            self.fail_rate = self.secondary_rate = self.delay = 0.0

    def _add(self, fault: Fault, count: int, method: str | None, path: str | None) -> None:
        with self._lock:
            pattern = re.compile(path) if path is not None else None
            self._rules.append(_Rule(fault, count, method, pattern))

    def pick(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any; called once per authenticated request.

        The global `delay` is not part of the answer: the server adds it to every request.
        """
        with self._lock:
            # Draw for every request, so a seed gives the same sequence whatever rules exist.
            draw = self._rng.random()
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return self._log(method, path, rule.fault)
            if draw < self.fail_rate:
                return self._log(method, path, server_error())
            if draw < self.fail_rate + self.secondary_rate:
                fault = secondary_limit(self.secondary_status, self.retry_after)
                return self._log(method, path, fault)
            return None

    def _log(self, method: str, path: str, fault: Fault) -> Fault:
        self.injected.append((method, path, fault.status))
        self._injected_changed.notify_all()
        return fault

    def wait_injected(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until `count` faults have been injected (e.g. a slow request is in flight)."""
        with self._injected_changed:
            return self._injected_changed.wait_for(lambda: len(self.injected) >= count, timeout)
