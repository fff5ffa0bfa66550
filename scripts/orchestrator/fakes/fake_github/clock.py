"""Clocks for the fake GitHub: the real UTC time, or a fake one tests move by hand."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol

UTC = timezone.utc
DEFAULT_START = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


class Clock(Protocol):
    """Tells the fake what time it is; every timestamp it stores comes from here."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real UTC time, so a daemon that computes `since` from its own clock sees matches."""

    def now(self) -> datetime:
        # GitHub's timestamps have whole seconds; keeping that makes `since` comparisons exact.
        return datetime.now(UTC).replace(microsecond=0)


class FakeClock:
    """A clock that stands still until a test advances or sets it."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _aware(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 1.0) -> datetime:
        """Move forward by `seconds` and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (naive datetimes are taken as UTC)."""
        with self._lock:
            self._now = _aware(when)


def iso(when: datetime) -> str:
    """GitHub's timestamp format: ISO 8601, UTC, whole seconds, `Z` suffix."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# GitHub documents date-time query parameters as `YYYY-MM-DDTHH:MM:SSZ` only. GitHub itself may
# take other ISO 8601 spellings, but the fake is never kinder than the documentation: `str()`
# of a datetime (a space, `+00:00`) was once sent and GitHub answered 422.
_DOCUMENTED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def parse_iso(text: str) -> datetime:
    """Parse a `since`-style timestamp; ValueError unless it is `YYYY-MM-DDTHH:MM:SSZ`."""
    if not _DOCUMENTED.fullmatch(text):
        raise ValueError(f"not YYYY-MM-DDTHH:MM:SSZ: {text!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
