"""Claude's slots: at most MAX_CONCURRENT runs at a time, and none starts once the daemon stops."""

from __future__ import annotations

import asyncio
import logging

from .core.models import ClaudeRequest, ClaudeResult
from .logs import current_item
from .ports import Claude

log = logging.getLogger(__name__)


class ClaudeSlots:
    """The `Claude` port with a bound: a run holds one of `limit` slots for its length only.

    A job holds no slot while it waits for anything else (CI, a lock, GitHub). After `close`
    no run starts: one asked for then, or still waiting for a slot when one frees, is
    cancelled (the daemon hands its item back for the next start). A run that fails after
    `close` is cancelled too: the stop's signal may have reached Claude's process as well
    (Ctrl-C in a terminal signals the whole process group), which is no failure of the issue.
    """

    def __init__(self, claude: Claude, limit: int) -> None:
        self._claude = claude
        self._limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._running: list[str] = []  # the items whose run holds a slot, oldest first
        self._closed = False

    def running(self) -> list[str]:
        """The items (log labels, e.g. `issue#4`) whose Claude run is in progress."""
        return list(self._running)

    def close(self) -> None:
        """No run starts from now on; the runs in progress go on."""
        self._closed = True

    async def run(self, request: ClaudeRequest) -> ClaudeResult:
        self._refuse_when_closed()
        item = current_item.get()
        if self._slots.locked():
            log.info("Claude waits for a slot: all %d are in use (MAX_CONCURRENT), by %s",
                     self._limit, ", ".join(self._running))  # fmt: skip
        async with self._slots:
            self._refuse_when_closed()
            self._running.append(item)
            try:
                result = await self._claude.run(request)
            finally:
                self._running.remove(item)
        if self._closed and not result.ok:
            log.info("Claude's run ended while the daemon stops, taken as interrupted: %s",
                     result.error)  # fmt: skip
            raise asyncio.CancelledError("the daemon is stopping: Claude's run was interrupted")
        return result

    def _refuse_when_closed(self) -> None:
        if self._closed:
            log.info("no Claude run: the daemon is stopping")
            raise asyncio.CancelledError("the daemon is stopping: no new Claude run")
