"""The primary rate limit: a budget per user that resets hourly, reported in x-ratelimit-*."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from . import versions

WINDOW_SECONDS = 3600


@dataclass
class _Budget:
    limit: int
    used: int
    reset: int


class RateLimiter:
    """Per-login request budgets; resets use real epoch seconds, which clients compare to now."""

    def __init__(self, limit: int = 5000) -> None:
        self.limit = limit
        self._budgets: dict[str, _Budget] = {}
        self._lock = threading.Lock()

    def _budget(self, login: str) -> _Budget:
        now = int(time.time())
        budget = self._budgets.get(login.lower())
        if budget is None or now >= budget.reset:
            budget = _Budget(self.limit, 0, now + WINDOW_SECONDS)
            self._budgets[login.lower()] = budget
        return budget

    def exhausted(self, login: str) -> bool:
        with self._lock:
            budget = self._budget(login)
            return budget.used >= budget.limit

    def consume(self, login: str) -> None:
        with self._lock:
            self._budget(login).used += 1

    def set(
        self,
        login: str,
        *,
        remaining: int | None = None,
        limit: int | None = None,
        reset_in: int | None = None,
    ) -> None:
        """Test hook: put a user's budget in a given state (e.g. `remaining=0`)."""
        with self._lock:
            budget = self._budget(login)
            if limit is not None:
                budget.limit = limit
            if remaining is not None:
                budget.used = max(budget.limit - remaining, 0)
            if reset_in is not None:
                budget.reset = int(time.time()) + reset_in

    def headers(self, login: str) -> dict[str, str]:
        with self._lock:
            budget = self._budget(login)
            return {
                "x-ratelimit-limit": str(budget.limit),
                "x-ratelimit-remaining": str(max(budget.limit - budget.used, 0)),
                "x-ratelimit-used": str(budget.used),
                "x-ratelimit-reset": str(budget.reset),
                "x-ratelimit-resource": "core",
            }

    def overview(self, login: str) -> dict[str, Any]:
        """`GET /rate_limit`: the core budget plus GitHub's other resources at full budget."""
        with self._lock:
            budget = self._budget(login)
            core = {
                "limit": budget.limit,
                "used": budget.used,
                "remaining": max(budget.limit - budget.used, 0),
                "reset": budget.reset,
            }
        fresh = int(time.time()) + 60
        search = {"limit": 30, "used": 0, "remaining": 30, "reset": fresh}
        graphql = {"limit": 5000, "used": 0, "remaining": 5000, "reset": budget.reset}
        overview: dict[str, Any] = {
            "resources": {
                "core": core,
                "search": search,
                "graphql": graphql,
                "integration_manifest": {
                    "limit": 5000,
                    "used": 0,
                    "remaining": 5000,
                    "reset": budget.reset,
                },
                "code_search": {"limit": 10, "used": 0, "remaining": 10, "reset": fresh},
            },
        }
        if versions.before_2026():
            overview["rate"] = core  # 2026-03-10 dropped the copy of `resources.core`
        return overview
