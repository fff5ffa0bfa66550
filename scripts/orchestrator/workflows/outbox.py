"""Durable GitHub writes: comments and label changes that land exactly once, however long it takes.

A workflow that ends an item (a failure comment, `ready` swapped for `claude-failed`) must not
lose those writes to a 502: the issue would carry neither label and nobody would know. So the
writes are stored in the item, in the same state write as its new status, and sent from there;
each one leaves the store only once GitHub took it. A comment whose answer was lost may have
been posted: it carries an invisible marker, and before it is sent again the daemon looks for
the marker among the thread's comments. Label changes are idempotent and are simply repeated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..github_http import GitHubError
from ..models import Comment
from ..redact import Redactor
from ..state import StateStore, WorkItem, WorkItemType
from .items import is_transient

log = logging.getLogger(__name__)

OUTBOX_KEY = "outbox"  # in WorkItem.data: the writes not yet taken by GitHub, in order


class OutboxGitHub(Protocol):
    """The GitHub calls the outbox makes."""

    async def create_comment(self, number: int, body: str) -> Comment: ...

    async def list_issue_comments(self, number: int) -> list[Comment]: ...

    async def add_labels(self, number: int, *labels: str) -> None: ...

    async def remove_label(self, number: int, label: str) -> bool: ...


@dataclass(frozen=True)
class Write:
    """One write to an issue or pull request: `comment` (text), `add_label` or `remove_label`."""

    op: str
    number: int
    text: str
    id: str = ""
    tried: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "number": self.number, "text": self.text, "id": self.id,
                "tried": self.tried}  # fmt: skip

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Write:
        return Write(str(raw["op"]), int(raw["number"]), str(raw["text"]), str(raw.get("id", "")),
                     bool(raw.get("tried", False)))  # fmt: skip


def comment(number: int, body: str) -> Write:
    return Write("comment", number, body, id=secrets.token_hex(8))


def add_label(number: int, label: str) -> Write:
    return Write("add_label", number, label, id=secrets.token_hex(8))


def remove_label(number: int, label: str) -> Write:
    return Write("remove_label", number, label, id=secrets.token_hex(8))


def marker(write: Write) -> str:
    """An HTML comment GitHub keeps but does not show: how a lost comment is recognised."""
    return f"<!-- claude-orchestrator:{write.id} -->"


def queued(item: WorkItem) -> list[Write]:
    return [Write.from_json(w) for w in item.data.get(OUTBOX_KEY, [])]


def carried(item: WorkItem | None) -> dict[str, Any]:
    """The writes still waiting, for an item whose data a new attempt starts afresh."""
    waiting = item.data.get(OUTBOX_KEY) if item is not None else None
    return {OUTBOX_KEY: waiting} if waiting else {}


class Outbox:
    """Queues writes in one kind of work item and sends them, one sender per item at a time."""

    def __init__(
        self, state: StateStore, kind: WorkItemType, github: OutboxGitHub, redactor: Redactor
    ) -> None:
        self._state = state
        self._kind = kind
        self._github = github
        self._redactor = redactor
        self._locks: dict[int, asyncio.Lock] = {}

    def queue(self, item: WorkItem, writes: Sequence[Write], **changes: Any) -> None:
        """Store `item` with `changes` applied and `writes` queued after any still waiting: one
        state write, so a crash cannot record an outcome without the writes that announce it.
        Texts are redacted here, as every stored text is."""
        clean = [dataclasses.replace(w, text=self._redactor.redact(w.text)) for w in writes]
        outbox = [*item.data.get(OUTBOX_KEY, []), *(w.to_json() for w in clean)]
        self._state.put(item.evolve(data={**item.data, OUTBOX_KEY: outbox}, **changes))

    def waiting(self) -> list[int]:
        """Items with writes GitHub has not taken yet."""
        return [i.number for i in self._state.items(self._kind) if i.data.get(OUTBOX_KEY)]

    async def send_all(self) -> None:
        """Send every waiting item's writes; a transient fault leaves them for the next cycle."""
        for number in self.waiting():
            await self.try_send(number)

    async def try_send(self, number: int) -> None:
        """`send`, except that a transient fault leaves the rest for the next cycle."""
        try:
            await self.send(number)
        except GitHubError as exc:
            if not is_transient(exc):
                raise
            log.warning("#%d: GitHub writes wait for the next cycle: %s", number, exc)

    async def send(self, number: int) -> None:
        """Send `number`'s queued writes in order; each leaves the queue once GitHub took it,
        or refused it for good (a 4xx: e.g. the issue was deleted), so one write that can never
        land does not hold back the others, nor the next items."""
        # A job and the next poll may both send one item: they take turns, or both would post.
        async with self._locks.setdefault(number, asyncio.Lock()):
            while True:
                item = self._state.get(self._kind, number)
                writes = queued(item) if item is not None else []
                if not writes:
                    return
                write = writes[0]
                if write.op == "comment" and not write.tried:
                    # Recorded before the POST: after a lost answer, look before posting again.
                    self._settle(number, write.id, dataclasses.replace(write, tried=True))
                try:
                    await self._send(write)
                except GitHubError as exc:
                    if is_transient(exc):
                        raise
                    log.warning(
                        "#%d: GitHub refused %s for good, dropped: %s", number, write.op, exc
                    )
                self._settle(number, write.id, None)

    def _settle(self, number: int, write_id: str, replacement: Write | None) -> None:
        item = self._state.get(self._kind, number)
        if item is None:
            return
        outbox = [
            replacement.to_json() if w.get("id") == write_id and replacement else w
            for w in item.data.get(OUTBOX_KEY, [])
            if w.get("id") != write_id or replacement
        ]
        data = {k: v for k, v in item.data.items() if k != OUTBOX_KEY}
        if outbox:
            data[OUTBOX_KEY] = outbox
        self._state.put(item.evolve(data=data))

    async def _send(self, write: Write) -> None:
        github = self._github
        if write.op == "comment":
            tag = marker(write)
            if write.tried and any(
                tag in c.body for c in await github.list_issue_comments(write.number)
            ):
                log.info("#%d: a comment whose answer was lost had landed", write.number)
                return
            await github.create_comment(write.number, f"{write.text}\n\n{tag}")
        elif write.op == "add_label":
            await github.add_labels(write.number, write.text)
        elif write.op == "remove_label":
            await github.remove_label(write.number, write.text)  # False if already gone: fine
        else:
            raise ValueError(f"unknown outbox write {write.op!r}")
