"""GitHub's write spacing: about a second between writes, the work's own writes served first."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import re
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import anyio
import httpx
from githubkit.throttling import LocalThrottler

_READS = frozenset({"GET", "HEAD", "OPTIONS"})

# The writes that are the work itself: a pull request opened, a review posted, a merge. The
# others (reactions, labels, comments and their edits) tell people about it and can wait a
# second or two; four runs ending together open their four pull requests first.
_WORK = (
    ("POST", re.compile(r"/repos/[^/]+/[^/]+/pulls$")),
    ("POST", re.compile(r"/repos/[^/]+/[^/]+/pulls/\d+/reviews$")),
    ("PUT", re.compile(r"/repos/[^/]+/[^/]+/pulls/\d+/merge$")),
)
WORK, COURTESY = 0, 1


def is_read(request: httpx.Request) -> bool:
    """A request that changes nothing: a GET, HEAD or OPTIONS, or a GraphQL query (a POST,
    which GitHub counts as a read unless it is a mutation)."""
    if request.method in _READS:
        return True
    if request.method != "POST" or not request.url.path.endswith("/graphql"):
        return False
    try:
        query = json.loads(request.content).get("query", "")
    except (ValueError, AttributeError, httpx.RequestNotRead):
        return False
    return isinstance(query, str) and not query.lstrip().startswith("mutation")


def write_priority(request: httpx.Request) -> int:
    """`WORK` for a write that is the work itself, else `COURTESY`."""
    path = request.url.path
    if any(request.method == method and pattern.search(path) for method, pattern in _WORK):
        return WORK
    return COURTESY


class Turns:
    """One holder at a time; the waiters are served by priority (lowest first), then in the
    order they came. A waiter cancelled after it was handed the turn passes it on."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, anyio.Event]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(self, priority: int) -> AsyncGenerator[None, Any]:
        if self._held or self._waiting:
            entry = (priority, next(self._order), anyio.Event())
            heapq.heappush(self._waiting, entry)
            try:
                await entry[2].wait()
            except BaseException:  # cancelled: leave the queue, or pass on a turn handed over
                if entry[2].is_set():
                    self._release()
                else:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        if self._waiting:
            heapq.heappop(self._waiting)[2].set()  # still held: handed over
        else:
            self._held = False


class WriteSpacingThrottler(LocalThrottler):
    """Bounded concurrency, plus a pause between mutating requests (GitHub's secondary limits
    ask for about a second between writes; githubkit leaves this as a TODO)."""

    def __init__(self, max_concurrency: int = 10, write_interval: float = 1.0) -> None:
        super().__init__(max_concurrency)
        self.write_interval = write_interval
        self._last_write = 0.0
        self._turns: Turns | None = None

    @contextlib.contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        with super().acquire(request):
            if not is_read(request):
                delay = self._last_write + self.write_interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._last_write = time.monotonic()
            yield

    @contextlib.asynccontextmanager
    async def async_acquire(self, request: httpx.Request) -> AsyncGenerator[None, Any]:
        if not is_read(request):
            # The write's turn first, the concurrency slot after: writes waiting for their
            # second hold no slot a read could use.
            if self._turns is None:
                self._turns = Turns()
            async with self._turns.turn(write_priority(request)):
                delay = self._last_write + self.write_interval - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                self._last_write = time.monotonic()
        async with super().async_acquire(request):
            yield
