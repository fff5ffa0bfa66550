"""A workflow's work items in the state: the small updates every workflow makes."""

from __future__ import annotations

import logging

from ..redact import Redactor
from ..state import StateStore, Status, WorkItem, WorkItemType

log = logging.getLogger(__name__)

MAX_INFRASTRUCTURE_ERRORS = 3  # git or GitHub errors in a row before an attempt fails
ERRORS_KEY = "infrastructure_errors"


class Items:
    """Read and update one kind of work item; every stored error text is redacted."""

    def __init__(self, state: StateStore, kind: WorkItemType, redactor: Redactor) -> None:
        self._state = state
        self._kind = kind
        self._redactor = redactor

    def get(self, number: int) -> WorkItem:
        item = self._state.get(self._kind, number)
        assert item is not None, f"{self._kind.value} item #{number} vanished from the state"
        return item

    def update(self, number: int, **changes: object) -> None:
        error = changes.get("last_error")
        if isinstance(error, str):
            changes["last_error"] = self._redactor.redact(error)
        self._state.put(self.get(number).evolve(**changes))

    def update_data(self, number: int, **data: object) -> None:
        item = self.get(number)
        self._state.put(item.evolve(data={**item.data, **data}))

    def retry_later(self, number: int, exc: Exception) -> bool:
        """Count a git or GitHub failure; True if the item waits for the next poll, False
        once the errors are used up (the caller then reports the failure)."""
        errors = int(self.get(number).data.get(ERRORS_KEY, 0)) + 1
        self.update_data(number, **{ERRORS_KEY: errors})
        if errors >= MAX_INFRASTRUCTURE_ERRORS:
            return False
        log.warning("#%d: %s; will retry on the next poll", number, exc)
        self.update(number, status=Status.PENDING, last_error=str(exc))
        return True
