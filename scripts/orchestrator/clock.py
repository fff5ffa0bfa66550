"""The system clock behind the `Clock` port."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from .core.work import utcnow


class SystemClock:
    """Wall-clock time in UTC, a monotonic clock for durations, and asyncio's sleep."""

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
