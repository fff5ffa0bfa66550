"""Logging: timestamps, the work item each line concerns, and secrets redacted before output."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator

from .core.redact import Redactor

# The item a log line concerns ("issue#42"); asyncio tasks copy it when they start.
current_item: contextvars.ContextVar[str] = contextvars.ContextVar("current_item", default="-")

FORMAT = "%(asctime)s %(levelname)-7s [%(item)s] %(name)s: %(message)s"


@contextlib.contextmanager
def item_context(label: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with `label`."""
    token = current_item.set(label)
    try:
        yield
    finally:
        current_item.reset(token)


class ContextFilter(logging.Filter):
    """Adds the work item to each record and redacts its message (and traceback)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.item = current_item.get()
        # Render now so that a secret inside the arguments is redacted too.
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self._redactor.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        return True


def configure(verbose: bool, redactor: Redactor | None = None) -> None:
    """Send logs to stderr; debug level with `verbose`; never print a secret `redactor` knows
    (secret-shaped strings are redacted even without one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(ContextFilter(redactor or Redactor()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Libraries' debug output is noise and may echo request headers.
    for noisy in ("httpx", "httpcore", "hishel", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
